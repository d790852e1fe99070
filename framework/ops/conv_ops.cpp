// Convolution ops (TF's Conv2D family): attributes, shape functions, kernels over
// framework/kernels/conv2d.hpp and gradients, side by side, registered in register_conv_ops. What
// they share with pooling (pooling_ops.cpp): ops/window_ops.hpp.
//
// Gradients, as TF's nn_grad.py: Conv2D -> (Conv2DBackpropInput, Conv2DBackpropFilter). The two
// backprop ops are bilinear: with A_f the linear map x -> conv2d(x, f),
//   BackpropInput(f, dy)  = A_f^T dy,  so <g, A_f^T dy> = <conv2d(g, f), dy>:
//     d/d dy = conv2d(g, f), d/d f = BackpropFilter(g, dy);
//   BackpropFilter(x, dy) = d <conv2d(x, f), dy> / df, so <g, BackpropFilter(x, dy)> =
//     <conv2d(x, g), dy>: d/d dy = conv2d(x, g), d/d x = BackpropInput(g, dy).
#include <algorithm>
#include <array>
#include <optional>

#include "framework/kernels/conv2d.hpp"
#include "framework/nn_conv.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/conv_ops.hpp"
#include "framework/ops/window_ops.hpp"

namespace kiln {

namespace {

using namespace window;
using detail::Conv2DAttrs;
using detail::where_in;

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

// ---------------------------------------------------------------- kernels
//
// Prepared once per op (ConvParams: the attributes parsed into enums and numbers); on each run
// the geometry comes from the actual dims without allocating (window_ops.hpp's run-time checks).

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
    auto y = c.allocate_output<T>(0, extents4(p_.output_dims(g)));
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
    auto dx = c.allocate_output<T>(0, extents4(x));
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
    auto df = c.allocate_output<T>(0, extents4(f));
    kernels::conv2d_backprop_filter(g, c.input_as<T>(0).data(), c.input_as<T>(2).data(), df.data());
  }

 private:
  ConvParams p_;
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

// ---------------------------------------------------------------- gradients

using detail::in;
using detail::int32_vector;
using detail::shape_of;

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

// The convolution ops share Conv2DAttrs: their defs carry its codec.
template <class... Args>
OpDef conv_def(Args&&... args) {
  OpDef d = detail::make_def(std::forward<Args>(args)...);
  d.attr_codec = conv_codec;
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
}

}  // namespace kiln
