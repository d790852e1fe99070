#include "optim/constraints.hpp"

#include "framework/errors.hpp"
#include "framework/ops.hpp"

namespace kiln::constraints {

namespace {
Tensor norms(const Tensor& w, const std::vector<int>& axis) {
  return sqrt(reduce_sum(square(w), axis, /*keepdims=*/true));
}
}  // namespace

TensorFn max_norm(double max_value, std::vector<int> axis) {
  return [max_value, axis](const Tensor& w) {
    name_scope ns("max_norm");
    const Tensor n = norms(w, axis);
    const Tensor desired = clip_by_value(n, 0.0, max_value);
    return w * (desired / (kEpsilon + n));
  };
}

TensorFn non_neg() {
  return [](const Tensor& w) {
    name_scope ns("non_neg");
    return w * cast(greater_equal(w, scalar_like(0.0, w)), w.dtype());
  };
}

TensorFn unit_norm(std::vector<int> axis) {
  return [axis](const Tensor& w) {
    name_scope ns("unit_norm");
    return w / (kEpsilon + norms(w, axis));
  };
}

TensorFn min_max_norm(double min_value, double max_value, double rate, std::vector<int> axis) {
  if (min_value > max_value) throw ValueError("min_max_norm: min_value > max_value");
  return [=](const Tensor& w) {
    name_scope ns("min_max_norm");
    const Tensor n = norms(w, axis);
    const Tensor desired = rate * clip_by_value(n, min_value, max_value) + (1.0 - rate) * n;
    return w * (desired / (kEpsilon + n));
  };
}

}  // namespace kiln::constraints
