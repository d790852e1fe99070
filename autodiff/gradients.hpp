#pragma once
// Reverse-mode automatic differentiation over the graph.
//
//   Tensor loss = ...;
//   auto g = gradients({loss}, {w, b});   // symbolic: new ops under "gradients/"
//   Array dw = sess.run(*g[0], feeds);
//
// gradients(ys, xs, grad_ys) builds the gradient of sum(ys) (each y weighted by its grad_y, default
// ones) with respect to each x. Rules:
// - the ops between xs and ys are visited once, in reverse topological order (pending counts);
//   several contributions to one tensor are summed with one AddN;
// - control edges are not differentiated; stop_gradient and ops registered "not differentiable"
//   stop the flow; integer and boolean tensors carry no gradient;
// - an x not connected to ys gets std::nullopt;
// - an op on the path with no registered gradient: LookupError "No gradient defined for operation
//   'name' (op type: Type)".
// Gradients are ordinary ops: they can be fetched, put under control dependencies and
// differentiated again where their ops have gradients.
#include <optional>
#include <vector>

#include "framework/graph.hpp"

namespace kiln {

std::vector<std::optional<Tensor>> gradients(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs,
                                             const std::vector<Tensor>& grad_ys = {});
/// Convenience: one y; xs may be variables.
std::vector<std::optional<Tensor>> gradients(const Tensor& y, const std::vector<Tensor>& xs);

}  // namespace kiln
