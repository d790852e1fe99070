// Replays the committed fuzz corpus (tests/fuzz/corpus/{checkpoint,idx}/) through the entry
// functions of the fuzz targets: every file loads or throws a kiln::Error (no crash, no other
// exception such as std::bad_alloc). Files whose names start with "ok_", "v1_" or "v2_" are valid
// and must load; every other file is a corruption that must be rejected. Also checks the values of
// the version 1 golden file, written by kiln's Saver before checkpoint format 2.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "optim/saver_format.hpp"
#include "tests/fuzz/fuzz_entries.hpp"
#include "tests/support/approx.hpp"

#ifndef KILN_FUZZ_CORPUS
#error "tests/meson.build defines KILN_FUZZ_CORPUS, the corpus directory"
#endif

namespace {

namespace fs = std::filesystem;
const fs::path kCorpus = KILN_FUZZ_CORPUS;

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

bool must_load(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.starts_with("ok_") || name.starts_with("v1_") || name.starts_with("v2_");
}

void replay(const char* target, void (*entry)(const std::uint8_t*, std::size_t)) {
  const auto files = files_in(kCorpus / target);
  CHECK(files.size() >= 15);
  int loaded = 0, rejected = 0;
  for (const auto& f : files) {
    INFO(f.string());
    std::ifstream in(f, std::ios::binary);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    std::string outcome = "loaded";
    try {
      entry(bytes.data(), bytes.size());
      ++loaded;
    } catch (const kiln::Error& e) {
      outcome = std::string("kiln::Error: ") + e.what();
      ++rejected;
    } catch (const std::exception& e) {
      FAIL("not a kiln::Error: " << e.what());
      continue;
    }
    INFO(outcome);
    CHECK(must_load(f) == (outcome == "loaded"));
  }
  CHECK(loaded > 0);
  CHECK(rejected > 0);
}

}  // namespace

TEST_CASE("fuzz.corpus_replay_checkpoint") {
  replay("checkpoint", kiln::fuzz::checkpoint_entry);
}

TEST_CASE("fuzz.corpus_replay_idx") {
  replay("idx", kiln::fuzz::idx_entry);
}

TEST_CASE("fuzz.v1_golden_checkpoint_restores") {
  // Written by train::Saver at commit b67724e (format 1): w, b, global_step = 41, flags, scope/n,
  // s.
  using namespace kiln;
  const std::string path = (kCorpus / "checkpoint" / "v1_all_dtypes.ckpt").string();
  CHECK(train::checkpoint::read_checkpoint(path).version == 1);
  Graph graph;
  auto guard = graph.as_default();
  Variable w(zeros({2, 3}), {.name = "w"});
  Variable b(zeros({3}, float64), {.name = "b"});
  Variable gs = train::get_or_create_global_step();
  Variable flags(constant(xt::xarray<bool>{false, false}), {.trainable = false, .name = "flags"});
  Variable n(zeros({2}, int32), {.trainable = false, .name = "scope/n"});
  Variable s(scalar(0.0f), {.name = "s"});
  Session sess;
  train::Saver().restore(sess, path);
  CHECK(kiln::testing::allclose(sess.run(w), {{1.5, -2.0, 3.0}, {4.0, 5.0, 6.25}}, 0, 0));
  CHECK(kiln::testing::allclose(sess.run(b), {0.1, 0.2, 0.3}, 0, 0));
  CHECK(sess.run(gs).scalar<std::int64_t>() == 41);
  CHECK(sess.run(flags).as<bool>() == xt::xarray<bool>{true, false});
  CHECK(sess.run(n).as<std::int32_t>() == xt::xarray<std::int32_t>{7, -8});
  CHECK(sess.run(s).scalar<float>() == 2.5f);
}
