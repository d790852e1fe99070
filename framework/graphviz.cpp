// The Boost.Graph DOT writer (its own translation unit: the header is heavy and g++ 12 warns
// inside it).
#include <ostream>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/graphviz.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "framework/graph.hpp"
#include "framework/op_registry.hpp"

namespace kiln {

namespace {
struct VertexProps {
  std::string label;
};
struct EdgeProps {
  std::string label;
  bool control = false;
};
using DotGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, VertexProps, EdgeProps>;

std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"') r += '\\';
    r += c;
  }
  return r;
}
}  // namespace

void write_graphviz(const Graph& graph, std::ostream& os) {
  DotGraph dg(static_cast<std::size_t>(graph.num_nodes()));
  for (int i = 0; i < graph.num_nodes(); ++i) {
    const auto* n = graph.node(i);
    std::string label = n->name + "\\n" + n->def->type;
    for (std::size_t k = 0; k < n->output_shapes.size(); ++k)
      label += "\\n" + std::string(dtype_name(n->output_dtypes[k])) + n->output_shapes[k].to_string();
    dg[static_cast<std::size_t>(i)].label = label;
    for (auto& in : n->inputs) {
      auto e = boost::add_edge(static_cast<std::size_t>(in.node->id), static_cast<std::size_t>(i), dg).first;
      dg[e].label = std::to_string(in.index);
    }
    for (auto* c : n->control_inputs) {
      auto e = boost::add_edge(static_cast<std::size_t>(c->id), static_cast<std::size_t>(i), dg).first;
      dg[e].control = true;
    }
  }
  boost::write_graphviz(
      os, dg,
      [&](std::ostream& out, std::size_t v) { out << "[shape=box,label=\"" << escape(dg[v].label) << "\"]"; },
      [&](std::ostream& out, const DotGraph::edge_descriptor& e) {
        if (dg[e].control) out << "[style=dashed]";
        else out << "[label=\"" << dg[e].label << "\"]";
      },
      [](std::ostream& out) { out << "rankdir=TB;\n"; });
}

}  // namespace kiln
