#pragma once
// The op-building functions (API.md "framework"). Each builds one or a few ops in the default
// graph, infers output dtypes and shapes at once, and throws ValueError / TypeError naming the op,
// its type and its input shapes when the inputs do not fit. `name` empty means the op's default.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln {

class Array;

// ---- constants and placeholders (framework/ops/constant_ops.cpp)
/// A value fed at run time. Feeding a mismatched dtype or shape: InvalidArgumentError.
Tensor placeholder(DType dtype, Shape shape = Shape::unknown(), const std::string& name = "");
/// A placeholder that yields `input` when not fed.
Tensor placeholder_with_default(const Tensor& input, Shape shape, const std::string& name = "");
Tensor constant(const Array& value, const std::string& name = "");
/// A scalar constant of the given dtype.
Tensor scalar(double value, DType dtype = float32, const std::string& name = "");
/// A scalar constant with the dtype of `like`.
Tensor scalar_like(double value, const Tensor& like);
Tensor fill(const Shape& shape, double value, DType dtype = float32, const std::string& name = "");
Tensor zeros(const Shape& shape, DType dtype = float32, const std::string& name = "");
Tensor ones(const Shape& shape, DType dtype = float32, const std::string& name = "");
/// Same dynamic shape and dtype as x.
Tensor zeros_like(const Tensor& x, const std::string& name = "");
Tensor ones_like(const Tensor& x, const std::string& name = "");

// ---- random ops (framework/ops/random_ops.cpp): new values each run; seeded by the op seed and the
// graph seed (TF1: op seed unset + graph seed set -> derived from the op's id; both unset -> random).
Tensor random_normal(const Shape& shape, double mean = 0.0, double stddev = 1.0, DType dtype = float32,
                     std::optional<std::int64_t> seed = {}, const std::string& name = "");
/// Normal values, redrawn beyond two standard deviations.
Tensor truncated_normal(const Shape& shape, double mean = 0.0, double stddev = 1.0,
                        DType dtype = float32, std::optional<std::int64_t> seed = {},
                        const std::string& name = "");
Tensor random_uniform(const Shape& shape, double minval = 0.0, double maxval = 1.0,
                      DType dtype = float32, std::optional<std::int64_t> seed = {},
                      const std::string& name = "");

// ---- elementwise math with NumPy broadcasting (framework/ops/math_ops.cpp)
Tensor add(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor subtract(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor multiply(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor divide(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor maximum(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor minimum(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor pow(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor squared_difference(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor negative(const Tensor& x, const std::string& name = "");
Tensor square(const Tensor& x, const std::string& name = "");
Tensor sqrt(const Tensor& x, const std::string& name = "");
Tensor rsqrt(const Tensor& x, const std::string& name = "");
Tensor exp(const Tensor& x, const std::string& name = "");
Tensor log(const Tensor& x, const std::string& name = "");
Tensor abs(const Tensor& x, const std::string& name = "");
Tensor sign(const Tensor& x, const std::string& name = "");
Tensor reciprocal(const Tensor& x, const std::string& name = "");
/// Sum of same-shape tensors (one op).
Tensor add_n(const std::vector<Tensor>& xs, const std::string& name = "");
struct MatMulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
};
/// [m,k] x [k,n] -> [m,n] (rank 2, float types, through CBLAS).
Tensor matmul(const Tensor& a, const Tensor& b, MatMulOptions options = {}, const std::string& name = "");
/// Reductions over `axes` (empty: all; negative count from the end).
Tensor reduce_sum(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false, const std::string& name = "");
Tensor reduce_mean(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false, const std::string& name = "");
Tensor reduce_max(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false, const std::string& name = "");
Tensor reduce_min(const Tensor& x, std::vector<int> axes = {}, bool keepdims = false, const std::string& name = "");
Tensor argmax(const Tensor& x, int axis, DType output_type = int64, const std::string& name = "");
Tensor cast(const Tensor& x, DType dtype, const std::string& name = "");
Tensor equal(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor not_equal(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor less(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor less_equal(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor greater(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor greater_equal(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor logical_and(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor logical_or(const Tensor& a, const Tensor& b, const std::string& name = "");
Tensor logical_not(const Tensor& x, const std::string& name = "");
Tensor clip_by_value(const Tensor& x, const Tensor& lo, const Tensor& hi, const std::string& name = "");
Tensor clip_by_value(const Tensor& x, double lo, double hi, const std::string& name = "");
/// Elementwise choice (cond boolean, broadcast with x and y).
Tensor where(const Tensor& cond, const Tensor& x, const Tensor& y, const std::string& name = "");

// ---- array ops (framework/ops/array_ops.cpp)
/// Target shape with at most one -1 (inferred).
Tensor reshape(const Tensor& x, const Shape& shape, const std::string& name = "");
/// Target shape given as a run-time int32/int64 vector tensor.
Tensor reshape(const Tensor& x, const Tensor& shape, const std::string& name = "");
/// Empty perm reverses the axes.
Tensor transpose(const Tensor& x, std::vector<int> perm = {}, const std::string& name = "");
Tensor expand_dims(const Tensor& x, int axis, const std::string& name = "");
/// Empty axes removes every size-1 dimension.
Tensor squeeze(const Tensor& x, std::vector<int> axes = {}, const std::string& name = "");
Tensor concat(const std::vector<Tensor>& xs, int axis, const std::string& name = "");
Tensor stack(const std::vector<Tensor>& xs, int axis = 0, const std::string& name = "");
/// size -1 means "to the end".
Tensor slice(const Tensor& x, std::vector<std::int64_t> begin, std::vector<std::int64_t> size,
             const std::string& name = "");
/// Run-time shape, size and rank as int32 tensors.
Tensor shape(const Tensor& x, const std::string& name = "");
Tensor size(const Tensor& x, const std::string& name = "");
Tensor rank(const Tensor& x, const std::string& name = "");
Tensor identity(const Tensor& x, const std::string& name = "");
/// Identity whose gradient is blocked.
Tensor stop_gradient(const Tensor& x, const std::string& name = "");
/// x broadcast to a run-time shape (int32 vector).
Tensor broadcast_to(const Tensor& x, const Tensor& shape, const std::string& name = "");
/// Sums x over broadcast dimensions down to a run-time shape (the adjoint of broadcast_to).
Tensor sum_to_shape(const Tensor& x, const Tensor& shape, const std::string& name = "");
Tensor tile(const Tensor& x, std::vector<std::int64_t> multiples, const std::string& name = "");
/// [..] int indices -> [.., depth] with on/off values.
Tensor one_hot(const Tensor& indices, std::int64_t depth, DType dtype = float32, const std::string& name = "");

// ---- state (framework/ops/state_ops.cpp). Assign ops output the new value.
Tensor assign(const Variable& v, const Tensor& value, const std::string& name = "");
Tensor assign_add(const Variable& v, const Tensor& delta, const std::string& name = "");
Tensor assign_sub(const Variable& v, const Tensor& delta, const std::string& name = "");

// ---- control flow (framework/ops/control_flow_ops.cpp)
/// An op with control inputs on every item.
Operation group(const std::vector<GraphElement>& items, const std::string& name = "");
Operation no_op(const std::string& name = "");
/// TF's Switch: outputs (data if !pred, data if pred); the other output is dead.
std::pair<Tensor, Tensor> switch_(const Tensor& data, const Tensor& pred, const std::string& name = "");
/// TF's Merge: the value of whichever input is alive, and its index.
std::pair<Tensor, Tensor> merge(const std::vector<Tensor>& inputs, const std::string& name = "");
/// Only the taken branch runs (side effects included). Both callables return the same number of
/// tensors with matching dtypes. pred: a scalar boolean tensor (TypeError otherwise).
std::vector<Tensor> cond(const Tensor& pred, const std::function<std::vector<Tensor>()>& true_fn,
                         const std::function<std::vector<Tensor>()>& false_fn, const std::string& name = "");
Tensor cond(const Tensor& pred, const std::function<Tensor()>& true_fn,
            const std::function<Tensor()>& false_fn, const std::string& name = "");
/// Ops built inside a branch function may also be returned as an Operation.
Operation cond(const Tensor& pred, const std::function<Operation()>& true_fn,
               const std::function<Operation()>& false_fn, const std::string& name = "");

}  // namespace kiln
