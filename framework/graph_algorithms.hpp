#pragma once
// The Boost.Graph seam: ordering and pruning of the ops a run needs, cycle checks.
#include <functional>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::detail {

/// The ops needed to compute `targets` (following data and control inputs, not past `cut` ops,
/// whose outputs are all fed), in an order where every op follows its inputs.
/// Throws InvalidArgumentError naming ops on a dependency cycle.
std::vector<Node*> execution_order(const Graph& g, const std::vector<Node*>& targets,
                                   const std::vector<bool>& cut);

/// The same walk with the edges chosen by the caller (graph rewrites that bypass or replace ops):
/// the nodes reachable backwards from `targets` through `predecessors(node)`, in an order where
/// every node follows its predecessors. Throws InvalidArgumentError naming ops on a cycle.
std::vector<Node*> ordered_closure(const Graph& g, const std::vector<Node*>& targets,
                                   const std::function<std::vector<Node*>(Node*)>& predecessors);

}  // namespace kiln::detail
