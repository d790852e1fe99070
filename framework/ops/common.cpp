#include "framework/ops/common.hpp"

namespace kiln::detail {

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
