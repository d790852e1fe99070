// From training to inference: trains the main job's network briefly (examples/fashion_mnist_lib),
// freezes it (graph_util::convert_variables_to_constants: variables become constants, the
// `training` placeholder false, the conds, Switch/Merge and update ops gone), folds its batch
// norms into the convolutions and dense layers (graph_util::fold_batch_norms), writes both graphs
// (write_graph), then runs itself again in a fresh process (--reload) that imports them
// (import_graph_def) and prints the op counts, the max absolute difference between the original
// inference output and the folded one on the test set, the test accuracy of both and the
// inference time per image of both.
//
//   ./build/examples/export                          # 1 epoch on 10000 images, NHWC
//   ./build/examples/export --data-format channels_first --out out/export_nchw
#include <CLI/CLI.hpp>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include <xtensor/xmath.hpp>

#include <kiln.hpp>

#include "framework/graph_io.hpp"
#include "framework/graph_util.hpp"

#include "examples/data/idx.hpp"
#include "examples/fashion_mnist_lib.hpp"

extern char** environ;

namespace {

using namespace kiln;
namespace fs = std::filesystem;

constexpr std::size_t kClasses = 10;

struct TestSet {
  xt::xarray<float> images;  // [n, 28, 28, 1] or [n, 1, 28, 28], in [0, 1]
  std::vector<std::uint8_t> labels;
};

TestSet load_test_set(const std::string& dir, std::int64_t limit, bool channels_first) {
  const data::Dataset ds = data::load_fashion_mnist(dir);
  const auto n = static_cast<std::size_t>(limit > 0 ? std::min(limit, ds.test_images.shape[0]) : ds.test_images.shape[0]);
  TestSet t;
  t.images = channels_first ? xt::xarray<float>::from_shape({n, 1, 28, 28}) : xt::xarray<float>::from_shape({n, 28, 28, 1});
  for (std::size_t i = 0; i < t.images.size(); ++i) t.images.data()[i] = static_cast<float>(ds.test_images.data[i]) / 255.0f;
  t.labels.assign(ds.test_labels.data.begin(), ds.test_labels.data.begin() + static_cast<std::ptrdiff_t>(n));
  return t;
}

struct Inference {
  xt::xarray<float> logits;  // [n, 10]
  double accuracy = 0;
  double seconds_per_image = 0;
};

// Logits of the whole test set in batches of 500; `extra` adds feeds (training = false).
Inference infer(Session& sess, const Tensor& x, const Tensor& logits, const TestSet& t, const FeedDict& extra = {}) {
  const std::size_t n = t.labels.size(), per_image = t.images.size() / std::max<std::size_t>(n, 1);
  Inference r;
  r.logits = xt::xarray<float>::from_shape({n, kClasses});
  std::size_t correct = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t begin = 0; begin < n; begin += 500) {
    const std::size_t end = std::min(n, begin + 500);
    auto shape = t.images.shape();
    shape[0] = end - begin;
    xt::xarray<float> batch = xt::xarray<float>::from_shape(shape);
    std::copy(t.images.data() + begin * per_image, t.images.data() + end * per_image, batch.data());
    FeedDict feeds = extra;
    feeds.emplace_back(x, std::move(batch));
    const Array result = sess.run(logits, feeds);
    const auto& out = result.as<float>();
    std::copy(out.begin(), out.end(), r.logits.data() + begin * kClasses);
    for (std::size_t i = 0; i < end - begin; ++i) {
      const float* row = out.data() + i * kClasses;
      correct += static_cast<std::size_t>(std::max_element(row, row + kClasses) - row) == t.labels[begin + i] ? 1 : 0;
    }
  }
  r.seconds_per_image = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                        static_cast<double>(std::max<std::size_t>(n, 1));
  r.accuracy = static_cast<double>(correct) / static_cast<double>(std::max<std::size_t>(n, 1));
  return r;
}

std::string op_summary(const Graph& g) {
  std::map<std::string, int> count;
  for (const Operation& op : g.operations()) ++count[op.type()];
  std::ostringstream s;
  s << g.num_nodes() << " ops (";
  bool first = true;
  for (const char* t : {"VariableV2", "Switch", "Merge", "AssignSub", "FusedBatchNorm", "Conv2D", "MatMul", "BiasAdd", "Mul", "Const"})
    if (count.count(t)) {
      s << (first ? "" : ", ") << count[t] << ' ' << t;
      first = false;
    }
  s << ')';
  return s.str();
}

void write_floats(const fs::path& path, const xt::xarray<float>& a) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(a.data()), static_cast<std::streamsize>(a.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

xt::xarray<float> read_floats(const fs::path& path, std::size_t rows) {
  xt::xarray<float> a = xt::xarray<float>::from_shape({rows, kClasses});
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(a.data()), static_cast<std::streamsize>(a.size() * sizeof(float)));
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return a;
}

// The fresh process: import both graphs, run them on the test set, compare with the original.
int reload(const fs::path& dir, const std::string& data_dir, std::int64_t test_limit, bool channels_first) {
  const TestSet t = load_test_set(data_dir, test_limit, channels_first);
  const xt::xarray<float> original = read_floats(dir / "original_logits.bin", t.labels.size());
  std::cout << "\n[fresh process] importing " << (dir / "frozen.kgraph").string() << " and "
            << (dir / "folded.kgraph").string() << '\n';
  auto frozen = import_graph_def((dir / "frozen.kgraph").string());
  auto folded = import_graph_def((dir / "folded.kgraph").string());
  std::cout << "frozen graph: " << op_summary(*frozen) << "\nfolded graph: " << op_summary(*folded) << '\n';
  Session s1(*frozen), s2(*folded);
  const Inference a = infer(s1, frozen->get_tensor_by_name("x:0"), frozen->get_tensor_by_name("logits/BiasAdd:0"), t);
  const Inference b = infer(s2, folded->get_tensor_by_name("x:0"), folded->get_tensor_by_name("logits/BiasAdd:0"), t);
  const double frozen_diff = xt::amax(xt::abs(a.logits - original))();
  const double folded_diff = xt::amax(xt::abs(b.logits - original))();
  std::cout << std::setprecision(3) << "max |logits - original| on " << t.labels.size()
            << " test images: frozen " << frozen_diff << ", folded " << folded_diff << " (max |logit| "
            << xt::amax(xt::abs(original))() << ")\n"
            << std::fixed << std::setprecision(4) << "test accuracy: frozen " << a.accuracy << ", folded " << b.accuracy
            << '\n'
            << std::setprecision(1) << "inference time per image: frozen " << a.seconds_per_image * 1e6 << " us, folded "
            << b.seconds_per_image * 1e6 << " us\n";
  return 0;
}

// Runs this program again with `args` and waits for it.
int run_self(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("cannot start /proc/self/exe");
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace

int main(int argc, char** argv) {
  kiln::examples::FashionMnistConfig cfg;
  cfg.epochs = 1;
  cfg.train_limit = 10000;
  cfg.test_limit = 2000;
  std::string out_dir = "out/export", reload_dir;
  CLI::App app{"Trains the main job's network briefly, freezes and folds it, writes it and reloads it in a fresh process."};
  app.add_option("-e,--epochs", cfg.epochs, "Training epochs")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--train-limit", cfg.train_limit, "Training images (0: all)")->capture_default_str();
  app.add_option("--test-limit", cfg.test_limit, "Test images (0: all)")->capture_default_str();
  app.add_option("--data-format", cfg.data_format, "Layout")
      ->capture_default_str()->check(CLI::IsMember({"channels_last", "channels_first"}));
  app.add_option("--data-dir", cfg.data_dir, "Fashion-MNIST directory")->capture_default_str();
  app.add_option("-o,--out", out_dir, "Where the graphs go")->capture_default_str();
  app.add_option("--reload", reload_dir, "(internal) the fresh process: import the graphs written in this directory");
  CLI11_PARSE(app, argc, argv);
  const bool channels_first = cfg.data_format == "channels_first";
  try {
    if (!reload_dir.empty()) return reload(reload_dir, cfg.data_dir, cfg.test_limit, channels_first);

    fs::create_directories(out_dir);
    cfg.progress = kiln::examples::ProgressBar::Mode::none;
    cfg.after_training = [&](Session& sess, const kiln::examples::Model& m) {
      Graph& g = sess.graph();
      const TestSet t = load_test_set(cfg.data_dir, cfg.test_limit, channels_first);
      const Inference original = infer(sess, m.x, m.logits, t, {{m.training, false}});
      write_floats(fs::path(out_dir) / "original_logits.bin", original.logits);
      auto frozen = graph_util::convert_variables_to_constants(sess, g, {m.logits.op().name()});
      auto folded = graph_util::fold_batch_norms(*frozen);
      write_graph(*frozen, (fs::path(out_dir) / "frozen.kgraph").string());
      write_graph(*folded, (fs::path(out_dir) / "folded.kgraph").string());
      std::cout << "\ntraining graph: " << op_summary(g) << '\n'
                << std::fixed << std::setprecision(4) << "original (training graph, training = false): test accuracy "
                << original.accuracy << std::setprecision(1) << ", " << original.seconds_per_image * 1e6
                << " us per image\nwrote " << out_dir << "/frozen.kgraph (" << fs::file_size(fs::path(out_dir) / "frozen.kgraph")
                << " bytes) and folded.kgraph (" << fs::file_size(fs::path(out_dir) / "folded.kgraph") << " bytes)\n";
    };
    kiln::examples::train_fashion_mnist(cfg, &std::cout);
    std::cout << std::flush;
    return run_self({"export", "--reload", out_dir, "--data-dir", cfg.data_dir, "--test-limit",
                     std::to_string(cfg.test_limit), "--data-format", cfg.data_format});
  } catch (const std::exception& e) {
    std::cerr << "export: " << e.what() << '\n';
    return 1;
  }
}
