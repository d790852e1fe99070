#include "framework/ops/common.hpp"

#include <algorithm>

namespace kiln::detail {

std::string where_in(const KernelContext& c) { return c.node().def->type + " '" + c.op_name() + "': "; }

OpDef make_def(const char* type, ShapeFn shape_fn, std::array<KernelFactory, kNumDTypes> kernels, GradFn gradient,
               int dispatch_input) {
  OpDef d;
  d.type = type;
  d.shape_fn = std::move(shape_fn);
  d.kernels = std::move(kernels);
  d.gradient = std::move(gradient);
  d.dispatch_input = dispatch_input;
  return d;
}
OpDef forwards_input(OpDef d) {
  d.forwards_input = true;
  return d;
}
OpDef not_differentiable(OpDef d) {
  d.not_differentiable = true;
  return d;
}
OpDef accepting_missing_grads(OpDef d) {
  d.accepts_missing_output_grads = true;
  return d;
}
OpDef with_codec(OpDef d, AttrCodec codec) {
  d.attr_codec = std::move(codec);
  return d;
}

Tensor int32_vector(const std::vector<std::int64_t>& values, const std::string& name) {
  auto v = xt::xarray<std::int32_t>::from_shape({values.size()});
  std::transform(values.begin(), values.end(), v.begin(), [](std::int64_t e) { return static_cast<std::int32_t>(e); });
  return constant(Array(std::move(v)), name);
}

Tensor shape_of(const Tensor& t) {
  return t.shape().is_fully_defined() ? int32_vector(t.shape().dims(), "Shape") : shape(t);
}

void expect_inputs(const InferenceContext& c, int n) {
  if (c.num_inputs() != n)
    throw ValueError("expected " + std::to_string(n) + " inputs, got " + std::to_string(c.num_inputs()));
}

void expect_same_dtype(const InferenceContext& c) {
  for (int i = 1; i < c.num_inputs(); ++i)
    if (c.dtypes[static_cast<std::size_t>(i)] != c.dtypes[0])
      throw TypeError("Input " + std::to_string(i) + " has type " + dtype_name(c.dtypes[static_cast<std::size_t>(i)]) +
                      " that does not match type " + dtype_name(c.dtypes[0]) + " of input 0");
}

std::vector<TensorSpec> add_n_shape(const InferenceContext& c) {
  expect_same_dtype(c);
  Shape s = c.shapes[0];
  for (const Shape& o : c.shapes) {
    if (!s.is_compatible_with(o)) throw ValueError("AddN inputs must have the same shape: " + s.to_string() + " vs " + o.to_string());
    s = s.merge_with(o);
  }
  return one(c.dtypes[0], s);
}

void throw_add_n_shapes(const KernelContext& c, const Array& a, const Array& b) {
  throw InvalidArgumentError("AddN '" + c.op_name() + "': inputs have shapes " + a.shape().to_string() + " and " +
                             b.shape().to_string());
}

int resolve_axis(int axis, int rank, const char* what) {
  const int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    throw ValueError(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return a;
}

Tensor reshape_like(const Tensor& g, const Tensor& x) {
  return x.shape().is_fully_defined() ? reshape(g, x.shape()) : reshape(g, shape(x));
}

Tensor reduce_to_shape_of(const Tensor& grad, const Tensor& x) {
  if (grad.shape().is_fully_defined() && grad.shape() == x.shape()) return grad;
  if (x.shape().is_fully_defined()) {
    std::vector<std::int32_t> dims(x.shape().dims().begin(), x.shape().dims().end());
    xt::xarray<std::int32_t> s = xt::xarray<std::int32_t>::from_shape({dims.size()});
    std::copy(dims.begin(), dims.end(), s.begin());
    return sum_to_shape(grad, constant(Array(std::move(s))));
  }
  return sum_to_shape(grad, shape(x));
}

}  // namespace kiln::detail
