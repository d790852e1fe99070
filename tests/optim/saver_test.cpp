// train::Saver: the round trip of every dtype with the dtype/shape/missing-key errors; checkpoint
// format 2 (optim/saver_format.hpp): checksums, bounds checked before any allocation, version 1
// files, the .tmp file, max_to_keep, latest_checkpoint; a run saved, restored and continued.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

#include <kiln.hpp>

#include "optim/saver_format.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/scratch_dir.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::error_of;
using kiln::testing::ScratchDir;

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The type and message of what f throws.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<another exception: ") + e.what() + ">";
  }
  return "<no exception>";
}

// A graph of its own (the default while the fixture lives) holding w float32 [2,3] and b float64
// [3], initialized in `sess`, and a scratch directory for the checkpoints.
struct TwoVariables {
  ScratchDir dir{"kiln_saver_test"};
  Graph graph;
  Graph::DefaultGuard guard{&graph};
  Variable w{constant(xt::xarray<float>{{1.5f, -2.0f, 3.0f}, {4.0f, 5.0f, 6.25f}}), {.name = "w"}};
  Variable b{constant(xt::xarray<double>{0.1, 0.2, 0.3}), {.name = "b"}};
  Session sess;
  TwoVariables() { sess.run(global_variables_initializer()); }
};

template <class T>
void put(Bytes& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

// The version 1 bytes of one float32 entry, laid out as the format-1 writer did (magic, version 1,
// count, then name_len, name, dtype, rank, dims, nbytes, data).
Bytes v1_file(const std::string& name, const std::vector<std::int64_t>& dims,
              const std::vector<float>& data) {
  Bytes out = {'K', 'I', 'L', 'N', 'C', 'K', 'P', 'T'};
  put<std::uint32_t>(out, 1);
  put<std::uint32_t>(out, 1);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(name.size()));
  out.insert(out.end(), name.begin(), name.end());
  put<std::uint8_t>(out, 0);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(dims.size()));
  for (auto d : dims) put<std::int64_t>(out, d);
  put<std::uint64_t>(out, data.size() * sizeof(float));
  for (float x : data) put<float>(out, x);
  return out;
}

}  // namespace

TEST_CASE("train.saver_round_trip") {
  const auto dir = std::filesystem::temp_directory_path() / ("kiln_saver_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "model.ckpt").string();
  {
    Graph graph;
    auto guard = graph.as_default();
    Variable w(constant(xt::xarray<float>{{1.5f, -2.0f, 3.0f}, {4.0f, 5.0f, 6.25f}}), {.name = "w"});
    Variable b(constant(xt::xarray<double>{0.1, 0.2, 0.3}), {.name = "b"});
    Variable gs = train::get_or_create_global_step();
    Variable flags(constant(xt::xarray<bool>{true, false}), {.trainable = false, .name = "flags"});
    train::Saver saver;
    CHECK(saver.var_list().size() == 4);
    Session sess;
    sess.run(global_variables_initializer());
    sess.run(assign_add(gs, scalar(41, int64)));
    CHECK(saver.save(sess, path) == path);
    CHECK(saver.save(sess, path, 7) == path + "-7");
    CHECK(std::filesystem::exists(path + "-7"));
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

    sess.run(assign(w, zeros({2, 3})));
    sess.run(assign(b, constant(xt::xarray<double>{9, 9, 9})));
    sess.run(assign_add(gs, scalar(1, int64)));
    sess.run(assign(flags, constant(xt::xarray<bool>{false, true})));
    saver.restore(sess, path);
    CHECK(kiln::testing::allclose(sess.run(w), {{1.5, -2.0, 3.0}, {4.0, 5.0, 6.25}}, 0, 0));
    CHECK(kiln::testing::allclose(sess.run(b), {0.1, 0.2, 0.3}, 0, 0));
    CHECK(sess.run(gs).scalar<std::int64_t>() == 41);
    CHECK(sess.run(flags).as<bool>() == xt::xarray<bool>{true, false});

    // A fresh session (a restarted process) restores without running the initializer.
    Session fresh;
    saver.restore(fresh, path);
    CHECK(kiln::testing::allclose(fresh.run(b), {0.1, 0.2, 0.3}, 0, 0));
  }
  {
    Graph graph;  // the same names, one shape changed
    auto guard = graph.as_default();
    Variable w(zeros({3, 2}), {.name = "w"});
    train::Saver saver({w});
    Session sess;
    const std::string e = error_of<InvalidArgumentError>([&] { saver.restore(sess, path); });
    CHECK(contains(e, "'w:0'"));
    CHECK(contains(e, "[3,2]"));
    CHECK(contains(e, "[2,3]"));
  }
  {
    Graph graph;
    auto guard = graph.as_default();
    Variable other(zeros({1}), {.name = "other"});
    Variable b(zeros({3}), {.name = "b"});  // float32 here, float64 in the file
    Session sess;
    CHECK(error_of<NotFoundError>([&] { train::Saver({other}).restore(sess, path); }) ==
          "Key other not found in checkpoint " + path);
    CHECK(contains(error_of<InvalidArgumentError>([&] { train::Saver({b}).restore(sess, path); }), "dtype double"));
    CHECK(contains(error_of<NotFoundError>([&] { train::Saver({b}).restore(sess, path + ".absent"); }),
                   "Unable to open checkpoint file"));
    std::ofstream(dir / "junk") << "not a checkpoint at all";
    CHECK(contains(error_of<InvalidArgumentError>([&] { train::Saver({b}).restore(sess, (dir / "junk").string()); }),
                   "is not a kiln checkpoint"));
    CHECK(contains(error_of<FailedPreconditionError>([&] { train::Saver({b}).save(sess, path + "-u"); }), "b"));
  }
  {
    Graph graph;
    auto guard = graph.as_default();
    CHECK(error_of<ValueError>([] { train::Saver saver; }) == "No variables to save");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("saver.crc32c_is_castagnoli") {
  // The check value of CRC-32C (iSCSI, RFC 3720) in the catalogue of parametrised CRC algorithms.
  const std::string s = "123456789";
  CHECK(train::checkpoint::crc32c({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}) ==
        0xE3069283u);
}

TEST_CASE_FIXTURE(TwoVariables,
                  "saver.corrupt_lengths_are_invalid_argument_before_any_allocation") {
  train::Saver saver({w, b});
  const std::string path = saver.save(sess, dir.file("model.ckpt"));
  const Bytes good = read_bytes(path);
  REQUIRE(good.size() > 40);
  CHECK(good[8] == 2);  // format version 2

  // Entry "w" starts the index at byte 24: name_len 24..27, name 28, dtype 29, rank 30..33.
  const std::string bad = dir.file("bad.ckpt");
  SUBCASE("a flipped high byte anywhere in the index fails its checksum") {
    for (std::size_t at : {27u, 33u}) {
      Bytes b = good;
      b[at] ^= 0x80;
      write_bytes(bad, b);
      const std::string e = message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); });
      CHECK(contains(e, bad));
      CHECK(contains(e, "checksum of its index"));
    }
  }
  SUBCASE("behind a matching index checksum, the lengths are still bounded by the file") {
    std::uint64_t index_nbytes = 0;
    std::memcpy(&index_nbytes, good.data() + 16, 8);
    for (std::size_t at : {27u, 33u}) {  // name length 2^31+1, rank 2^31+2
      Bytes b = good;
      b[at] ^= 0x80;
      const std::uint32_t crc =
          train::checkpoint::crc32c(std::span<const std::uint8_t>(b).first(24 + index_nbytes));
      std::memcpy(b.data() + 24 + index_nbytes, &crc, 4);
      write_bytes(bad, b);
      const std::string e = message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); });
      CHECK(contains(e, "Checkpoint " + bad + " is truncated or corrupt"));
    }
  }
  SUBCASE("a version 1 file (no checksums) with a name length of 2^31") {
    Bytes b = v1_file("w", {2, 3}, {1, 2, 3, 4, 5, 6});
    b[19] ^= 0x80;  // the high byte of name_len (bytes 16..19)
    write_bytes(bad, b);
    const std::string e = message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); });
    CHECK(e == "Checkpoint " + bad +
                   " is truncated or corrupt: a name at offset 20 needs 2147483649 bytes but the "
                   "file has 54 left");
  }
  SUBCASE("a version 1 file with a rank and a dimension past the file") {
    Bytes b = v1_file("w", {2, 3}, {1, 2, 3, 4, 5, 6});
    b[25] ^= 0x10;  // rank (bytes 22..25) becomes 2^28+2
    write_bytes(bad, b);
    CHECK(contains(message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); }),
                   "has rank 268435458"));
    b[25] ^= 0x10;
    b[33] ^= 0x01;  // the high byte of the first dim (bytes 26..33): the size no longer matches
    write_bytes(bad, b);
    CHECK(contains(message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); }),
                   "does not match its shape"));
  }
  SUBCASE("truncated anywhere, or with a byte appended") {
    for (std::size_t n : {std::size_t{4}, std::size_t{23}, std::size_t{40}, good.size() - 1}) {
      write_bytes(bad, Bytes(good.begin(), good.begin() + static_cast<long>(n)));
      CHECK(contains(message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); }), bad));
    }
    Bytes longer = good;
    longer.push_back(0);
    write_bytes(bad, longer);
    CHECK(contains(message_of<InvalidArgumentError>([&] { saver.restore(sess, bad); }),
                   "1 bytes follow the data"));
  }
}

TEST_CASE_FIXTURE(TwoVariables, "saver.flipped_data_bits_name_path_and_tensor_and_change_nothing") {
  train::Saver saver({w, b});
  const std::string path = saver.save(sess, dir.file("model.ckpt"));
  Bytes bytes = read_bytes(path);
  // The data of b (float64 x 3) is the file's last 24 bytes: flip two bits of its second element.
  bytes[bytes.size() - 16] ^= 0x01;
  bytes[bytes.size() - 10] ^= 0x20;
  write_bytes(path, bytes);
  sess.run(assign(w, zeros({2, 3})));
  const std::string e = message_of<InvalidArgumentError>([&] { saver.restore(sess, path); });
  CHECK(contains(e, path));
  CHECK(contains(e, "tensor 'b'"));
  CHECK(contains(e, "checksum"));
  // Nothing was assigned: w keeps the value it had before the failed restore.
  CHECK(kiln::testing::allclose(sess.run(w), xt::zeros<double>({2, 3}), 0, 0));
}

TEST_CASE("saver.reads_version_1_files") {
  // Bytes laid out by the format-1 writer (a file written by it is in tests/fuzz/corpus/checkpoint/
  // v1_all_dtypes.ckpt, checked by fuzz.v1_golden_checkpoint_restores).
  ScratchDir dir("kiln_saver_test");
  const std::string path = dir.file("v1.ckpt");
  write_bytes(path, v1_file("w", {2, 3}, {1.5f, -2.0f, 3.0f, 4.0f, 5.0f, 6.25f}));
  Graph graph;
  auto guard = graph.as_default();
  Variable w(zeros({2, 3}), {.name = "w"});
  Session sess;
  train::Saver({w}).restore(sess, path);
  CHECK(kiln::testing::allclose(sess.run(w), {{1.5, -2.0, 3.0}, {4.0, 5.0, 6.25}}, 0, 0));
  CHECK(train::checkpoint::read_checkpoint(path).version == 1);
}

TEST_CASE_FIXTURE(TwoVariables, "saver.tmp_file_never_left_behind") {
  train::Saver saver({w, b});
  const std::string path = dir.file("model.ckpt");
  SUBCASE("a stale .tmp of a crashed save is replaced") {
    write_bytes(path + ".tmp", Bytes(100000, 0xAB));
    CHECK(saver.save(sess, path) == path);
    CHECK_FALSE(fs::exists(path + ".tmp"));
    saver.restore(sess, path);
  }
  SUBCASE("a save that fails at the rename removes its .tmp") {
    fs::create_directories(fs::path(path) / "occupied");  // a non-empty directory: rename fails
    const std::string e = message_of<NotFoundError>([&] { saver.save(sess, path); });
    CHECK(contains(e, "cannot rename " + path + ".tmp to " + path));
    CHECK_FALSE(fs::exists(path + ".tmp"));
  }
  SUBCASE("a save into a missing directory names it") {
    const std::string missing = dir.file("no/such/dir/model.ckpt");
    CHECK(
        contains(message_of<NotFoundError>([&] { saver.save(sess, missing); }), missing + ".tmp"));
  }
}

TEST_CASE_FIXTURE(TwoVariables, "saver.max_to_keep_deletes_the_oldest") {
  const std::string prefix = dir.file("model.ckpt");
  SUBCASE("max_to_keep = 2") {
    train::Saver saver({w, b}, {.max_to_keep = 2});
    for (int step = 1; step <= 4; ++step) saver.save(sess, prefix, step);
    CHECK_FALSE(fs::exists(prefix + "-1"));
    CHECK_FALSE(fs::exists(prefix + "-2"));
    CHECK(fs::exists(prefix + "-3"));
    CHECK(fs::exists(prefix + "-4"));
    CHECK(saver.last_checkpoints() == std::vector<std::string>{prefix + "-3", prefix + "-4"});
    std::ifstream state(dir.file("checkpoint"));
    const std::string text((std::istreambuf_iterator<char>(state)), {});
    CHECK(text ==
          "model_checkpoint_path: \"model.ckpt-4\"\n"
          "all_model_checkpoint_paths: \"model.ckpt-3\"\n"
          "all_model_checkpoint_paths: \"model.ckpt-4\"\n");
    // Saving the same path again moves it to the newest place and deletes nothing else.
    saver.save(sess, prefix, 3);
    CHECK(saver.last_checkpoints() == std::vector<std::string>{prefix + "-4", prefix + "-3"});
    CHECK(fs::exists(prefix + "-4"));
  }
  SUBCASE("the default keeps 5; 0 keeps every file") {
    train::Saver five({w, b});
    for (int step = 1; step <= 7; ++step) five.save(sess, prefix, step);
    CHECK_FALSE(fs::exists(prefix + "-2"));
    CHECK(fs::exists(prefix + "-3"));
    CHECK(five.last_checkpoints().size() == 5);
    train::Saver all({w, b}, {.max_to_keep = 0});
    for (int step = 10; step <= 16; ++step) all.save(sess, prefix, step);
    for (int step = 10; step <= 16; ++step) CHECK(fs::exists(prefix + "-" + std::to_string(step)));
  }
  SUBCASE("bad options and names") {
    CHECK(contains(message_of<ValueError>([&] { train::Saver({w}, {.max_to_keep = -1}); }),
                   "max_to_keep"));
    train::Saver saver({w});
    CHECK(contains(message_of<ValueError>([&] { saver.save(sess, dir.file("checkpoint")); }),
                   "state file"));
  }
}

TEST_CASE_FIXTURE(TwoVariables, "saver.latest_checkpoint_finds_the_newest") {
  CHECK_FALSE(train::latest_checkpoint(dir.path().string()).has_value());  // no state file yet
  train::Saver saver({w, b});
  saver.save(sess, dir.file("model.ckpt"), 100);
  saver.save(sess, dir.file("model.ckpt"), 200);
  CHECK(train::latest_checkpoint(dir.path().string()) == dir.file("model.ckpt-200"));

  // The state file names checkpoints relative to its directory: a moved directory still works.
  const fs::path moved = dir.path() / "moved";
  fs::create_directories(moved);
  for (const char* f : {"checkpoint", "model.ckpt-100", "model.ckpt-200"})
    fs::rename(dir.path() / f, moved / f);
  CHECK(train::latest_checkpoint(moved.string()) == (moved / "model.ckpt-200").string());
  fs::remove(moved / "model.ckpt-200");  // the newest is gone: nothing to restore (as TF1)
  CHECK_FALSE(train::latest_checkpoint(moved.string()).has_value());

  std::ofstream(moved / "checkpoint") << "model_checkpoint_path: model.ckpt-100\n";  // unquoted
  const std::string e =
      message_of<InvalidArgumentError>([&] { train::latest_checkpoint(moved.string()); });
  CHECK(contains(e, (moved / "checkpoint").string()));
  CHECK(contains(e, "line 1"));
}

namespace {

// Four Adam steps per call on a fixed least-squares problem; returns w after `steps` steps.
// Everything a run depends on is a global variable: w, b, Adam's slots and beta powers, the step.
struct Training {
  Graph graph;
  Variable w, b, step;
  Operation train_op;
  Training() {
    auto guard = graph.as_default();
    set_random_seed(5);
    w = get_variable("w", {3, 2});
    b = get_variable("b", {2}, {.initializer = initializers::zeros()});
    step = train::get_or_create_global_step();
    Tensor x = constant(xt::xarray<float>{{1, 2, 0.5f}, {0, -1, 2}, {3, 1, 1}, {-2, 0.5f, 1}});
    Tensor y = constant(xt::xarray<float>{{1, 0}, {0, 1}, {2, -1}, {-1, 1}});
    Tensor loss = reduce_mean(square(matmul(x, w) + b - y));
    train_op = train::AdamOptimizer(0.05).minimize(loss, {.global_step = step});
  }
};

}  // namespace

TEST_CASE("saver.train_save_restore_continue_equals_an_uninterrupted_run") {
  ScratchDir dir("kiln_saver_test");
  Training uninterrupted;
  Session s0(uninterrupted.graph);
  {
    auto guard = uninterrupted.graph.as_default();
    s0.run(global_variables_initializer());
  }
  for (int i = 0; i < 6; ++i) s0.run(uninterrupted.train_op);
  const Array expected = s0.run(uninterrupted.w);

  {
    Training first;
    auto guard = first.graph.as_default();
    train::Saver saver;  // every global variable: model, slots, beta powers, global step
    CHECK(saver.var_list().size() ==
          9);  // w, b, their two Adam slots each, beta1/2_power, global_step
    Session sess(first.graph);
    sess.run(global_variables_initializer());
    for (int i = 0; i < 3; ++i) sess.run(first.train_op);
    saver.save(sess, dir.file("model.ckpt"), sess.run(first.step).scalar<std::int64_t>());
  }
  Training second;  // a new process: the same code builds the same graph
  auto guard = second.graph.as_default();
  train::Saver saver;
  Session sess(second.graph);
  const auto latest = train::latest_checkpoint(dir.path().string());
  REQUIRE(latest == dir.file("model.ckpt-3"));
  saver.restore(sess, *latest);
  CHECK(sess.run(second.step).scalar<std::int64_t>() == 3);
  for (int i = 0; i < 3; ++i) sess.run(second.train_op);
  CHECK(sess.run(second.step).scalar<std::int64_t>() == 6);
  // Bit for bit: the same kernels on the same values.
  CHECK(kiln::testing::allclose(sess.run(second.w), expected.to_double(), 0, 0));

  // Without the optimizer's state the continued run differs (so the check above can fail).
  Session partial(second.graph);
  partial.run(global_variables_initializer());
  train::Saver({second.w, second.b, second.step}).restore(partial, *latest);
  for (int i = 0; i < 3; ++i) partial.run(second.train_op);
  CHECK_FALSE(kiln::testing::allclose(partial.run(second.w), expected.to_double(), 0, 0));
}
