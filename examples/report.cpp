#include "examples/report.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace kiln::examples {

namespace fs = std::filesystem;

namespace {

// The CSV header's column names.
std::vector<std::string> csv_header(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::vector<std::string> names;
  if (!std::getline(in, line)) return names;
  std::istringstream fields(line);
  for (std::string name; std::getline(fields, name, ',');) names.push_back(name);
  return names;
}

// 1-based gnuplot column of `name`; throws when the CSV has no such column.
int column(const std::vector<std::string>& header, const std::string& name, const fs::path& file) {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i) + 1;
  throw std::runtime_error(file.string() + " has no column '" + name + "'");
}

// A gnuplot single-quoted string ('' stands for a quote).
std::string quoted(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("''") : std::string(1, c);
  return r + "'";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string missing_tool(const std::string& program, const std::string& package, const std::string& what) {
  return program + " not found: install " + package + " (sudo apt-get install " + package + ", or bash " +
         "scripts/install-deps.sh) for " + what;
}

}  // namespace

fs::path find_program(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate)) return candidate;
  }
  return {};
}

int run_program(const std::vector<std::string>& argv, const fs::path& log_file) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return 127;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 127;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Picture render_graph(const fs::path& dot_file, const fs::path& svg_file) {
  Picture p{svg_file, false, ""};
  if (find_program("dot").empty()) {
    p.note = missing_tool("dot", "graphviz", svg_file.filename().string());
    return p;
  }
  const fs::path log = fs::path(svg_file).replace_extension(".log");
  const int status = run_program({"dot", "-Tsvg", dot_file.string(), "-o", svg_file.string()}, log);
  p.written = status == 0;
  if (p.written) fs::remove(log);
  else p.note = "dot failed (exit status " + std::to_string(status) + "), see " + log.string();
  return p;
}

Picture plot_curves(const fs::path& dir, PlotSize size) {
  const fs::path curves = dir / "curves.csv", stats = dir / "moving_stats.csv";
  const fs::path png = dir / "curves.png", script_file = dir / "curves.gp";
  const auto header = csv_header(curves);
  if (header.empty()) throw std::runtime_error("plot_curves: " + curves.string() + " is missing or empty");
  const auto stats_header = csv_header(stats);

  // Four panels (two without moving_stats.csv): loss and accuracy per epoch, then per batch-norm
  // layer the mean of its moving mean and of its moving variance over training.
  std::ostringstream gp;
  gp << "# Draws curves.png; written by the main job (examples/report.cpp). Run: gnuplot curves.gp\n"
     << "set terminal pngcairo size " << size.width << ',' << size.height << " font 'Helvetica,11' noenhanced\n"
     << "set output " << quoted(png.string()) << "\n"
     << "set datafile separator ','\nset grid\nset xlabel 'epoch'\n"
     << "set multiplot layout " << (stats_header.empty() ? "1,2" : "2,2")
     << " title 'Fashion-MNIST: per epoch (training mode for train, inference mode for test)'\n";
  const std::string c = quoted(curves.string());
  auto per_epoch = [&](const std::string& title, const std::string& what) {
    gp << "set title '" << title << "'\nset xtics 1\nplot " << c << " using 1:" << column(header, "train_" + what, curves)
       << " with linespoints pt 7 title 'train', " << c << " using 1:" << column(header, "test_" + what, curves)
       << " with linespoints pt 7 title 'test'\n";
  };
  gp << "set key top right\n";  // where the falling loss leaves room
  per_epoch("loss", "loss");
  gp << "set key bottom right\n";
  per_epoch("accuracy", "accuracy");
  gp << "set key below\n";  // one line per layer, clear of the curves
  auto per_layer = [&](const std::string& title, const std::string& suffix) {
    gp << "set title '" << title << "'\nset xtics autofreq\nplot ";
    bool first = true;
    for (std::size_t i = 1; i < stats_header.size(); ++i) {
      if (!ends_with(stats_header[i], suffix)) continue;
      gp << (first ? "" : ", ") << quoted(stats.string()) << " using 1:" << i + 1 << " with lines lw 2 title "
         << quoted(stats_header[i].substr(0, stats_header[i].size() - suffix.size()));
      first = false;
    }
    gp << '\n';
  };
  if (!stats_header.empty()) {
    per_layer("batch norm: mean of moving_mean (moved by UPDATE_OPS)", " moving_mean");
    per_layer("batch norm: mean of moving_variance (moved by UPDATE_OPS)", " moving_variance");
  }
  gp << "unset multiplot\n";
  {
    std::ofstream out(script_file);
    out << gp.str();
    if (!out) throw std::runtime_error("plot_curves: cannot write " + script_file.string());
  }

  Picture p{png, false, ""};
  if (find_program("gnuplot").empty()) {
    p.note = missing_tool("gnuplot", "gnuplot-nox", png.filename().string());
    return p;
  }
  const fs::path log = dir / "curves.log";
  const int status = run_program({"gnuplot", script_file.string()}, log);
  p.written = status == 0;
  if (p.written) fs::remove(log);
  else p.note = "gnuplot failed (exit status " + std::to_string(status) + "), see " + log.string();
  return p;
}

}  // namespace kiln::examples
