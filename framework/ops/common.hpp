#pragma once
// Helpers shared by the op family files (internal).
#include <string>
#include <vector>

#include "framework/op_registry.hpp"
#include "framework/ops.hpp"

namespace kiln::detail {

/// Output spec list of one tensor.
inline std::vector<TensorSpec> one(DType t, Shape s) { return {TensorSpec{t, std::move(s)}}; }

/// Requires `n` inputs.
void expect_inputs(const InferenceContext& c, int n);
/// Requires all inputs to share the first input's dtype (TypeError otherwise).
void expect_same_dtype(const InferenceContext& c);
/// Resolves a possibly negative axis against rank; ValueError when out of range.
int resolve_axis(int axis, int rank, const char* what = "axis");

/// Reduces a broadcast gradient back to the static/dynamic shape of `x` (identity when equal).
Tensor reduce_to_shape_of(const Tensor& grad, const Tensor& x);

/// g reshaped to the shape of x: a constant target when x's shape is fully defined, else shape(x).
Tensor reshape_like(const Tensor& g, const Tensor& x);

/// Input i of an op (gradient functions).
inline Tensor in(const Operation& op, int i = 0) { return op.inputs()[static_cast<std::size_t>(i)]; }

/// AddN's shape function (and _CondGradAddN's): the inputs' dtype (TypeError when they differ) and
/// their merged shape (ValueError when two are incompatible).
std::vector<TensorSpec> add_n_shape(const InferenceContext& c);
/// AddN's run-time error for two values it adds of different shapes (InvalidArgumentError naming
/// the op and both shapes).
[[noreturn]] void throw_add_n_shapes(const KernelContext& c, const Array& a, const Array& b);

/// "Type 'name': ", the prefix of a kernel's run-time errors.
std::string where_in(const KernelContext& c);

/// An OpDef by assignment (g++ 12 flags designated initializers that skip members), and its flags.
OpDef make_def(const char* type, ShapeFn shape_fn, std::array<KernelFactory, kNumDTypes> kernels, GradFn gradient,
               int dispatch_input = 0);
OpDef forwards_input(OpDef d);
OpDef not_differentiable(OpDef d);
OpDef accepting_missing_grads(OpDef d);
OpDef with_codec(OpDef d, AttrCodec codec);

/// An int32 vector constant (shapes and sizes that fit in int32).
Tensor int32_vector(const std::vector<std::int64_t>& values, const std::string& name = "shape");
/// t's shape as an int32 vector: a constant when fully defined, else a Shape op.
Tensor shape_of(const Tensor& t);

/// Builds the op and returns its only output.
inline Tensor build1(const std::string& type, const std::vector<Tensor>& inputs, std::any attrs,
                     const std::string& name) {
  return build_op(type, inputs, std::move(attrs), name).output(0);
}

}  // namespace kiln::detail
