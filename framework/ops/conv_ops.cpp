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
#include <array>
#include <optional>

#include "framework/kernels/conv2d.hpp"
#include "framework/kernels/pooling.hpp"
#include "framework/nn_conv.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/conv_ops.hpp"
#include "framework/ops/formats.hpp"

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
  return detail::parse_data_format(data_format) == detail::DataFormat::nchw ? Layout{true, 2, 3, 1}
                                                                           : Layout{false, 1, 2, 3};
}

kernels::Padding padding_of(const std::string& s) { return detail::parse_padding(s); }

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

using Dims4 = std::array<i64, 4>;
Dims to_dims(const Dims4& d) { return Dims(d.begin(), d.end()); }

// Dims in the layout's order from (batch, height, width, channels).
Dims4 make4(const Layout& l, i64 n, i64 h, i64 w, i64 c) {
  Dims4 d{};
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
  return to_dims(make4(l, x[0], out_dim(x[l.h], f[0], s.h, d.h, pad),
                       out_dim(x[l.w], f[1], s.w, d.w, pad), f[3]));
}

// Pooling's output dims from input dims, validating the attributes.
Dims pool_output(const Dims& x, const PoolAttrs& a) {
  const Layout l = layout_of(a.data_format);
  const kernels::Padding pad = padding_of(a.padding);
  const HW k = spatial_of(a.ksize, "ksize", l);
  const HW s = spatial_of(a.strides, "strides", l);
  return to_dims(make4(l, x[0], out_dim(x[l.h], k.h, s.h, 1, pad), out_dim(x[l.w], k.w, s.w, 1, pad),
                       x[l.c]));
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
//
// Prepared once per op (ConvParams / PoolParams: the attributes parsed into enums and numbers);
// on each run the geometry comes from the actual dims without allocating. Any inconsistency in
// the actual shapes re-runs the build-time checks on them, so the message is the shape function's,
// as InvalidArgumentError prefixed by the op's type and name.

using detail::where_in;

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

// The dims of a rank-4 input (InvalidArgumentError for another rank).
template <class T>
Dims4 input_dims4(const KernelContext& c, int i, const char* what) {
  const auto& s = c.input_as<T>(i).shape();
  if (s.size() != 4)
    checked(c, [&] { dims4(Shape(Dims(s.begin(), s.end())), what); });
  return {static_cast<i64>(s[0]), static_cast<i64>(s[1]), static_cast<i64>(s[2]), static_cast<i64>(s[3])};
}

template <class Dims4Like>
std::array<std::size_t, 4> extents4(const Dims4Like& d) {
  return {static_cast<std::size_t>(d[0]), static_cast<std::size_t>(d[1]), static_cast<std::size_t>(d[2]),
          static_cast<std::size_t>(d[3])};
}

// A sizes input (input_sizes, filter_sizes, orig_input_shape) at run time: 4 entries >= 0 that
// describe an array of T that fits (check_array_size: a fed size must not wrap around).
template <class T>
Dims4 sizes_input(const KernelContext& c, int i, const char* what) {
  constexpr DType dtype = dtype_of<T>();
  const Array& a = c.input(i);
  Dims4 d{};
  bool ok = a.size() == 4;
  const auto read = [&](const auto& v) {
    ok = ok && v.dimension() == 1;
    for (std::size_t k = 0; ok && k < 4; ++k) d[k] = static_cast<i64>(v.data()[k]);
  };
  if (a.dtype() == int32)
    read(a.as<std::int32_t>());
  else
    read(a.as<std::int64_t>());
  for (const i64 e : d) ok = ok && e >= 0;
  if (!ok) checked(c, [&] { sizes_at_run_time(a, what); });
  if (const auto e = extents4(d); !array_size_ok(dtype, e)) check_array_size(dtype, e, "'" + c.op_name() + "': " + what);
  return d;
}

// A convolution's attributes, parsed once.
struct ConvParams {
  Conv2DAttrs attrs;  // for the messages of the slow path
  Layout layout;
  kernels::Padding padding;
  HW strides, dilations;
  explicit ConvParams(const Conv2DAttrs& a)
      : attrs(a),
        layout(layout_of(a.data_format)),
        padding(padding_of(a.padding)),
        strides(spatial_of(a.strides, "strides", layout)),
        dilations(spatial_of(a.dilations, "dilations", layout)) {}

  // The geometry of input dims x and filter dims f; false when they do not fit together.
  bool geometry(const Dims4& x, const Dims4& f, kernels::Conv2DGeometry& g) const {
    const Layout& l = layout;
    for (int k = 0; k < 4; ++k)
      if (x[k] < 0 || f[k] < 0) return false;
    if (x[l.c] != f[2] || f[0] < 1 || f[1] < 1) return false;
    if (padding == kernels::Padding::valid &&
        ((f[0] - 1) * dilations.h + 1 > x[l.h] || (f[1] - 1) * dilations.w + 1 > x[l.w]))
      return false;
    g = kernels::Conv2DGeometry{};
    g.batch = x[0];
    g.in_h = x[l.h];
    g.in_w = x[l.w];
    g.in_c = x[l.c];
    g.out_c = f[3];
    g.kernel_h = f[0];
    g.kernel_w = f[1];
    g.stride_h = strides.h;
    g.stride_w = strides.w;
    g.dilation_h = dilations.h;
    g.dilation_w = dilations.w;
    g.channels_first = l.channels_first;
    g = kernels::make_conv2d_geometry(g, padding);
    return true;
  }
  Dims4 output_dims(const kernels::Conv2DGeometry& g) const { return make4(layout, g.batch, g.out_h, g.out_w, g.out_c); }
  // The geometry, or the shape function's error for these dims.
  kernels::Conv2DGeometry checked_geometry(const KernelContext& c, const Dims4& x, const Dims4& f) const {
    kernels::Conv2DGeometry g;
    if (geometry(x, f, g)) return g;
    checked(c, [&] { conv_output(to_dims(x), to_dims(f), attrs); });
    throw InvalidArgumentError(where_in(c) + "input " + list_text(to_dims(x)) + " and filter " +
                               list_text(to_dims(f)) + " do not fit together");
  }
  void expect_out_backprop(const KernelContext& c, const kernels::Conv2DGeometry& g, const Dims4& dy) const {
    if (output_dims(g) != dy)
      checked(c, [&] { expect_dims(to_dims(dy), to_dims(output_dims(g)), "out_backprop"); });
  }
};

template <class T>
class Conv2DKernel final : public OpKernel {
 public:
  explicit Conv2DKernel(const detail::Node& n) : p_(detail::node_attrs<Conv2DAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const auto g = p_.checked_geometry(c, input_dims4<T>(c, 0, "input"), input_dims4<T>(c, 1, "filter"));
    auto& y = c.allocate_output<T>(0, extents4(p_.output_dims(g)));
    kernels::conv2d_forward(g, c.input_as<T>(0).data(), c.input_as<T>(1).data(), y.data());
  }

 private:
  ConvParams p_;
};

// Inputs (input_sizes, filter, out_backprop).
template <class T>
class Conv2DBackpropInputKernel final : public OpKernel {
 public:
  explicit Conv2DBackpropInputKernel(const detail::Node& n) : p_(detail::node_attrs<Conv2DAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const Dims4 x = sizes_input<T>(c, 0, "input_sizes");
    const auto g = p_.checked_geometry(c, x, input_dims4<T>(c, 1, "filter"));
    p_.expect_out_backprop(c, g, input_dims4<T>(c, 2, "out_backprop"));
    auto& dx = c.allocate_output<T>(0, extents4(x));
    kernels::conv2d_backprop_input(g, c.input_as<T>(1).data(), c.input_as<T>(2).data(), dx.data());
  }

 private:
  ConvParams p_;
};

// Inputs (input, filter_sizes, out_backprop).
template <class T>
class Conv2DBackpropFilterKernel final : public OpKernel {
 public:
  explicit Conv2DBackpropFilterKernel(const detail::Node& n) : p_(detail::node_attrs<Conv2DAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const Dims4 f = sizes_input<T>(c, 1, "filter_sizes");
    const auto g = p_.checked_geometry(c, input_dims4<T>(c, 0, "input"), f);
    p_.expect_out_backprop(c, g, input_dims4<T>(c, 2, "out_backprop"));
    auto& df = c.allocate_output<T>(0, extents4(f));
    kernels::conv2d_backprop_filter(g, c.input_as<T>(0).data(), c.input_as<T>(2).data(), df.data());
  }

 private:
  ConvParams p_;
};

// A pooling op's attributes, parsed once.
struct PoolParams {
  PoolAttrs attrs;
  Layout layout;
  kernels::Padding padding;
  HW ksize, strides;
  explicit PoolParams(const PoolAttrs& a)
      : attrs(a),
        layout(layout_of(a.data_format)),
        padding(padding_of(a.padding)),
        ksize(spatial_of(a.ksize, "ksize", layout)),
        strides(spatial_of(a.strides, "strides", layout)) {}

  kernels::Pool2DGeometry checked_geometry(const KernelContext& c, const Dims4& x) const {
    const Layout& l = layout;
    bool ok = x[0] >= 0 && x[1] >= 0 && x[2] >= 0 && x[3] >= 0;
    if (padding == kernels::Padding::valid) ok = ok && ksize.h <= x[l.h] && ksize.w <= x[l.w];
    if (!ok) {
      checked(c, [&] { pool_output(to_dims(x), attrs); });
      throw InvalidArgumentError(where_in(c) + "input " + list_text(to_dims(x)) + " does not fit the window");
    }
    kernels::Pool2DGeometry g;
    g.batch = x[0];
    g.in_h = x[l.h];
    g.in_w = x[l.w];
    g.channels = x[l.c];
    g.window_h = ksize.h;
    g.window_w = ksize.w;
    g.stride_h = strides.h;
    g.stride_w = strides.w;
    g.channels_first = l.channels_first;
    return kernels::make_pool2d_geometry(g, padding);
  }
  Dims4 output_dims(const kernels::Pool2DGeometry& g) const { return make4(layout, g.batch, g.out_h, g.out_w, g.channels); }
  void expect(const KernelContext& c, const Dims4& got, const Dims4& want, const char* what) const {
    if (got != want) checked(c, [&] { expect_dims(to_dims(got), to_dims(want), what); });
  }
};

template <class T, bool kMax>
class PoolKernel final : public OpKernel {
 public:
  explicit PoolKernel(const detail::Node& n) : p_(detail::node_attrs<PoolAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const auto g = p_.checked_geometry(c, input_dims4<T>(c, 0, "input"));
    const auto out = extents4(p_.output_dims(g));
    auto& y = c.allocate_output<T>(0, out);
    if constexpr (kMax) {
      auto& argmax = c.allocate_output<i64>(1, out);
      kernels::max_pool_forward(g, c.input_as<T>(0).data(), y.data(), argmax.data());
    } else {
      kernels::avg_pool_forward(g, c.input_as<T>(0).data(), y.data());
    }
  }

 private:
  PoolParams p_;
};
template <class T>
using MaxPoolKernel = PoolKernel<T, true>;
template <class T>
using AvgPoolKernel = PoolKernel<T, false>;

// Inputs (orig_input, orig_output, grad, argmax), checked against each other. grad has the pooled
// shape (MaxPoolGrad: scattered to the elements argmax names) or the input's (MaxPoolGradGrad:
// out[o] = grad at the element argmax[o] names, 0 for an empty window).
template <class T, bool kGradIsPooled>
class MaxPoolGradKernel final : public OpKernel {
 public:
  explicit MaxPoolGradKernel(const detail::Node& n) : p_(detail::node_attrs<PoolAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const Dims4 x = input_dims4<T>(c, 0, "orig_input");
    const auto g = p_.checked_geometry(c, x);
    const Dims4 y = p_.output_dims(g);
    p_.expect(c, input_dims4<T>(c, 1, "orig_output"), y, "orig_output");
    p_.expect(c, input_dims4<T>(c, 2, "grad"), kGradIsPooled ? y : x, "grad");
    p_.expect(c, input_dims4<i64>(c, 3, "argmax"), y, "argmax");
    const i64* argmax = c.input_as<i64>(3).data();
    const T* grad = c.input_as<T>(2).data();
    auto& out = c.allocate_output<T>(0, extents4(kGradIsPooled ? x : y));
    checked(c, [&] {
      if constexpr (kGradIsPooled)
        kernels::max_pool_backward(g, argmax, grad, out.data());
      else
        kernels::max_pool_grad_grad(g, argmax, grad, out.data());
    });
  }

 private:
  PoolParams p_;
};
template <class T>
using MaxPoolGradOnlyKernel = MaxPoolGradKernel<T, true>;
template <class T>
using MaxPoolGradGradKernel = MaxPoolGradKernel<T, false>;

// Inputs (orig_input_shape, grad).
template <class T>
class AvgPoolGradKernel final : public OpKernel {
 public:
  explicit AvgPoolGradKernel(const detail::Node& n) : p_(detail::node_attrs<PoolAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const Dims4 x = sizes_input<T>(c, 0, "orig_input_shape");
    const auto g = p_.checked_geometry(c, x);
    p_.expect(c, input_dims4<T>(c, 1, "grad"), p_.output_dims(g), "grad");
    auto& dx = c.allocate_output<T>(0, extents4(x));
    kernels::avg_pool_backward(g, c.input_as<T>(1).data(), dx.data());
  }

 private:
  PoolParams p_;
};

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

using detail::in;

using detail::int32_vector;
using detail::shape_of;

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

using detail::make_def;
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
      prepared_kernels<Conv2DKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        const auto& a = op.attrs<Conv2DAttrs>();
        const Tensor x = in(op, 0), f = in(op, 1);
        return OptionalTensors{backprop_input_op(x, f, *dy[0], a),
                               backprop_filter_op(x, f, *dy[0], a)};
      }));
  r.add(conv_def(
      "Conv2DBackpropInput", conv2d_backprop_input_shape,
      prepared_kernels<Conv2DBackpropInputKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        const auto& a = op.attrs<Conv2DAttrs>();
        const Tensor f = in(op, 1), d = in(op, 2), g = *dy[0];
        return OptionalTensors{std::nullopt, backprop_filter_op(g, f, d, a), conv2d_op(g, f, a)};
      },
      /*dispatch_input=*/1));
  r.add(conv_def(
      "Conv2DBackpropFilter", conv2d_backprop_filter_shape,
      prepared_kernels<Conv2DBackpropFilterKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        const auto& a = op.attrs<Conv2DAttrs>();
        const Tensor x = in(op, 0), d = in(op, 2), g = *dy[0];
        return OptionalTensors{backprop_input_op(x, g, d, a), std::nullopt, conv2d_op(x, g, a)};
      }));

  // MaxPool's argmax output (int64) carries no gradient.
  r.add(pool_def(
      "MaxPool", max_pool_shape,
      prepared_kernels<MaxPoolKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        return OptionalTensors{detail::build1(
            "MaxPoolGrad", {in(op, 0), op.output(0), *dy[0], op.output(1)},
            hinted(op.attrs<PoolAttrs>(), Shape::unknown()), "")};
      }));
  r.add(pool_def(
      "MaxPoolGrad", max_pool_grad_shape,
      prepared_kernels<MaxPoolGradOnlyKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        const Tensor x = in(op, 0), y = in(op, 1), argmax = in(op, 3);
        return OptionalTensors{zeros_like(x), zeros_like(y),
                               detail::build1("MaxPoolGradGrad", {x, y, *dy[0], argmax},
                                              op.attrs<PoolAttrs>(), ""),
                               std::nullopt};
      }));
  r.add(pool_def(
      "MaxPoolGradGrad", max_pool_grad_grad_shape,
      prepared_kernels<MaxPoolGradGradKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        const Tensor x = in(op, 0), y = in(op, 1), argmax = in(op, 3);
        return OptionalTensors{
            zeros_like(x), zeros_like(y),
            detail::build1("MaxPoolGrad", {x, y, *dy[0], argmax}, op.attrs<PoolAttrs>(), ""),
            std::nullopt};
      }));

  r.add(pool_def(
      "AvgPool", pool_shape,
      prepared_kernels<AvgPoolKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        const Tensor x = in(op, 0);
        return OptionalTensors{detail::build1("AvgPoolGrad", {shape_of(x), *dy[0]},
                                              hinted(op.attrs<PoolAttrs>(), x.shape()), "")};
      }));
  r.add(pool_def(
      "AvgPoolGrad", avg_pool_grad_shape,
      prepared_kernels<AvgPoolGradKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        return OptionalTensors{std::nullopt,
                               detail::build1("AvgPool", {*dy[0]},
                                              hinted(op.attrs<PoolAttrs>(), Shape::unknown()),
                                              "")};
      },
      /*dispatch_input=*/1));
}

}  // namespace kiln
