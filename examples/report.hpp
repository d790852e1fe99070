#pragma once
// The main job's pictures, drawn by external tools when they are installed:
//   graph.svg  from graph.dot by Graphviz's `dot` (package graphviz)
//   curves.png from curves.csv and moving_stats.csv by gnuplot (package gnuplot-nox), through the
//              script curves.gp written next to them (rerun it by hand: `gnuplot curves.gp`)
//
//   auto svg = kiln::examples::render_graph(dir / "graph.dot", dir / "graph.svg");
//   auto png = kiln::examples::plot_curves(dir);
//   std::cout << (png.written ? png.path : png.note) << '\n';
//
// Without a tool nothing is thrown: the Picture says which package to install. Not thread safe
// (runs child processes and writes files).
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::examples {

/// The result of drawing one picture.
struct Picture {
  std::filesystem::path path;  // the picture file (written or not)
  bool written = false;
  std::string note;  // when not written: why, and what to install
};

/// The full path of `program` on PATH, or empty when it is not there.
std::filesystem::path find_program(const std::string& program);

/// Runs argv[0] (looked up on PATH) with the arguments, its output sent to `log_file`, and waits.
/// Returns the exit status; 127 when it could not be started.
int run_program(const std::vector<std::string>& argv, const std::filesystem::path& log_file);

/// `dot -Tsvg dot_file -o svg_file`.
Picture render_graph(const std::filesystem::path& dot_file, const std::filesystem::path& svg_file);

/// Size of curves.png in pixels.
struct PlotSize {
  int width = 1200;
  int height = 900;
};

/// Writes <dir>/curves.gp and runs gnuplot on it to draw <dir>/curves.png from <dir>/curves.csv
/// (per epoch: train and test loss, train and test accuracy) and, when present,
/// <dir>/moving_stats.csv (per batch-norm layer, over training: the mean of its moving mean and of
/// its moving variance). Throws std::runtime_error when curves.csv is missing.
Picture plot_curves(const std::filesystem::path& dir, PlotSize size = {});

}  // namespace kiln::examples
