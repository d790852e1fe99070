#pragma once
// Pictures of a graph: DOT text for Graphviz's `dot` (the Boost.Graph DOT writer is the seam).
//
//   write_graphviz(graph, std::cout);                              // one node per op
//   write_graphviz(graph, file, {.collapse_below = 2});            // TensorBoard-style grouping
//   // then: dot -Tsvg graph.dot -o graph.svg
//
// What the picture shows:
// - name scopes as clusters (boxes with the scope's name around their ops);
// - with collapse_below = d > 0, every scope at depth d (1 = top level) is one box, as is a scope
//   above d that holds ops only (no sub-scopes); the box is labelled with its op count, the shape
//   of the output the next op reads, the layer's variables ("kernel [3,3,1,32]") and how many of
//   its ops are in UPDATE_OPS. A variable outside such a box is one node with its initializer,
//   its assign and its optimizer slots. Ops named like a series (AddN, AddN_1, ...) in one scope
//   are one node "AddN x8";
// - the ops of a cond's true branch (batch norm's and dropout's training-only branch) shaded, in a
//   box of their own next to their scope's box;
// - control edges dashed, leaving out those a longer path already implies; edges into and out of
//   the ops of the UPDATE_OPS collection drawn thick and red;
// - a legend line at the bottom.
// Not thread safe against concurrent graph building (it reads the graph's nodes).
#include <iosfwd>
#include <string>

namespace kiln {

class Graph;

struct GraphvizOptions {
  /// Depth (1 = top-level scopes) at and below which a name scope is drawn as one box; 0 draws
  /// every op. The main job's graph (about 800 ops) gives about 50 nodes with 2.
  int collapse_below = 0;
  /// Name scopes (not collapsed) as clusters; false: a flat picture.
  bool clusters = true;
  /// Thick red edges into and out of UPDATE_OPS ops.
  bool highlight_update_ops = true;
  /// Shade the true branch of every cond (its own box when collapsed).
  bool shade_training_branch = true;
  /// Graphviz rankdir: "TB" (inputs at the top) or "LR".
  std::string rankdir = "TB";
};

/// One node per op (labelled with name, type, dtype and shape), scopes as clusters, control
/// edges dashed: write_graphviz(graph, os, GraphvizOptions{}).
void write_graphviz(const Graph& graph, std::ostream& os);
/// The picture described at the top of this header. Throws ValueError for collapse_below < 0 or
/// a rankdir other than TB, LR, BT, RL.
void write_graphviz(const Graph& graph, std::ostream& os, const GraphvizOptions& options);

}  // namespace kiln
