#pragma once
// Test helpers: the statements of DOT text as written by write_graphviz (Boost.Graph's writer puts
// one statement per line: `12[label="...", shape=box];`, `3 -> 7[style=dashed];`,
// `subgraph cluster_2 {`).
#include <cctype>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::testing {

struct DotText {
  std::vector<std::string> nodes, edges, clusters;  // whole lines
};

inline DotText parse_dot(const std::string& text) {
  DotText d;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::size_t i = 0;
    while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
    if (line.rfind("subgraph cluster", 0) == 0) d.clusters.push_back(line);
    else if (i == 0) continue;
    else if (line.compare(i, 4, " -> ") == 0) d.edges.push_back(line);
    else if (i < line.size() && line[i] == '[') d.nodes.push_back(line);
  }
  return d;
}

/// The lines of `lines` containing every one of `parts`.
inline int count_lines_with(const std::vector<std::string>& lines, const std::vector<std::string>& parts) {
  int n = 0;
  for (const auto& line : lines) {
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
    n += all ? 1 : 0;
  }
  return n;
}

}  // namespace kiln::testing
