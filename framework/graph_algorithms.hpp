#pragma once
// The Boost.Graph seam: ordering and pruning of the ops a run needs, cycle checks.
#include <functional>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::detail {

/// The ops needed to compute `targets` (following data and control inputs, not past `cut` ops,
/// whose outputs are all fed), in an order where every op follows its inputs.
/// Throws InvalidArgumentError naming ops on a dependency cycle.
/// The ops reachable backwards from `from` along data inputs (and control inputs when
/// `follow_control`), one flag per node id. An op for which `stop` is true is included but not
/// followed further.
std::vector<char> reachable_backward(const Graph& g, const std::vector<const Node*>& from, bool follow_control,
                                     const std::function<bool(const Node*)>& stop = {});

/// The ops on a data path from one of `from` to one of `to`, not through ref inputs (what
/// gradients flow through), one flag per node id.
std::vector<char> ops_between(const Graph& g, const std::vector<const Node*>& from, const std::vector<const Node*>& to);

/// Per node id: how many data and control inputs of the graph's ops (those flagged in `among`,
/// one flag per node id, when given) name one of its outputs.
std::vector<int> reader_counts(const Graph& g, const std::vector<char>* among = nullptr);

std::vector<Node*> execution_order(const Graph& g, const std::vector<Node*>& targets,
                                   const std::vector<bool>& cut);

/// The same walk with the edges chosen by the caller (graph rewrites that bypass or replace ops):
/// the nodes reachable backwards from `targets` through `predecessors(node)`, in an order where
/// every node follows its predecessors. Throws InvalidArgumentError naming ops on a cycle.
std::vector<Node*> ordered_closure(const Graph& g, const std::vector<Node*>& targets,
                                   const std::function<std::vector<Node*>(Node*)>& predecessors);

}  // namespace kiln::detail
