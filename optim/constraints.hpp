#pragma once
// kiln::constraints: projections applied to a variable after each optimizer update (Keras's
// definitions, tf.keras.constraints). A constraint is any callable Tensor(Tensor) (kiln::TensorFn)
// returning a tensor of the variable's shape and dtype; it is used only by
// train::Optimizer::apply_gradients, which runs `assign(v, constraint(v))` after v's update.
//
//   Variable w = get_variable("w", {784, 10}, {.constraint = constraints::max_norm(3.0)});
//
// `axis` lists the axes along which norms are computed (Keras's default 0: for a dense kernel
// [in, out] each column, the incoming weights of one unit; for a conv kernel [kh, kw, in, out] use
// {0, 1, 2}). With n = sqrt(sum over axis of w^2) (kept as size-1 dimensions) and eps = 1e-7
// (Keras's backend epsilon):
//   max_norm(m)              w * clip(n, 0, m) / (eps + n)
//   non_neg()                w * (w >= 0)
//   unit_norm()              w / (eps + n)
//   min_max_norm(lo, hi, r)  w * (r * clip(n, lo, hi) + (1 - r) * n) / (eps + n)
// ValueError for an axis out of range (raised when the constraint is applied, naming the tensor).
#include <vector>

#include "framework/graph.hpp"

namespace kiln::constraints {

/// Keras's backend epsilon, used in the denominators above.
inline constexpr double kEpsilon = 1e-7;

TensorFn max_norm(double max_value = 2.0, std::vector<int> axis = {0});
TensorFn non_neg();
TensorFn unit_norm(std::vector<int> axis = {0});
TensorFn min_max_norm(double min_value = 0.0, double max_value = 1.0, double rate = 1.0, std::vector<int> axis = {0});

}  // namespace kiln::constraints
