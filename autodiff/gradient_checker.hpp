#pragma once
// A generic finite-difference gradient checker (TF's ComputeGradientError).
//
//   Tensor x = placeholder(float64, {2, 3});
//   Tensor y = tanh(x);
//   auto r = check_gradients(y, {{x, some_value}});
//   CHECK(r.max_error < 1e-7);  // r.report names the worst element
//
// For y (any shape) and each x with its value, builds the symbolic Jacobian d y / d x row by row
// through gradients() with one-hot grad_ys, and the numeric Jacobian by central differences
// (y(x + h e_i) - y(x - h e_i)) / 2h, both through a Session (so the graph's own kernels run).
// Any dtype works; float64 gives tight errors. Extra feeds (e.g. a boolean `training`) are passed
// through. Throws ValueError when an x is not a float tensor.
#include <set>
#include <string>
#include <vector>

#include "framework/array.hpp"
#include "framework/graph.hpp"
#include "framework/session.hpp"

namespace kiln {

struct GradientCheckResult {
  double max_error = 0;  // max |symbolic - numeric| over all Jacobian entries
  std::string report;    // the worst entry: which x, which elements, both values
};

struct GradientCheckOptions {
  double delta = 1e-6;  // finite-difference step (use ~1e-3 for float32)
  FeedDict extra_feeds;
};

GradientCheckResult check_gradients(const Tensor& y, const FeedDict& xs_and_values,
                                    const GradientCheckOptions& options = {});

/// Op types whose gradients some check_gradients call has exercised in this process (every op on a
/// path from an x to y): the registry coverage test compares it with the differentiable ops.
const std::set<std::string>& gradient_checked_op_types();

}  // namespace kiln
