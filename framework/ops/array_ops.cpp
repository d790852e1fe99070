// Array ops: identity, stop_gradient, shape, broadcast_to / sum_to_shape, reshape, and the rest of
// the shape-manipulating family.
#include <numeric>

#include "framework/kernels/elementwise.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

std::vector<std::size_t> shape_from_tensor(const Array& a, const std::string& op) {
  std::vector<std::size_t> dims;
  const auto v = a.to_double();
  if (v.dimension() != 1) throw InvalidArgumentError("'" + op + "': the shape argument must be a vector");
  for (double d : v) {
    if (d < 0) throw InvalidArgumentError("'" + op + "': negative dimension in the target shape");
    dims.push_back(static_cast<std::size_t>(d));
  }
  return dims;
}

// The static shape described by a shape tensor: known when it is a constant, else unknown of its length.
Shape static_shape_of(const InferenceContext& c, int i) {
  if (c.dtypes[static_cast<std::size_t>(i)] != int32 && c.dtypes[static_cast<std::size_t>(i)] != int64)
    throw TypeError("the shape argument must be int32 or int64");
  const Shape& s = c.shapes[static_cast<std::size_t>(i)];
  if (s.rank() > 1) throw ValueError("the shape argument must be a vector, got " + s.to_string());
  if (const Array* v = c.constant_values[static_cast<std::size_t>(i)]) {
    const auto d = v->to_double();
    std::vector<std::int64_t> dims;
    for (double x : d) dims.push_back(static_cast<std::int64_t>(x));
    return Shape(dims);
  }
  if (s.rank() == 1 && s[0] >= 0) return Shape::unknown_of_rank(static_cast<int>(s[0]));
  return Shape::unknown();
}

Tensor shape_constant(const std::vector<std::int64_t>& dims) {
  xt::xarray<std::int32_t> s = xt::xarray<std::int32_t>::from_shape({dims.size()});
  for (std::size_t i = 0; i < dims.size(); ++i) s(i) = static_cast<std::int32_t>(dims[i]);
  return constant(Array(std::move(s)), "shape");
}

}  // namespace

Tensor identity(const Tensor& x, const std::string& name) { return detail::build1("Identity", {x}, {}, name); }
Tensor stop_gradient(const Tensor& x, const std::string& name) { return detail::build1("StopGradient", {x}, {}, name); }
Tensor shape(const Tensor& x, const std::string& name) { return detail::build1("Shape", {x}, {}, name); }
Tensor broadcast_to(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("BroadcastTo", {x, shape}, {}, name);
}
Tensor sum_to_shape(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("SumToShape", {x, shape}, {}, name);
}
Tensor reshape(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("Reshape", {x, shape}, {}, name);
}
Tensor reshape(const Tensor& x, const Shape& shape, const std::string& name) {
  if (!shape.has_rank()) throw ValueError("reshape of '" + x.name() + "': the target shape must have a known rank");
  return reshape(x, shape_constant(shape.dims()), name);
}

void register_array_ops(OpRegistry& r) {
  const auto same = [](const InferenceContext& c) {
    detail::expect_inputs(c, 1);
    return detail::one(c.dtypes[0], c.shapes[0]);
  };
  const auto pass = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) { c.set_output(0, c.input(0)); });
  r.add({.type = "Identity", .shape_fn = same, .kernels = pass, .gradient = [](const Operation&, const OptionalTensors& dy) {
           return OptionalTensors{dy[0]};
         }});
  r.add({.type = "StopGradient", .shape_fn = same, .kernels = pass, .not_differentiable = true});
  r.add({.type = "Shape",
         .shape_fn = [](const InferenceContext& c) {
           return detail::one(int32, c.shapes[0].has_rank() ? Shape{c.shapes[0].rank()} : Shape{-1});
         },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const auto& s = c.input_as<T>(0).shape();
           xt::xarray<std::int32_t> out = xt::xarray<std::int32_t>::from_shape({s.size()});
           for (std::size_t i = 0; i < s.size(); ++i) out(i) = static_cast<std::int32_t>(s[i]);
           c.set_output(0, std::move(out));
         }),
         .not_differentiable = true});

  // BroadcastTo(x, shape) and its adjoint SumToShape(g, shape): the gradient of one is the other.
  r.add({.type = "BroadcastTo",
         .shape_fn = [](const InferenceContext& c) {
           detail::expect_inputs(c, 2);
           const Shape target = static_shape_of(c, 1);
           broadcast_shapes(c.shapes[0], target);
           return detail::one(c.dtypes[0], target);
         },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const auto& x = c.input_as<T>(0);
           const auto target = shape_from_tensor(c.input(1), c.op_name());
           const std::vector<std::size_t> sx(x.shape().begin(), x.shape().end());
           if (kernels::broadcast_shape(sx, target) != target)
             throw InvalidArgumentError("'" + c.op_name() + "': cannot broadcast " + c.input(0).shape().to_string() +
                                        " to the requested shape");
           xt::xarray<T> y = xt::xarray<T>::from_shape(target);
           const T zero{};
           kernels::broadcast_binary(x.data(), sx, &zero, std::vector<std::size_t>{}, y.data(), target,
                                     [](auto a, auto) { return a; });
           c.set_output(0, std::move(y));
         }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           return OptionalTensors{detail::reduce_to_shape_of(*dy[0], op.inputs()[0]), std::nullopt};
         }});
  r.add({.type = "SumToShape",
         .shape_fn = [](const InferenceContext& c) {
           detail::expect_inputs(c, 2);
           return detail::one(c.dtypes[0], static_shape_of(c, 1));
         },
         // Each output element sums the input elements that broadcasting maps onto it.
         .kernels = kernels_for<KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c) {
           const auto& g = c.input_as<T>(0);
           const auto target = shape_from_tensor(c.input(1), c.op_name());
           const std::vector<std::size_t> sg(g.shape().begin(), g.shape().end());
           if (target == sg) return c.set_output(0, c.input(0));
           if (kernels::broadcast_shape(sg, target) != sg)
             throw InvalidArgumentError("'" + c.op_name() + "': cannot reduce " + c.input(0).shape().to_string() +
                                        " to the requested shape");
           xt::xarray<T> y = xt::zeros<T>(target);
           const auto st = kernels::broadcast_strides(target, sg);
           std::vector<std::size_t> idx(sg.size(), 0);
           std::size_t off = 0;
           for (std::size_t i = 0; i < g.size(); ++i) {
             y.data()[off] += g.data()[i];
             for (std::size_t d = sg.size(); d-- > 0;) {
               ++idx[d];
               off += st[d];
               if (idx[d] < sg[d]) break;
               off -= st[d] * sg[d];
               idx[d] = 0;
             }
           }
           c.set_output(0, std::move(y));
         }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           return OptionalTensors{broadcast_to(*dy[0], shape(op.inputs()[0])), std::nullopt};
         }});

  r.add({.type = "Reshape",
         .shape_fn = [](const InferenceContext& c) {
           detail::expect_inputs(c, 2);
           Shape target = static_shape_of(c, 1);
           if (!target.has_rank()) return detail::one(c.dtypes[0], target);
           std::vector<std::int64_t> d = target.dims();
           const auto unknown = std::count(d.begin(), d.end(), -1);
           if (unknown > 1) throw ValueError("at most one dimension of the target shape may be -1, got " + target.to_string());
           const std::int64_t known = std::accumulate(d.begin(), d.end(), std::int64_t{1},
                                                      [](std::int64_t a, std::int64_t b) { return b < 0 ? a : a * b; });
           const std::int64_t n = c.shapes[0].num_elements();
           if (n >= 0) {
             if (unknown == 0 && n != known)
               throw ValueError("Cannot reshape a tensor with " + std::to_string(n) + " elements to shape " +
                                target.to_string() + " (" + std::to_string(known) + " elements)");
             if (unknown == 1) {
               if (known == 0 || n % known != 0)
                 throw ValueError("Cannot reshape a tensor with " + std::to_string(n) + " elements to shape " + target.to_string());
               for (auto& x : d)
                 if (x < 0) x = n / known;
             }
           }
           return detail::one(c.dtypes[0], Shape(d));
         },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const auto& x = c.input_as<T>(0);
           const auto t = c.input(1).to_double();
           std::vector<std::size_t> dims;
           std::int64_t known = 1, infer = -1;
           for (std::size_t i = 0; i < t.size(); ++i) {
             const auto v = static_cast<std::int64_t>(t(i));
             if (v < 0) infer = static_cast<std::int64_t>(i);
             else known *= v;
             dims.push_back(v < 0 ? 0 : static_cast<std::size_t>(v));
           }
           const auto n = static_cast<std::int64_t>(x.size());
           if (infer >= 0 && known > 0 && n % known == 0) dims[static_cast<std::size_t>(infer)] = static_cast<std::size_t>(n / known);
           std::int64_t total = 1;
           for (auto d : dims) total *= static_cast<std::int64_t>(d);
           if (total != n)
             throw InvalidArgumentError("Input to reshape '" + c.op_name() + "' is a tensor with " + std::to_string(n) +
                                        " values, but the requested shape has " + std::to_string(total));
           xt::xarray<T> y = xt::xarray<T>::from_shape(dims);
           std::copy(x.data(), x.data() + x.size(), y.data());
           c.set_output(0, std::move(y));
         }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           const Tensor x = op.inputs()[0];
           if (x.shape().is_fully_defined()) return OptionalTensors{reshape(*dy[0], x.shape()), std::nullopt};
           return OptionalTensors{reshape(*dy[0], shape(x)), std::nullopt};
         }});
}

}  // namespace kiln
