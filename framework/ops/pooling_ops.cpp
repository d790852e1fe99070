// Pooling ops (TF's MaxPool / AvgPool family): attributes, shape functions, kernels over
// framework/kernels/pooling.hpp and gradients, side by side, registered in register_pooling_ops.
// What they share with the convolutions (conv_ops.cpp): ops/window_ops.hpp.
//
// MaxPool has a second output, argmax (int64, y's shape: the flat index into x of the element
// each output was taken from, as TF's MaxPoolWithArgmax), so that its gradient
// MaxPoolGrad(x, y, dy, argmax) is a scatter of dy to the chosen elements instead of a second
// search (TF's MaxPoolGrad takes the first three inputs and searches again). That is a fixed
// linear map S^T of dy for given x, so its gradient in dy is S gg = MaxPoolGradGrad(x, y, gg,
// argmax) (a gather of gg at the chosen elements), and zero in x and y (the choice is piecewise
// constant). MaxPoolGradGrad's gradient is MaxPoolGrad again. AvgPool -> AvgPoolGrad (the adjoint
// spreads dy / count over the window), whose gradient is AvgPool.
#include <optional>

#include "framework/kernels/pooling.hpp"
#include "framework/nn_conv.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/window_ops.hpp"

namespace kiln {

namespace {

using namespace window;
using detail::where_in;

struct PoolAttrs {
  Dims ksize;
  Dims strides;
  std::string padding;
  std::string data_format;
  Shape output_hint = Shape::unknown();  // AvgPoolGrad's static output shape, as Conv2DAttrs::output_hint
};

// Pooling's output dims from input dims, validating the attributes.
Dims pool_output(const Dims& x, const PoolAttrs& a) {
  const Layout l = layout_of(a.data_format);
  const kernels::Padding pad = padding_of(a.padding);
  const HW k = spatial_of(a.ksize, "ksize", l);
  const HW s = spatial_of(a.strides, "strides", l);
  return to_dims(make4(l, x[0], out_dim(x[l.h], k.h, s.h, 1, pad), out_dim(x[l.w], k.w, s.w, 1, pad),
                       x[l.c]));
}

// ---------------------------------------------------------------- kernels
//
// Prepared once per op (PoolParams: the attributes parsed into enums and numbers); on each run
// the geometry comes from the actual dims without allocating (window_ops.hpp's run-time checks).

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
    auto y = c.allocate_output<T>(0, out);
    if constexpr (kMax) {
      auto argmax = c.allocate_output<i64>(1, out);
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
// out[o] = grad at the element argmax[o] names, 0 for an empty window). kRelu: a fifth input of
// the input's shape, the features of the ReluGrad that reads the scattered gradient
// (_MaxPoolGradRelu).
template <class T, bool kGradIsPooled, bool kRelu = false>
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
    if constexpr (kRelu) p_.expect(c, input_dims4<T>(c, 4, "features"), x, "features");
    const i64* argmax = c.input_as<i64>(3).data();
    const T* grad = c.input_as<T>(2).data();
    auto out = c.allocate_output<T>(0, extents4(kGradIsPooled ? x : y));
    checked(c, [&] {
      if constexpr (kRelu)
        kernels::max_pool_backward_relu(g, argmax, grad, c.input_as<T>(4).data(), out.data());
      else if constexpr (kGradIsPooled)
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
template <class T>
using MaxPoolGradReluKernel = MaxPoolGradKernel<T, true, true>;

// Inputs (orig_input_shape, grad).
template <class T>
class AvgPoolGradKernel final : public OpKernel {
 public:
  explicit AvgPoolGradKernel(const detail::Node& n) : p_(detail::node_attrs<PoolAttrs>(n)) {}
  void compute(KernelContext& c) const override {
    const Dims4 x = sizes_input<T>(c, 0, "orig_input_shape");
    const auto g = p_.checked_geometry(c, x);
    p_.expect(c, input_dims4<T>(c, 1, "grad"), p_.output_dims(g), "grad");
    auto dx = c.allocate_output<T>(0, extents4(x));
    kernels::avg_pool_backward(g, c.input_as<T>(1).data(), dx.data());
  }

 private:
  PoolParams p_;
};

// ---------------------------------------------------------------- shape functions

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

// (orig_input, orig_output, grad, argmax, features of orig_input's shape) -> orig_input.
std::vector<TensorSpec> max_pool_grad_relu_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 5);
  InferenceContext four = c;
  four.shapes.pop_back(), four.dtypes.pop_back();
  if (four.constant_values.size() == 5) four.constant_values.pop_back();
  auto specs = max_pool_grad_shape(four);
  if (c.dtypes[4] != c.dtypes[0])
    throw TypeError("features has type " + std::string(dtype_name(c.dtypes[4])) + ", not " + dtype_name(c.dtypes[0]));
  specs[0].shape = Shape(merge(dims4(c.shapes[4], "features"), dims4(specs[0].shape, "orig_input"), "features",
                               "orig_input"));
  return specs;
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
using detail::shape_of;

const AttrCodec pool_codec = attr_codec<PoolAttrs>([](auto& io, auto& a) {
  io(a.ksize);
  io(a.strides);
  io(a.padding);
  io(a.data_format);
  io(a.output_hint);
});

// The pooling ops share PoolAttrs: their defs carry its codec.
template <class... Args>
OpDef pool_def(Args&&... args) {
  OpDef d = detail::make_def(std::forward<Args>(args)...);
  d.attr_codec = pool_codec;
  return d;
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

void register_pooling_ops(OpRegistry& r) {
  using G = const OptionalTensors&;
  using Op = const Operation&;

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

  // ReluGrad(MaxPoolGrad(x, y, dy, argmax), features) in one op, which the plan runs in place of
  // the pair when nothing else reads the MaxPoolGrad (framework/simplify.hpp): the scattered
  // gradient gated as it is written, bit for bit the pair's result. Never built by gradients.
  r.add(detail::not_differentiable(pool_def("_MaxPoolGradRelu", max_pool_grad_relu_shape,
                                            prepared_kernels<MaxPoolGradReluKernel, KILN_FLOAT_TYPES>(), nullptr)));

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
