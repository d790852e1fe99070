#pragma once
// Shared by the graph rewrites (graph_util.cpp, fold_batch_norms.cpp); internal.
#include <cstddef>
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::graph_util::detail {

/// Builds in `into` a copy of op `n` with the given (new) inputs and control inputs: same type,
/// name, attributes (through the op's codec when it has one, so tensor references resolve in
/// `into`) and seed. InternalError when the name is taken in `into`.
Operation copy_op(Graph& into, const kiln::detail::Node& n, const std::vector<Tensor>& inputs,
                  const std::vector<Operation>& controls);

/// InternalError unless `op` is named `name`.
void check_name(const Operation& op, const std::string& name);

struct RefHash {
  std::size_t operator()(const kiln::detail::TensorRef& r) const;
};

}  // namespace kiln::graph_util::detail
