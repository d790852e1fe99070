// Convolution and pooling ops (TF's Conv2D family and MaxPool / AvgPool family): attributes, shape
// functions, kernels over framework/kernels (conv2d.hpp, pooling.hpp) and gradients, side by side,
// registered in register_conv_ops.
//
// Gradients, as TF's nn_grad.py: Conv2D -> (Conv2DBackpropInput, Conv2DBackpropFilter). The two
// backprop ops are bilinear: with A_f the linear map x -> conv2d(x, f),
//   BackpropInput(f, dy)  = A_f^T dy,  so <g, A_f^T dy> = <conv2d(g, f), dy>:
//     d/d dy = conv2d(g, f), d/d f = BackpropFilter(g, dy);
//   BackpropFilter(x, dy) = d <conv2d(x, f), dy> / df, so <g, BackpropFilter(x, dy)> =
//     <conv2d(x, g), dy>: d/d dy = conv2d(x, g), d/d x = BackpropInput(g, dy).
// MaxPool has a second output, argmax (int64, y's shape: the flat index into x of the element
// each output was taken from, as TF's MaxPoolWithArgmax), so that its gradient
// MaxPoolGrad(x, y, dy, argmax) is a scatter of dy to the chosen elements instead of a second
// search (TF's MaxPoolGrad takes the first three inputs and searches again). That is a fixed
// linear map S^T of dy for given x, so its gradient in dy is S gg = MaxPoolGradGrad(x, y, gg,
// argmax) (a gather of gg at the chosen elements), and zero in x and y (the choice is piecewise
// constant). MaxPoolGradGrad's gradient is MaxPoolGrad again. AvgPool -> AvgPoolGrad (the adjoint
// spreads dy / count over the window), whose gradient is AvgPool.
#include <algorithm>
#include <optional>

#include "framework/kernels/conv2d.hpp"
#include "framework/kernels/pooling.hpp"
#include "framework/nn_conv.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/conv_ops.hpp"

namespace kiln {

namespace {

using i64 = std::int64_t;
using Dims = std::vector<i64>;

// ---------------------------------------------------------------- attributes

using detail::Conv2DAttrs;

struct PoolAttrs {
  Dims ksize;
  Dims strides;
  std::string padding;
  std::string data_format;
  Shape output_hint = Shape::unknown();  // AvgPoolGrad, as Conv2DAttrs::output_hint
};

// ---------------------------------------------------------------- attribute checks

std::string list_text(const Dims& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// The axes of one data format.
struct Layout {
  bool channels_first;
  std::size_t h, w, c;
};
Layout layout_of(const std::string& data_format) {
  if (data_format == "NHWC") return {false, 1, 2, 3};
  if (data_format == "NCHW") return {true, 2, 3, 1};
  throw ValueError("data_format must be \"NHWC\" or \"NCHW\", got \"" + data_format + "\"");
}

kernels::Padding padding_of(const std::string& s) {
  if (s == "SAME") return kernels::Padding::same;
  if (s == "VALID") return kernels::Padding::valid;
  throw ValueError("padding must be \"SAME\" or \"VALID\", got \"" + s + "\"");
}

// The (height, width) entries of a 4-entry strides / ksize / dilations list.
struct HW {
  i64 h, w;
};
HW spatial_of(const Dims& v, const char* what, const Layout& l) {
  if (v.size() != 4)
    throw ValueError(std::string(what) + " must have 4 entries, got " + list_text(v));
  for (const i64 e : v)
    if (e < 1) throw ValueError(std::string(what) + " entries must be >= 1, got " + list_text(v));
  if (v[0] != 1 || v[l.c] != 1)
    throw ValueError(std::string(what) + " in the batch and channel dimensions must be 1, got " +
                     list_text(v));
  return {v[l.h], v[l.w]};
}

// 1 entry: every spatial dimension; 2: (height, width); else as given (TF2's nn.conv2d).
Dims four(const Dims& v, const std::string& data_format) {
  const bool cf = data_format == "NCHW";
  if (v.size() == 1) return cf ? Dims{1, 1, v[0], v[0]} : Dims{1, v[0], v[0], 1};
  if (v.size() == 2) return cf ? Dims{1, 1, v[0], v[1]} : Dims{1, v[0], v[1], 1};
  return v;
}

// ---------------------------------------------------------------- shapes

// The 4 dimensions of a rank-4 (or unknown-rank) shape; ValueError for another rank.
Dims dims4(const Shape& s, const char* what) {
  if (!s.has_rank()) return Dims(4, -1);
  if (s.rank() != 4)
    throw ValueError(std::string(what) + " must be 4-dimensional, got shape " + s.to_string());
  return s.dims();
}

Dims make4(const Layout& l, i64 n, i64 h, i64 w, i64 c) {
  Dims d(4);
  d[0] = n;
  d[l.h] = h;
  d[l.w] = w;
  d[l.c] = c;
  return d;
}

// One output dimension under TF's rules (-1 when the input or the window is unknown).
i64 out_dim(i64 in, i64 window, i64 stride, i64 dilation, kernels::Padding padding) {
  if (in < 0 || window < 0) return -1;
  if (window == 0) throw ValueError("window sizes must be >= 1, got 0");
  const i64 effective = (window - 1) * dilation + 1;
  if (padding == kernels::Padding::valid && effective > in)
    throw ValueError("Negative dimension size caused by subtracting " + std::to_string(effective) +
                     " from " + std::to_string(in));
  return kernels::window_dim(in, window, stride, dilation, padding).out;
}

// Conv2D's output dims from input and filter dims (-1 entries allowed), validating the attributes.
Dims conv_output(const Dims& x, const Dims& f, const Conv2DAttrs& a) {
  const Layout l = layout_of(a.data_format);
  const kernels::Padding pad = padding_of(a.padding);
  const HW s = spatial_of(a.strides, "strides", l);
  const HW d = spatial_of(a.dilations, "dilations", l);
  const i64 in_c = x[l.c];
  if (in_c >= 0 && f[2] >= 0 && in_c != f[2])
    throw ValueError("Depth of input (" + std::to_string(in_c) +
                     ") does not match the in_channels of the filter (" + std::to_string(f[2]) +
                     ")");
  return make4(l, x[0], out_dim(x[l.h], f[0], s.h, d.h, pad), out_dim(x[l.w], f[1], s.w, d.w, pad),
               f[3]);
}

// Pooling's output dims from input dims, validating the attributes.
Dims pool_output(const Dims& x, const PoolAttrs& a) {
  const Layout l = layout_of(a.data_format);
  const kernels::Padding pad = padding_of(a.padding);
  const HW k = spatial_of(a.ksize, "ksize", l);
  const HW s = spatial_of(a.strides, "strides", l);
  return make4(l, x[0], out_dim(x[l.h], k.h, s.h, 1, pad), out_dim(x[l.w], k.w, s.w, 1, pad),
               x[l.c]);
}

// Known entries of a and b must agree; the result keeps the known ones.
Dims merge(const Dims& a, const Dims& b, const char* what_a, const char* what_b) {
  const Shape sa(a), sb(b);
  if (!sa.is_compatible_with(sb))
    throw ValueError(std::string(what_a) + " of shape " + sa.to_string() + " does not match " +
                     what_b + " " + sb.to_string());
  return sa.merge_with(sb).dims();
}

// A sizes input (input_sizes, filter_sizes, orig_input_shape): an int32/int64 vector of 4
// entries. At build time its value is known when it is a constant; else the attribute's hint.
Dims sizes_at_build(const InferenceContext& c, int i, const Shape& hint, const char* what) {
  const auto k = static_cast<std::size_t>(i);
  if (!is_integer(c.dtypes[k]))
    throw TypeError(std::string(what) + " must be int32 or int64, got " + dtype_name(c.dtypes[k]));
  const Shape& s = c.shapes[k];
  if (s.has_rank() && (s.rank() != 1 || (s[0] >= 0 && s[0] != 4)))
    throw ValueError(std::string(what) + " must be a vector of 4 sizes, got shape " +
                     s.to_string());
  Dims d = dims4(hint, what);
  if (const Array* v = c.constant_values[k]) {
    const auto vd = v->to_double();
    Dims got(vd.begin(), vd.end());
    for (const i64 e : got)
      if (e < 0) throw ValueError(std::string(what) + " must be >= 0, got " + list_text(got));
    d = merge(got, d, what, "the expected shape");
  }
  return d;
}

template <class T>
Dims dims_of(const xt::xarray<T>& a) {
  return Dims(a.shape().begin(), a.shape().end());
}

std::vector<std::size_t> extents(const Dims& d) { return {d.begin(), d.end()}; }

Dims sizes_at_run_time(const Array& a, const char* what) {
  Dims d;
  if (a.dtype() == int32)
    for (const auto v : a.as<std::int32_t>()) d.push_back(v);
  else
    for (const auto v : a.as<std::int64_t>()) d.push_back(v);
  if (a.shape().rank() != 1 || d.size() != 4)
    throw ValueError(std::string(what) + " must be a vector of 4 sizes, got shape " +
                     a.shape().to_string());
  for (const i64 e : d)
    if (e < 0) throw ValueError(std::string(what) + " must be >= 0, got " + list_text(d));
  return d;
}

// ---------------------------------------------------------------- kernels

// "Type 'name': ", the prefix of a kernel's run-time errors.
std::string where_in(const KernelContext& c) {
  return c.node().def->type + " '" + c.op_name() + "': ";
}

// Runs the shape checks on the actual shapes; their errors become InvalidArgumentError.
template <class F>
auto checked(const KernelContext& c, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw InvalidArgumentError(where_in(c) + e.what());
  }
}

void expect_dims(const Dims& got, const Dims& want, const char* what) {
  if (got != want)
    throw ValueError(std::string(what) + " of shape " + list_text(got) +
                     " does not match the expected shape " + list_text(want));
}

kernels::Conv2DGeometry conv_geometry(const Dims& x, const Dims& f, const Conv2DAttrs& a) {
  const Layout l = layout_of(a.data_format);
  const HW s = spatial_of(a.strides, "strides", l);
  const HW d = spatial_of(a.dilations, "dilations", l);
  kernels::Conv2DGeometry g;
  g.batch = x[0];
  g.in_h = x[l.h];
  g.in_w = x[l.w];
  g.in_c = x[l.c];
  g.out_c = f[3];
  g.kernel_h = f[0];
  g.kernel_w = f[1];
  g.stride_h = s.h;
  g.stride_w = s.w;
  g.dilation_h = d.h;
  g.dilation_w = d.w;
  g.channels_first = l.channels_first;
  return kernels::make_conv2d_geometry(g, padding_of(a.padding));
}

kernels::Pool2DGeometry pool_geometry(const Dims& x, const PoolAttrs& a) {
  const Layout l = layout_of(a.data_format);
  const HW k = spatial_of(a.ksize, "ksize", l);
  const HW s = spatial_of(a.strides, "strides", l);
  kernels::Pool2DGeometry g;
  g.batch = x[0];
  g.in_h = x[l.h];
  g.in_w = x[l.w];
  g.channels = x[l.c];
  g.window_h = k.h;
  g.window_w = k.w;
  g.stride_h = s.h;
  g.stride_w = s.w;
  g.channels_first = l.channels_first;
  return kernels::make_pool2d_geometry(g, padding_of(a.padding));
}

template <class T>
void conv2d_kernel(KernelContext& c) {
  const auto& x = c.input_as<T>(0);
  const auto& f = c.input_as<T>(1);
  const auto& a = c.attrs<Conv2DAttrs>();
  Dims out;
  const auto g = checked(c, [&] {
    out = conv_output(dims4(Shape(dims_of(x)), "input"), dims4(Shape(dims_of(f)), "filter"), a);
    return conv_geometry(dims_of(x), dims_of(f), a);
  });
  auto y = xt::xarray<T>::from_shape(extents(out));
  kernels::conv2d_forward(g, x.data(), f.data(), y.data());
  c.set_output(0, std::move(y));
}

// Inputs (input_sizes, filter, out_backprop).
template <class T>
void conv2d_backprop_input_kernel(KernelContext& c) {
  const auto& f = c.input_as<T>(1);
  const auto& dy = c.input_as<T>(2);
  const auto& a = c.attrs<Conv2DAttrs>();
  Dims sizes;
  const auto g = checked(c, [&] {
    sizes = sizes_at_run_time(c.input(0), "input_sizes");
    expect_dims(dims_of(dy), conv_output(sizes, dims4(Shape(dims_of(f)), "filter"), a),
                "out_backprop");
    return conv_geometry(sizes, dims_of(f), a);
  });
  auto dx = xt::xarray<T>::from_shape(extents(sizes));
  kernels::conv2d_backprop_input(g, f.data(), dy.data(), dx.data());
  c.set_output(0, std::move(dx));
}

// Inputs (input, filter_sizes, out_backprop).
template <class T>
void conv2d_backprop_filter_kernel(KernelContext& c) {
  const auto& x = c.input_as<T>(0);
  const auto& dy = c.input_as<T>(2);
  const auto& a = c.attrs<Conv2DAttrs>();
  Dims sizes;
  const auto g = checked(c, [&] {
    sizes = sizes_at_run_time(c.input(1), "filter_sizes");
    expect_dims(dims_of(dy), conv_output(dims4(Shape(dims_of(x)), "input"), sizes, a),
                "out_backprop");
    return conv_geometry(dims_of(x), sizes, a);
  });
  auto df = xt::xarray<T>::from_shape(extents(sizes));
  kernels::conv2d_backprop_filter(g, x.data(), dy.data(), df.data());
  c.set_output(0, std::move(df));
}

template <class T, bool kMax>
void pool_kernel(KernelContext& c) {
  const auto& x = c.input_as<T>(0);
  const auto& a = c.attrs<PoolAttrs>();
  Dims out;
  const auto g = checked(c, [&] {
    out = pool_output(dims4(Shape(dims_of(x)), "input"), a);
    return pool_geometry(dims_of(x), a);
  });
  auto y = xt::xarray<T>::from_shape(extents(out));
  if constexpr (kMax) {
    auto argmax = xt::xarray<i64>::from_shape(extents(out));
    kernels::max_pool_forward(g, x.data(), y.data(), argmax.data());
    c.set_output(1, std::move(argmax));
  } else {
    kernels::avg_pool_forward(g, x.data(), y.data());
  }
  c.set_output(0, std::move(y));
}

// Inputs (orig_input, orig_output, grad, argmax), checked against each other; the geometry.
template <class T>
kernels::Pool2DGeometry checked_max_pool_grad_geometry(const KernelContext& c, bool grad_is_pooled) {
  const auto& x = c.input_as<T>(0);
  const auto& a = c.attrs<PoolAttrs>();
  return checked(c, [&] {
    const Dims out = pool_output(dims4(Shape(dims_of(x)), "orig_input"), a);
    expect_dims(dims_of(c.input_as<T>(1)), out, "orig_output");
    expect_dims(dims_of(c.input_as<T>(2)), grad_is_pooled ? out : dims_of(x), "grad");
    expect_dims(dims_of(c.input_as<i64>(3)), out, "argmax");
    return pool_geometry(dims_of(x), a);
  });
}

// grad [pooled] -> [input]: scattered to the elements argmax names.
template <class T>
void max_pool_grad_kernel(KernelContext& c) {
  const auto g = checked_max_pool_grad_geometry<T>(c, true);
  auto dx = xt::xarray<T>::from_shape(c.input_as<T>(0).shape());
  checked(c, [&] {
    kernels::max_pool_backward(g, c.input_as<i64>(3).data(), c.input_as<T>(2).data(), dx.data());
  });
  c.set_output(0, std::move(dx));
}

// grad [input] -> [pooled]: out[o] = grad at the element argmax[o] names (0 for an empty window).
template <class T>
void max_pool_grad_grad_kernel(KernelContext& c) {
  const auto g = checked_max_pool_grad_geometry<T>(c, false);
  auto out = xt::xarray<T>::from_shape(c.input_as<T>(1).shape());
  checked(c, [&] {
    kernels::max_pool_grad_grad(g, c.input_as<i64>(3).data(), c.input_as<T>(2).data(), out.data());
  });
  c.set_output(0, std::move(out));
}

// Inputs (orig_input_shape, grad).
template <class T>
void avg_pool_grad_kernel(KernelContext& c) {
  const auto& dy = c.input_as<T>(1);
  const auto& a = c.attrs<PoolAttrs>();
  Dims sizes;
  const auto g = checked(c, [&] {
    sizes = sizes_at_run_time(c.input(0), "orig_input_shape");
    expect_dims(dims_of(dy), pool_output(sizes, a), "grad");
    return pool_geometry(sizes, a);
  });
  auto dx = xt::xarray<T>::from_shape(extents(sizes));
  kernels::avg_pool_backward(g, dy.data(), dx.data());
  c.set_output(0, std::move(dx));
}

// ---------------------------------------------------------------- shape functions

void expect_float_pair(const InferenceContext& c, std::size_t i, std::size_t j, const char* a,
                       const char* b) {
  if (c.dtypes[i] != c.dtypes[j])
    throw TypeError(std::string(b) + " of type " + dtype_name(c.dtypes[j]) +
                    " does not match type " + dtype_name(c.dtypes[i]) + " of " + a);
}

std::vector<TensorSpec> conv2d_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  expect_float_pair(c, 0, 1, "input", "filter");
  const Dims y = conv_output(dims4(c.shapes[0], "input"), dims4(c.shapes[1], "filter"),
                             c.attrs<Conv2DAttrs>());
  return detail::one(c.dtypes[0], Shape(y));
}

// (input_sizes, filter, out_backprop) -> input.
std::vector<TensorSpec> conv2d_backprop_input_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 3);
  expect_float_pair(c, 1, 2, "filter", "out_backprop");
  const auto& a = c.attrs<Conv2DAttrs>();
  const Layout l = layout_of(a.data_format);
  Dims x = sizes_at_build(c, 0, a.output_hint, "input_sizes");
  const Dims f = dims4(c.shapes[1], "filter");
  const Dims dy = dims4(c.shapes[2], "out_backprop");
  merge(dy, conv_output(x, f, a), "out_backprop", "the convolution's output shape");
  if (x[0] < 0) x[0] = dy[0];
  if (x[l.c] < 0) x[l.c] = f[2];
  return detail::one(c.dtypes[1], Shape(x));
}

// (input, filter_sizes, out_backprop) -> filter.
std::vector<TensorSpec> conv2d_backprop_filter_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 3);
  expect_float_pair(c, 0, 2, "input", "out_backprop");
  const auto& a = c.attrs<Conv2DAttrs>();
  const Layout l = layout_of(a.data_format);
  const Dims x = dims4(c.shapes[0], "input");
  Dims f = sizes_at_build(c, 1, a.output_hint, "filter_sizes");
  const Dims dy = dims4(c.shapes[2], "out_backprop");
  merge(dy, conv_output(x, f, a), "out_backprop", "the convolution's output shape");
  if (f[2] < 0) f[2] = x[l.c];
  if (f[3] < 0) f[3] = dy[l.c];
  return detail::one(c.dtypes[0], Shape(f));
}

std::vector<TensorSpec> pool_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 1);
  const Dims y = pool_output(dims4(c.shapes[0], "input"), c.attrs<PoolAttrs>());
  return detail::one(c.dtypes[0], Shape(y));
}

// x -> (y, argmax).
std::vector<TensorSpec> max_pool_shape(const InferenceContext& c) {
  auto specs = pool_shape(c);
  specs.push_back({int64, specs[0].shape});
  return specs;
}

// (orig_input, orig_output, grad, argmax): checks them; returns (x, y) dims. grad has y's shape
// (MaxPoolGrad) or x's (MaxPoolGradGrad).
std::pair<Dims, Dims> max_pool_grad_inputs(const InferenceContext& c, bool grad_is_pooled) {
  detail::expect_inputs(c, 4);
  for (std::size_t i : {1, 2})
    if (c.dtypes[i] != c.dtypes[0])
      throw TypeError("Input " + std::to_string(i) + " has type " + dtype_name(c.dtypes[i]) +
                      " that does not match type " + dtype_name(c.dtypes[0]) + " of input 0");
  if (c.dtypes[3] != int64)
    throw TypeError("argmax must be int64 (MaxPool's second output), got " +
                    std::string(dtype_name(c.dtypes[3])));
  Dims x = dims4(c.shapes[0], "orig_input");
  if (!grad_is_pooled) x = merge(x, dims4(c.shapes[2], "grad"), "orig_input", "grad");
  Dims y = merge(dims4(c.shapes[1], "orig_output"), pool_output(x, c.attrs<PoolAttrs>()),
                 "orig_output", "the pooled shape");
  y = merge(dims4(c.shapes[3], "argmax"), y, "argmax", "the pooled shape");
  if (grad_is_pooled) y = merge(dims4(c.shapes[2], "grad"), y, "grad", "the pooled shape");
  return {x, y};
}

// (orig_input, orig_output, grad, argmax) -> orig_input.
std::vector<TensorSpec> max_pool_grad_shape(const InferenceContext& c) {
  return detail::one(c.dtypes[0], Shape(max_pool_grad_inputs(c, true).first));
}

// (orig_input, orig_output, grad of orig_input's shape, argmax) -> orig_output.
std::vector<TensorSpec> max_pool_grad_grad_shape(const InferenceContext& c) {
  return detail::one(c.dtypes[0], Shape(max_pool_grad_inputs(c, false).second));
}

// (orig_input_shape, grad) -> orig_input.
std::vector<TensorSpec> avg_pool_grad_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  const auto& a = c.attrs<PoolAttrs>();
  const Dims x = sizes_at_build(c, 0, a.output_hint, "orig_input_shape");
  merge(dims4(c.shapes[1], "grad"), pool_output(x, a), "grad", "the pooled shape");
  return detail::one(c.dtypes[1], Shape(x));
}

// ---------------------------------------------------------------- gradients

Tensor in(const Operation& op, int i) { return op.inputs()[static_cast<std::size_t>(i)]; }

// A constant int32 vector (sizes fit: larger values would not fit a tensor anyway).
Tensor int32_vector(const Dims& d, const std::string& name) {
  auto v = xt::xarray<std::int32_t>::from_shape({d.size()});
  std::transform(d.begin(), d.end(), v.begin(), [](i64 e) { return static_cast<std::int32_t>(e); });
  return constant(Array(std::move(v)), name);
}

// The shape of t as an int32 vector: a constant when static, else a Shape op.
Tensor shape_of(const Tensor& t) {
  return t.shape().is_fully_defined() ? int32_vector(t.shape().dims(), "Shape") : shape(t);
}

template <class A>
A hinted(A a, const Shape& hint) {
  a.output_hint = hint;
  return a;
}

Tensor conv2d_op(const Tensor& x, const Tensor& f, const Conv2DAttrs& a) {
  return detail::build1("Conv2D", {x, f}, hinted(a, Shape::unknown()), "");
}
Tensor backprop_input_op(const Tensor& x_like, const Tensor& f, const Tensor& dy,
                         const Conv2DAttrs& a) {
  return detail::build1("Conv2DBackpropInput", {shape_of(x_like), f, dy},
                        hinted(a, x_like.shape()), "");
}
Tensor backprop_filter_op(const Tensor& x, const Tensor& f_like, const Tensor& dy,
                          const Conv2DAttrs& a) {
  return detail::build1("Conv2DBackpropFilter", {x, shape_of(f_like), dy},
                        hinted(a, f_like.shape()), "");
}

const AttrCodec conv_codec = attr_codec<Conv2DAttrs>([](auto& io, auto& a) {
  io(a.strides);
  io(a.padding);
  io(a.data_format);
  io(a.dilations);
  io(a.output_hint);
});
const AttrCodec pool_codec = attr_codec<PoolAttrs>([](auto& io, auto& a) {
  io(a.ksize);
  io(a.strides);
  io(a.padding);
  io(a.data_format);
  io(a.output_hint);
});

OpDef make_def(const char* type, ShapeFn shape_fn, std::array<Kernel, kNumDTypes> kernels,
               GradFn gradient, int dispatch_input = 0) {
  OpDef d;
  d.type = type;
  d.shape_fn = std::move(shape_fn);
  d.kernels = std::move(kernels);
  d.gradient = std::move(gradient);
  d.dispatch_input = dispatch_input;
  return d;
}
// The convolution ops share Conv2DAttrs, the pooling ops PoolAttrs: their defs carry its codec.
template <class... Args>
OpDef conv_def(Args&&... args) {
  OpDef d = make_def(std::forward<Args>(args)...);
  d.attr_codec = conv_codec;
  return d;
}
template <class... Args>
OpDef pool_def(Args&&... args) {
  OpDef d = make_def(std::forward<Args>(args)...);
  d.attr_codec = pool_codec;
  return d;
}

Conv2DAttrs conv_attrs(const Dims& strides, const std::string& padding,
                       const nn::Conv2DOptions& options) {
  Conv2DAttrs a;
  a.strides = four(strides, options.data_format);
  a.padding = padding;
  a.data_format = options.data_format;
  a.dilations = four(options.dilations, options.data_format);
  return a;
}

PoolAttrs pool_attrs(const Dims& ksize, const Dims& strides, const std::string& padding,
                     const std::string& data_format) {
  PoolAttrs a;
  a.ksize = four(ksize, data_format);
  a.strides = four(strides, data_format);
  a.padding = padding;
  a.data_format = data_format;
  return a;
}

}  // namespace

// ---------------------------------------------------------------- public functions

namespace nn {

Tensor conv2d(const Tensor& x, const Tensor& filter, const std::vector<std::int64_t>& strides,
              const std::string& padding, const Conv2DOptions& options, const std::string& name) {
  return detail::build1("Conv2D", {x, filter}, conv_attrs(strides, padding, options), name);
}

Tensor conv2d_backprop_input(const Tensor& input_sizes, const Tensor& filter,
                             const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                             const std::string& padding, const Conv2DOptions& options,
                             const std::string& name) {
  return detail::build1("Conv2DBackpropInput", {input_sizes, filter, out_backprop},
                        conv_attrs(strides, padding, options), name);
}

Tensor conv2d_backprop_input(const std::vector<std::int64_t>& input_sizes, const Tensor& filter,
                             const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                             const std::string& padding, const Conv2DOptions& options,
                             const std::string& name) {
  return conv2d_backprop_input(int32_vector(input_sizes, "input_sizes"), filter, out_backprop,
                               strides, padding, options, name);
}

Tensor conv2d_backprop_filter(const Tensor& x, const Tensor& filter_sizes,
                              const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                              const std::string& padding, const Conv2DOptions& options,
                              const std::string& name) {
  return detail::build1("Conv2DBackpropFilter", {x, filter_sizes, out_backprop},
                        conv_attrs(strides, padding, options), name);
}

Tensor conv2d_backprop_filter(const Tensor& x, const std::vector<std::int64_t>& filter_sizes,
                              const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                              const std::string& padding, const Conv2DOptions& options,
                              const std::string& name) {
  return conv2d_backprop_filter(x, int32_vector(filter_sizes, "filter_sizes"), out_backprop,
                                strides, padding, options, name);
}

Tensor max_pool(const Tensor& x, const std::vector<std::int64_t>& ksize,
                const std::vector<std::int64_t>& strides, const std::string& padding,
                const std::string& data_format, const std::string& name) {
  return build_op("MaxPool", {x}, pool_attrs(ksize, strides, padding, data_format), name).output(0);
}

Tensor avg_pool(const Tensor& x, const std::vector<std::int64_t>& ksize,
                const std::vector<std::int64_t>& strides, const std::string& padding,
                const std::string& data_format, const std::string& name) {
  return detail::build1("AvgPool", {x}, pool_attrs(ksize, strides, padding, data_format), name);
}

}  // namespace nn

// ---------------------------------------------------------------- registration

void register_conv_ops(OpRegistry& r) {
  using G = const OptionalTensors&;
  using Op = const Operation&;

  r.add(conv_def(
      "Conv2D", conv2d_shape,
      kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) { conv2d_kernel<T>(c); }),
      [](Op op, G dy) {
        const auto& a = op.attrs<Conv2DAttrs>();
        const Tensor x = in(op, 0), f = in(op, 1);
        return OptionalTensors{backprop_input_op(x, f, *dy[0], a),
                               backprop_filter_op(x, f, *dy[0], a)};
      }));
  r.add(conv_def(
      "Conv2DBackpropInput", conv2d_backprop_input_shape,
      kernels_for<KILN_FLOAT_TYPES>(
          []<class T>(KernelContext& c) { conv2d_backprop_input_kernel<T>(c); }),
      [](Op op, G dy) {
        const auto& a = op.attrs<Conv2DAttrs>();
        const Tensor f = in(op, 1), d = in(op, 2), g = *dy[0];
        return OptionalTensors{std::nullopt, backprop_filter_op(g, f, d, a), conv2d_op(g, f, a)};
      },
      /*dispatch_input=*/1));
  r.add(conv_def(
      "Conv2DBackpropFilter", conv2d_backprop_filter_shape,
      kernels_for<KILN_FLOAT_TYPES>(
          []<class T>(KernelContext& c) { conv2d_backprop_filter_kernel<T>(c); }),
      [](Op op, G dy) {
        const auto& a = op.attrs<Conv2DAttrs>();
        const Tensor x = in(op, 0), d = in(op, 2), g = *dy[0];
        return OptionalTensors{backprop_input_op(x, g, d, a), std::nullopt, conv2d_op(x, g, a)};
      }));

  // MaxPool's argmax output (int64) carries no gradient.
  r.add(pool_def(
      "MaxPool", max_pool_shape,
      kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) { pool_kernel<T, true>(c); }),
      [](Op op, G dy) {
        return OptionalTensors{detail::build1(
            "MaxPoolGrad", {in(op, 0), op.output(0), *dy[0], op.output(1)},
            hinted(op.attrs<PoolAttrs>(), Shape::unknown()), "")};
      }));
  r.add(pool_def(
      "MaxPoolGrad", max_pool_grad_shape,
      kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) { max_pool_grad_kernel<T>(c); }),
      [](Op op, G dy) {
        const Tensor x = in(op, 0), y = in(op, 1), argmax = in(op, 3);
        return OptionalTensors{zeros_like(x), zeros_like(y),
                               detail::build1("MaxPoolGradGrad", {x, y, *dy[0], argmax},
                                              op.attrs<PoolAttrs>(), ""),
                               std::nullopt};
      }));
  r.add(pool_def(
      "MaxPoolGradGrad", max_pool_grad_grad_shape,
      kernels_for<KILN_FLOAT_TYPES>(
          []<class T>(KernelContext& c) { max_pool_grad_grad_kernel<T>(c); }),
      [](Op op, G dy) {
        const Tensor x = in(op, 0), y = in(op, 1), argmax = in(op, 3);
        return OptionalTensors{
            zeros_like(x), zeros_like(y),
            detail::build1("MaxPoolGrad", {x, y, *dy[0], argmax}, op.attrs<PoolAttrs>(), ""),
            std::nullopt};
      }));

  r.add(pool_def(
      "AvgPool", pool_shape,
      kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) { pool_kernel<T, false>(c); }),
      [](Op op, G dy) {
        const Tensor x = in(op, 0);
        return OptionalTensors{detail::build1("AvgPoolGrad", {shape_of(x), *dy[0]},
                                              hinted(op.attrs<PoolAttrs>(), x.shape()), "")};
      }));
  r.add(pool_def(
      "AvgPoolGrad", avg_pool_grad_shape,
      kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) { avg_pool_grad_kernel<T>(c); }),
      [](Op op, G dy) {
        return OptionalTensors{std::nullopt,
                               detail::build1("AvgPool", {*dy[0]},
                                              hinted(op.attrs<PoolAttrs>(), Shape::unknown()),
                                              "")};
      },
      /*dispatch_input=*/1));
}

}  // namespace kiln
