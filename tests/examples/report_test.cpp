// The main job's pictures (examples/report.hpp): its graph collapsed to a picture dot draws at a
// glance, curves.png from the CSV files, and the hints when the tools are missing. Runs `dot` and
// gnuplot only when they are installed.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <unistd.h>

#include <kiln.hpp>

#include "examples/fashion_mnist_lib.hpp"
#include "examples/report.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/dot_text.hpp"

namespace {

namespace fs = std::filesystem;
using kiln::testing::contains;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("kiln_report_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint32_t big_endian32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

// Sets PATH for the lifetime of the guard.
class PathGuard {
 public:
  explicit PathGuard(const std::string& path) : saved_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    ::setenv("PATH", path.c_str(), 1);
  }
  ~PathGuard() { ::setenv("PATH", saved_.c_str(), 1); }
  PathGuard(const PathGuard&) = delete;
  PathGuard& operator=(const PathGuard&) = delete;

 private:
  std::string saved_;
};

void write_csvs(const fs::path& dir) {
  // Two epochs of a made-up run, in the columns the main job writes.
  std::ofstream(dir / "curves.csv")
      << "epoch,learning_rate,train_loss,train_accuracy,test_loss,test_accuracy,train_seconds,eval_seconds,"
         "examples_per_second\n1,0.001,0.45,0.84,0.38,0.86,50,2,1200\n2,0.0006,0.3,0.89,0.31,0.89,49,2,1220\n";
  std::ofstream(dir / "moving_stats.csv") << "epoch,b1/bn moving_mean,b1/bn moving_variance,b2/bn moving_mean,"
                                             "b2/bn moving_variance\n0,0,1,0,1\n1,0.2,0.6,0.1,0.8\n2,0.25,0.5,0.12,0.7\n";
}

}  // namespace

TEST_CASE("report.main_graph_collapses_to_a_picture_dot_draws") {
  kiln::Graph graph;
  auto guard = graph.as_default();
  kiln::examples::build_fashion_mnist_graph(kiln::examples::FashionMnistConfig{}, 938);
  REQUIRE(graph.num_nodes() > 400);  // the full graph: hundreds of ops
  const fs::path dir = fresh_dir("graph");
  {
    std::ofstream dot(dir / "graph.dot");
    kiln::write_graphviz(graph, dot, {.collapse_below = 2});
  }
  const auto dot = kiln::testing::parse_dot(read_file(dir / "graph.dot"));
  MESSAGE("main graph: " << graph.num_nodes() << " ops drawn as " << dot.nodes.size() << " nodes, "
                         << dot.edges.size() << " edges, " << dot.clusters.size() << " clusters");
  CHECK(dot.nodes.size() <= 60u);
  CHECK(dot.nodes.size() >= 20u);  // the layers, the loss, the gradients, the optimizer
  // Each batch-norm layer is a box with its variables and its two UPDATE_OPS.
  CHECK(kiln::testing::count_lines_with(dot.nodes, {"label=\"batch_normalization\\n", "moving_variance",
                                                     "2 in UPDATE_OPS"}) == 3);
  if (kiln::examples::find_program("dot").empty()) {
    MESSAGE("dot not installed: rendering not checked");
  } else {
    const auto svg = kiln::examples::render_graph(dir / "graph.dot", dir / "graph.svg");
    INFO(svg.note);
    CHECK(svg.written);
    CHECK(contains(read_file(dir / "graph.svg"), "<svg"));
  }
  fs::remove_all(dir);
}

TEST_CASE("report.curves_png_is_a_png_of_the_requested_size") {
  const fs::path dir = fresh_dir("curves");
  write_csvs(dir);
  const auto png = kiln::examples::plot_curves(dir, {.width = 640, .height = 480});
  // The script is written either way, one curve per layer and statistic.
  const std::string script = read_file(dir / "curves.gp");
  CHECK(contains(script, "size 640,480"));
  CHECK(contains(script, "using 1:2 with lines lw 2 title 'b1/bn'"));
  CHECK(contains(script, "using 1:5 with lines lw 2 title 'b2/bn'"));
  if (kiln::examples::find_program("gnuplot").empty()) {
    MESSAGE("gnuplot not installed: curves.png not checked");
    CHECK_FALSE(png.written);
  } else {
    INFO(png.note);
    REQUIRE(png.written);
    const std::string bytes = read_file(png.path);
    REQUIRE(bytes.size() > 33u);
    CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));  // the PNG signature
    CHECK(bytes.substr(12, 4) == "IHDR");                               // first chunk
    CHECK(big_endian32(bytes, 16) == 640u);                             // width
    CHECK(big_endian32(bytes, 20) == 480u);                             // height
  }
  fs::remove_all(dir);
}

TEST_CASE("report.without_the_tools_it_says_what_to_install") {
  const fs::path dir = fresh_dir("tools");
  write_csvs(dir);
  std::ofstream(dir / "graph.dot") << "digraph g { a -> b; }\n";
  const fs::path empty = dir / "no_tools";
  fs::create_directories(empty);
  PathGuard path(empty.string());
  CHECK(kiln::examples::find_program("dot").empty());
  const auto svg = kiln::examples::render_graph(dir / "graph.dot", dir / "graph.svg");
  CHECK_FALSE(svg.written);
  CHECK(contains(svg.note, "install graphviz"));
  const auto png = kiln::examples::plot_curves(dir);
  CHECK_FALSE(png.written);
  CHECK(contains(png.note, "install gnuplot-nox"));
  CHECK_FALSE(fs::exists(dir / "curves.png"));
  CHECK_THROWS_AS(kiln::examples::plot_curves(empty), std::runtime_error);  // no curves.csv
  fs::remove_all(dir);
}
