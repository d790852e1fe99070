// Tests of the IDX reader: round trips through small gzip'd files written here with zlib, the
// error messages, and (when installed) the real Fashion-MNIST files.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "examples/data/idx.hpp"
#include "tests/support/scratch_dir.hpp"

namespace {

namespace fs = std::filesystem;
using kiln::data::IdxArray;
using kiln::data::IdxError;
using kiln::data::read_idx;

// A scratch directory named for these tests.
struct TempDir : kiln::testing::ScratchDir {
  TempDir() : ScratchDir("kiln_idx_test") {}
};

// Header bytes of an IDX file of unsigned bytes: magic 0x000008<rank>, big-endian dims.
std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims,
                                    const std::vector<std::uint8_t>& data,
                                    std::uint8_t type = 0x08) {
  std::vector<std::uint8_t> b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(d >> shift));
  }
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) {
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
            static_cast<int>(bytes.size()));
  }
  REQUIRE(gzclose(f) == Z_OK);
}

void write_plain(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::vector<std::uint8_t> iota_bytes(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 7 + 3);
  return v;
}

// The message of the IdxError that f throws ("" when it throws nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const IdxError& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("data.idx.reads_gzipped_images_and_labels") {
  TempDir dir;
  const auto pixels = iota_bytes(3 * 4 * 5);
  write_gz(dir.file("images.gz"), idx_bytes({3, 4, 5}, pixels));
  const IdxArray images = read_idx(dir.file("images.gz"));
  CHECK(images.shape == std::vector<std::int64_t>{3, 4, 5});
  CHECK(images.data == pixels);

  const std::vector<std::uint8_t> labels = {9, 0, 3};
  write_gz(dir.file("labels.gz"), idx_bytes({3}, labels));
  const IdxArray l = read_idx(dir.file("labels.gz"), 1);
  CHECK(l.shape == std::vector<std::int64_t>{3});
  CHECK(l.data == labels);
}

TEST_CASE("data.idx.reads_any_rank_big_dims_and_plain_files") {
  TempDir dir;
  SUBCASE("rank 2, uncompressed") {
    const auto data = iota_bytes(6);
    write_plain(dir.file("plain"), idx_bytes({2, 3}, data));
    const IdxArray a = read_idx(dir.file("plain"));
    CHECK(a.shape == std::vector<std::int64_t>{2, 3});
    CHECK(a.data == data);
  }
  SUBCASE("a dim above 255 checks the big-endian decoding") {
    const auto data = iota_bytes(70000);
    write_gz(dir.file("big.gz"), idx_bytes({70000}, data));
    const IdxArray a = read_idx(dir.file("big.gz"));
    CHECK(a.shape == std::vector<std::int64_t>{70000});
    CHECK(a.data == data);
  }
  SUBCASE("long runs of zeros: inflate's output outlasts its input") {
    for (std::uint32_t n : {65536u * 3 + 1, 1000003u}) {
      const std::vector<std::uint8_t> zeros(n, 0);
      write_gz(dir.file("zeros.gz"), idx_bytes({n}, zeros));
      CHECK(read_idx(dir.file("zeros.gz")).data == zeros);
    }
  }
  SUBCASE("a zero dim gives no data") {
    write_gz(dir.file("empty.gz"), idx_bytes({0, 28, 28}, {}));
    const IdxArray a = read_idx(dir.file("empty.gz"), 3);
    CHECK(a.shape == std::vector<std::int64_t>{0, 28, 28});
    CHECK(a.data.empty());
  }
}

TEST_CASE("data.idx.missing_file_names_path_and_package") {
  TempDir dir;
  const std::string path = dir.file("no-such-file-idx3-ubyte.gz");
  const std::string msg = error_of([&] { read_idx(path); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("dataset-fashion-mnist") != std::string::npos);
  // load_fashion_mnist reports the first missing file the same way.
  const std::string msg2 = error_of([&] { kiln::data::load_fashion_mnist(dir.file("nothing")); });
  CHECK(msg2.find(dir.file("nothing")) != std::string::npos);
  CHECK(msg2.find("train-images-idx3-ubyte.gz") != std::string::npos);
  CHECK(msg2.find("dataset-fashion-mnist") != std::string::npos);
}

TEST_CASE("data.idx.wrong_magic_states_expected_and_found") {
  TempDir dir;
  SUBCASE("wrong element type") {
    const std::string path = dir.file("floats.gz");
    write_gz(path, idx_bytes({2}, {0, 0, 0, 0, 0, 0, 0, 0}, 0x0D));  // 0x0D = float
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("0x00000D01") != std::string::npos);  // found
    CHECK(msg.find("0x00000803") != std::string::npos);  // expected (images)
    CHECK(msg.find("0x00000801") != std::string::npos);  // expected (labels)
  }
  SUBCASE("not an IDX file at all") {
    const std::string path = dir.file("text.gz");
    const std::string text = "hello world";
    write_gz(path, std::vector<std::uint8_t>(text.begin(), text.end()));
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("0x68656C6C") != std::string::npos);  // "hell"
  }
  SUBCASE("labels where images are expected") {
    const std::string path = dir.file("labels.gz");
    write_gz(path, idx_bytes({2}, {1, 2}));
    const std::string msg = error_of([&] { read_idx(path, 3); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("expected 0x00000803") != std::string::npos);
    CHECK(msg.find("found 0x00000801") != std::string::npos);
  }
}

TEST_CASE("data.idx.truncated_states_expected_and_found_bytes") {
  TempDir dir;
  SUBCASE("short data in a valid gzip stream") {
    const std::string path = dir.file("short.gz");
    write_gz(path, idx_bytes({2, 3, 4}, iota_bytes(20)));  // 24 announced, 20 present
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("expected 24 bytes") != std::string::npos);
    CHECK(msg.find("found 20") != std::string::npos);
  }
  SUBCASE("short header") {
    const std::string path = dir.file("header.gz");
    auto bytes = idx_bytes({2, 3, 4}, {});
    bytes.resize(9);  // magic + 5 of the 12 dimension bytes
    write_gz(path, bytes);
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("expected 12 bytes") != std::string::npos);
    CHECK(msg.find("found 5") != std::string::npos);
  }
  SUBCASE("empty file") {
    const std::string path = dir.file("empty");
    write_plain(path, {});
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("expected 4 bytes") != std::string::npos);
    CHECK(msg.find("found 0") != std::string::npos);
  }
  SUBCASE("a cut gzip file") {
    const std::string full = dir.file("full.gz"), cut = dir.file("cut.gz");
    const auto data = iota_bytes(50000);
    write_gz(full, idx_bytes({50000}, data));
    const auto size = fs::file_size(full);
    fs::copy_file(full, cut);
    fs::resize_file(cut, size / 2);
    const std::string msg = error_of([&] { read_idx(cut); });
    CHECK(msg.find(cut) != std::string::npos);
    CHECK(msg.find("expected 50000 bytes") != std::string::npos);
    CHECK(msg.find("found") != std::string::npos);
  }
}

TEST_CASE("data.idx.gzip_trailer_and_trailing_bytes_are_checked") {
  // A gzip file ends with the CRC-32 and the length (mod 2^32) of its data, 8 bytes little-endian.
  TempDir dir;
  const auto data = iota_bytes(3 * 4 * 5);
  const std::string good = dir.file("good.gz");
  write_gz(good, idx_bytes({3, 4, 5}, data));
  const auto size = fs::file_size(good);
  std::ifstream in(good, std::ios::binary);
  const std::vector<std::uint8_t> gz((std::istreambuf_iterator<char>(in)), {});
  REQUIRE(gz.size() == size);
  const std::string bad = dir.file("bad.gz");
  auto error = [&](std::vector<std::uint8_t> bytes) {
    write_plain(bad, bytes);
    try {
      read_idx(bad);
    } catch (const kiln::InvalidArgumentError& e) {  // IdxError is one
      CHECK(dynamic_cast<const IdxError*>(&e) != nullptr);
      CHECK(std::string(e.what()).find(bad) != std::string::npos);
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  SUBCASE("a flipped CRC-32 bit") {
    auto b = gz;
    b[b.size() - 6] ^= 0x01;
    CHECK(error(b).find("incorrect data check") != std::string::npos);
  }
  SUBCASE("a flipped length bit") {
    auto b = gz;
    b[b.size() - 2] ^= 0x01;
    CHECK(error(b).find("incorrect length check") != std::string::npos);
  }
  SUBCASE("the trailer cut off, all data present") {
    auto b = gz;
    b.resize(b.size() - 3);
    CHECK(error(b).find("ends before its trailer") != std::string::npos);
  }
  SUBCASE("garbage after the gzip stream") {
    auto b = gz;
    b.insert(b.end(), {'x', 'y'});
    CHECK(error(b).find("not gzip data follow the gzip stream at offset " + std::to_string(size)) !=
          std::string::npos);
  }
  SUBCASE("more elements than the header announces, compressed or not") {
    write_gz(bad, idx_bytes({3, 4, 5}, iota_bytes(61)));
    CHECK(error_of([&] { read_idx(bad); }).find("more than the 60 data bytes") !=
          std::string::npos);
    CHECK(error(idx_bytes({3, 4, 5}, iota_bytes(62))).find("more than the 60 data bytes") !=
          std::string::npos);
  }
  SUBCASE("two gzip members are one stream (as gzip -d reads them)") {
    const auto all = idx_bytes({3, 4, 5}, data);
    write_gz(dir.file("a.gz"), std::vector<std::uint8_t>(all.begin(), all.begin() + 30));
    write_gz(dir.file("b.gz"), std::vector<std::uint8_t>(all.begin() + 30, all.end()));
    std::ifstream a(dir.file("a.gz"), std::ios::binary), b(dir.file("b.gz"), std::ios::binary);
    std::vector<std::uint8_t> both((std::istreambuf_iterator<char>(a)), {});
    both.insert(both.end(), std::istreambuf_iterator<char>(b), {});
    write_plain(bad, both);
    CHECK(read_idx(bad).data == data);
  }
}

TEST_CASE("data.idx.load_fashion_mnist_checks_counts") {
  TempDir dir;
  write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_bytes({3, 2, 2}, iota_bytes(12)));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), idx_bytes({3}, {1, 2, 3}));
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({2, 2, 2}, iota_bytes(8)));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({2}, {4, 5}));
  const auto d = kiln::data::load_fashion_mnist(dir.file(""));
  CHECK(d.train_images.shape == std::vector<std::int64_t>{3, 2, 2});
  CHECK(d.test_labels.data == std::vector<std::uint8_t>{4, 5});

  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({3}, {4, 5, 6}));
  const std::string msg = error_of([&] { kiln::data::load_fashion_mnist(dir.file("")); });
  CHECK(msg.find("t10k-images-idx3-ubyte.gz") != std::string::npos);
  CHECK(msg.find("t10k-labels-idx1-ubyte.gz") != std::string::npos);
  CHECK(msg.find("2 images") != std::string::npos);
  CHECK(msg.find("3 labels") != std::string::npos);
}

TEST_CASE("data.idx.real_fashion_mnist_if_installed") {
  const std::string dir = kiln::data::kFashionMnistDir;
  if (!fs::exists(fs::path(dir) / "train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: " << dir << " not installed (Debian package dataset-fashion-mnist)");
    return;
  }
  const auto d = kiln::data::load_fashion_mnist();
  CHECK(d.train_images.shape == std::vector<std::int64_t>{60000, 28, 28});
  CHECK(d.train_labels.shape == std::vector<std::int64_t>{60000});
  CHECK(d.test_images.shape == std::vector<std::int64_t>{10000, 28, 28});
  CHECK(d.test_labels.shape == std::vector<std::int64_t>{10000});
  CHECK(d.train_images.data.size() == 60000u * 28 * 28);
  CHECK(d.test_images.data.size() == 10000u * 28 * 28);
  bool labels_ok = true;
  for (auto l : d.train_labels.data) labels_ok = labels_ok && l < 10;
  for (auto l : d.test_labels.data) labels_ok = labels_ok && l < 10;
  CHECK(labels_ok);
}

}  // namespace
