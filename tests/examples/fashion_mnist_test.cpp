// Slow suite: the main job's training code (examples/fashion_mnist_lib) learns Fashion-MNIST.
// Short runs on subsets of the real data (Debian package dataset-fashion-mnist), so the whole
// file stays well under a minute on two cores.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "examples/data/idx.hpp"
#include "examples/fashion_mnist_lib.hpp"
#include "tests/support/json.hpp"

namespace {

namespace fs = std::filesystem;
using kiln::examples::FashionMnistConfig;
using kiln::examples::train_fashion_mnist;

const kiln::data::Dataset& dataset() {
  static const kiln::data::Dataset ds = kiln::data::load_fashion_mnist();
  return ds;
}

FashionMnistConfig quick_config() {
  FashionMnistConfig c;
  c.epochs = 1;
  c.threads = 1;   // reproducible regardless of the machine's core count
  c.seed = 7;
  return c;
}

}  // namespace

TEST_CASE("fashion_mnist.shuffle: Fisher-Yates permutes, is seeded and platform independent") {
  std::vector<std::int64_t> v(1000);
  std::iota(v.begin(), v.end(), 0);
  std::mt19937 a(3), b(3), c(4);
  auto va = v, vb = v, vc = v;
  kiln::examples::fisher_yates_shuffle(va, a);
  kiln::examples::fisher_yates_shuffle(vb, b);
  kiln::examples::fisher_yates_shuffle(vc, c);
  CHECK(va == vb);
  CHECK(va != vc);
  CHECK(va != v);
  auto sorted = va;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == v);
  // The hand-written shuffle depends only on mt19937's output, which the standard fixes.
  std::vector<std::int64_t> small{0, 1, 2, 3, 4};
  std::mt19937 r(1);
  kiln::examples::fisher_yates_shuffle(small, r);
  std::vector<std::int64_t> again{0, 1, 2, 3, 4};
  std::mt19937 r2(1);
  for (std::size_t i = again.size(); i > 1; --i) {
    std::uint64_t x;
    const std::uint64_t limit = 0xFFFFFFFFull - ((0xFFFFFFFFull % i) + 1) % i;
    do x = r2();
    while (x > limit);
    std::swap(again[i - 1], again[x % i]);
  }
  CHECK(small == again);
}

TEST_CASE("fashion_mnist.train: one short epoch on a subset is far above chance") {
  FashionMnistConfig c = quick_config();
  c.train_limit = 6000;
  c.test_limit = 2000;
  const fs::path out = fs::temp_directory_path() / ("kiln_fashion_mnist_test_" + std::to_string(::getpid()));
  c.output_dir = out.string();
  const auto r = train_fashion_mnist(c, dataset());
  REQUIRE(r.epochs.size() == 1);
  const auto& e = r.epochs[0];
  MESSAGE("6000 examples, 1 epoch: train loss " << e.train_loss << ", test accuracy " << e.test_accuracy
                                                << ", " << e.train_seconds << " s");
  CHECK(r.train_examples == 6000);
  CHECK(r.test_examples == 2000);
  CHECK(e.test_accuracy >= 0.75);   // chance is 0.1; typically about 0.82
  CHECK(e.train_loss < 1.0);        // starts at ln(10) = 2.30
  CHECK(fs::file_size(out / "graph.dot") > 1000);
  std::ifstream csv(out / "curves.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  CHECK(header.rfind("epoch,learning_rate,train_loss,", 0) == 0);
  CHECK(row.rfind("1,", 0) == 0);
  // The moving statistics before training and about 20 times per epoch; UPDATE_OPS moved them
  // from their initial values (mean 0, variance 1).
  REQUIRE(r.batch_norm_layers == std::vector<std::string>{"block1/batch_normalization", "block2/batch_normalization",
                                                          "hidden/batch_normalization"});
  REQUIRE(r.moving_stats.size() >= 20u);
  CHECK(r.moving_stats.front().epoch == 0);
  CHECK(r.moving_stats.front().mean_of_moving_variance[0] == 1);
  CHECK(r.moving_stats.back().epoch == 1);
  for (std::size_t i = 0; i < 3; ++i) CHECK(r.moving_stats.back().mean_of_moving_variance[i] != 1);
  std::ifstream stats(out / "moving_stats.csv");
  std::getline(stats, header);
  CHECK(header == "epoch,block1/batch_normalization moving_mean,block1/batch_normalization moving_variance,"
                  "block2/batch_normalization moving_mean,block2/batch_normalization moving_variance,"
                  "hidden/batch_normalization moving_mean,hidden/batch_normalization moving_variance");
  std::error_code ec;
  fs::remove_all(out, ec);
}

TEST_CASE("fashion_mnist.train: a fixed seed and thread count give identical runs") {
  FashionMnistConfig c = quick_config();
  c.train_limit = 640;
  c.test_limit = 500;
  const auto r1 = train_fashion_mnist(c, dataset());
  const auto r2 = train_fashion_mnist(c, dataset());
  CHECK(r1.epochs[0].train_loss == r2.epochs[0].train_loss);
  CHECK(r1.epochs[0].test_loss == r2.epochs[0].test_loss);
  CHECK(r1.epochs[0].test_accuracy == r2.epochs[0].test_accuracy);
  c.seed = 8;
  const auto r3 = train_fashion_mnist(c, dataset());
  CHECK(r3.epochs[0].train_loss != r1.epochs[0].train_loss);
}

TEST_CASE("fashion_mnist.train: the seed network, channels_first, composed batch norm, momentum") {
  FashionMnistConfig c = quick_config();
  c.train_limit = 3000;
  c.test_limit = 1000;
  c.hidden_units = 0;  // conv-bn-relu-pool x2 -> dense 10, as in the issue
  c.data_format = "channels_first";
  c.fused = false;
  c.optimizer = "momentum";
  const auto r = train_fashion_mnist(c, dataset());
  MESSAGE("3000 examples, channels_first, momentum: test accuracy " << r.epochs[0].test_accuracy);
  CHECK(r.epochs[0].test_accuracy >= 0.6);
}

TEST_CASE("fashion_mnist.trace_writes_one_training_step") {
  const fs::path out = fs::temp_directory_path() / ("kiln_fm_trace_" + std::to_string(::getpid()));
  auto c = quick_config();
  c.train_limit = 320;
  c.test_limit = 100;
  c.trace_step = 3;
  c.output_dir = out.string();
  const auto r = train_fashion_mnist(c, dataset());
  CHECK(r.trace_summary.find("Conv2D") != std::string::npos);
  CHECK(r.trace_summary.find("all ops") != std::string::npos);
  REQUIRE(r.trace_path == (out / "trace.json").string());
  std::ifstream in(r.trace_path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto json = kiln::testing::parse_json(text);
  std::size_t events = 0;
  for (const auto& e : json["traceEvents"].array()) events += e["ph"].string() == "X";
  CHECK(events > 50);
  fs::remove_all(out);
}
