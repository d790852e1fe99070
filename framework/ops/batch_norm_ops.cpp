// The batch-norm op family: FusedBatchNorm (TF's op: inputs x, scale, offset, mean, variance;
// outputs y, batch_mean, batch_variance, reserve_space_1, reserve_space_2) and its gradient op
// FusedBatchNormGrad (inputs dy, x, scale, reserve_space_1, reserve_space_2; outputs dx, dscale,
// doffset). Kernels: framework/kernels/batch_norm.hpp on the [outer, C, inner] view of the rank-4
// input (NHWC: outer = N*H*W, inner = 1; NCHW: outer = N, inner = H*W). Public entry point:
// nn::fused_batch_norm (framework/nn_batch_norm.hpp).
//
// Reserve spaces: training saves the batch mean and inv = 1/sqrt(var + eps) (biased var), which is
// what the backward kernel needs; inference passes the population mean and variance through.
//
// Second order (the gradient of FusedBatchNormGrad), composed from registered ops. Per channel,
// with <.> the mean over the channel's M elements, xhat = (x - mu) * inv, A = <dy xhat> and
// P = dy - <dy> - xhat A, the training-mode outputs are dx = g inv P, dg = sum(dy xhat),
// db = sum(dy). For incoming gradients (ggx, ggg, ggb), treating mu and inv as functions of x
// (d xhat_k / d x_j = inv (delta_kj - 1/M - xhat_k xhat_j / M), d inv / d x_j = -inv^2 xhat_j / M):
//   d/d dy = g inv (ggx - <ggx> - xhat <ggx xhat>) + ggg xhat + ggb      (P is self-adjoint)
//   d/d g  = inv sum(ggx P)
//   d/d x  = inv (G - <G> - xhat <G xhat>) - g <ggx P> inv^2 xhat + ggg inv P,
//            G = -g inv (dy <ggx xhat> + A ggx)
// Inference (inv = 1/sqrt(pop_var + eps), m = pop_mean): dx = dy g inv, dg = sum(dy (x - m) inv):
//   d/d dy = ggx g inv + ggg (x - m) inv + ggb, d/d x = ggg dy inv, d/d g = sum(ggx dy) inv.
// The reserve spaces (and, as in TF, the population statistics) receive no gradient.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "framework/kernels/batch_norm.hpp"
#include "framework/nn_batch_norm.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops/batch_norm_ops.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/formats.hpp"


namespace kiln {

namespace {

using detail::FusedBatchNormAttrs;

const AttrCodec fused_bn_codec = attr_codec<FusedBatchNormAttrs>([](auto& io, auto& a) {
  io(a.epsilon);
  io(a.data_format);
  io(a.is_training);
});

bool is_nchw(const std::string& f) { return detail::parse_data_format(f) == detail::DataFormat::nchw; }

// Merges the size of a 1-D per-channel parameter into the channel count c (-1: unknown).
// allow_empty: a [0] tensor is accepted (mean/variance in training, where they are unused).
std::int64_t merge_channels(std::int64_t c, const Shape& s, const char* what, bool allow_empty = false) {
  if (!s.has_rank()) return c;
  if (s.rank() != 1) throw ValueError(std::string(what) + " must be 1-dimensional, got shape " + s.to_string());
  const std::int64_t n = s[0];
  if (n < 0 || (allow_empty && n == 0)) return c;
  if (c >= 0 && n != c)
    throw ValueError(std::string(what) + " must have " + std::to_string(c) + " elements (one per channel), got shape " +
                     s.to_string());
  return n;
}

// Checks the inputs of FusedBatchNorm (grad false) or FusedBatchNormGrad (grad true), whose x is
// input `xi`; sets `x` to the output shape and returns the channel count (-1: unknown).
std::int64_t check_bn_inputs(const InferenceContext& c, int xi, bool training, bool grad, Shape& x) {
  const auto& a = c.attrs<FusedBatchNormAttrs>();
  detail::parse_data_format(a.data_format);
  detail::check_variance_epsilon(a.epsilon, "");
  const DType t = c.dtypes[static_cast<std::size_t>(xi)];
  if (t != float32 && t != float64)
    throw TypeError(std::string("x must be float or double, got ") + dtype_name(t));
  static const char* const kForward[] = {"x", "scale", "offset", "mean", "variance"};
  static const char* const kGrad[] = {"y_backprop", "x", "scale", "reserve_space_1", "reserve_space_2"};
  const char* const* names = grad ? kGrad : kForward;
  for (int i = 0; i < 5; ++i)
    if (c.dtypes[static_cast<std::size_t>(i)] != t)
      throw TypeError(std::string(names[i]) + " has dtype " + dtype_name(c.dtypes[static_cast<std::size_t>(i)]) +
                      ", x has dtype " + dtype_name(t));
  x = c.shapes[static_cast<std::size_t>(xi)];
  if (grad) {
    const Shape& dy = c.shapes[0];
    if (!dy.is_compatible_with(x))
      throw ValueError("y_backprop of shape " + dy.to_string() + " does not match x of shape " + x.to_string());
    x = x.merge_with(dy);
  }
  if (x.has_rank() && x.rank() != 4) throw ValueError("x must be 4-dimensional, got shape " + x.to_string());
  const int ca = is_nchw(a.data_format) ? 1 : 3;
  std::int64_t ch = x.has_rank() ? x[ca] : -1;
  const int first = grad ? 2 : 1;
  ch = merge_channels(ch, c.shapes[static_cast<std::size_t>(first)], "scale");
  if (!grad) ch = merge_channels(ch, c.shapes[2], "offset");
  // Forward training ignores mean/variance (TF passes empty tensors); the grad's reserve spaces
  // are always [C].
  ch = merge_channels(ch, c.shapes[3], names[3], training && !grad);
  ch = merge_channels(ch, c.shapes[4], names[4], training && !grad);
  if (x.has_rank() && ch >= 0) {
    std::vector<std::int64_t> d = x.dims();
    d[static_cast<std::size_t>(ca)] = ch;
    x = Shape(d);
  }
  return ch;
}

std::vector<TensorSpec> fused_bn_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 5);
  const auto& a = c.attrs<FusedBatchNormAttrs>();
  Shape x;
  const std::int64_t ch = check_bn_inputs(c, 0, a.is_training, false, x);
  const TensorSpec p{c.dtypes[0], Shape{ch}};
  return {{c.dtypes[0], x}, p, p, p, p};
}

std::vector<TensorSpec> fused_bn_grad_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 5);
  const auto& a = c.attrs<FusedBatchNormAttrs>();
  Shape x;
  const std::int64_t ch = check_bn_inputs(c, 1, a.is_training, true, x);
  const TensorSpec p{c.dtypes[0], Shape{ch}};
  return {{c.dtypes[0], x}, p, p};
}

// ---------------------------------------------------------------- kernels

// FusedBatchNorm's and FusedBatchNormGrad's prepared part: the attributes, the data format parsed.
class BnKernel : public OpKernel {
 public:
  explicit BnKernel(const detail::Node& n)
      : a_(detail::node_attrs<FusedBatchNormAttrs>(n)), nchw_(detail::parse_data_format(a_.data_format) ==
                                                                      detail::DataFormat::nchw) {}

 protected:
  // The [outer, C, inner] view of a 4-D x (InvalidArgumentError otherwise); allocates nothing.
  template <class T>
  kernels::BnLayout layout(const KernelContext& c, int i) const {
    const auto& s = c.input_as<T>(i).shape();
    if (s.size() != 4)
      throw InvalidArgumentError("'" + c.op_name() + "' (op: '" + c.node().def->type +
                                 "'): x must be 4-dimensional, got shape " + c.input(i).shape().to_string());
    const auto d = [&](int k) { return static_cast<std::int64_t>(s[static_cast<std::size_t>(k)]); };
    if (nchw_) return {d(0), d(1), d(2) * d(3)};
    return {d(0) * d(1) * d(2), d(3), 1};
  }
  template <class T>
  static void check_param(const KernelContext& c, int i, const char* what, std::int64_t channels) {
    const auto& s = c.input_as<T>(i).shape();
    if (s.size() != 1 || static_cast<std::int64_t>(s[0]) != channels)
      throw InvalidArgumentError("'" + c.op_name() + "' (op: '" + c.node().def->type + "'): " + what +
                                 " must have shape [" + std::to_string(channels) + "], got " +
                                 c.input(i).shape().to_string());
  }

  FusedBatchNormAttrs a_;
  bool nchw_;
};

// Outputs (y, batch_mean, batch_variance, reserve_space_1, reserve_space_2).
template <class T>
class FusedBatchNormKernel final : public BnKernel {
 public:
  using BnKernel::BnKernel;
  void compute(KernelContext& c) const override {
    const auto& x = c.input_as<T>(0);
    const kernels::BnLayout l = layout<T>(c, 0);
    const std::int64_t C = l.channels;
    const auto channels = static_cast<std::size_t>(C);
    check_param<T>(c, 1, "scale", C);
    check_param<T>(c, 2, "offset", C);
    const T* g = c.input_as<T>(1).data();
    const T* b = c.input_as<T>(2).data();
    if (!a_.is_training) {
      check_param<T>(c, 3, "mean", C);
      check_param<T>(c, 4, "variance", C);
    }
    auto y = c.forward_input_or_allocate<T>(0, 0);  // in x's buffer when nothing else reads x
    if (a_.is_training) {
      auto mean = c.allocate_output<T>(1, {channels});
      auto var = c.allocate_output<T>(2, {channels});
      auto saved_mean = c.allocate_output<T>(3, {channels});
      auto inv = c.allocate_output<T>(4, {channels});
      kernels::fused_batch_norm_forward_training(x.data(), g, b, l, a_.epsilon, y.data(), mean.data(), var.data(),
                                                 inv.data());
      std::copy(mean.data(), mean.data() + channels, saved_mean.data());
      // TF: the variance output is Bessel-corrected (for the moving average); inv uses the biased one.
      const double m = static_cast<double>(l.outer) * static_cast<double>(l.inner);
      const double factor = m / std::max(m - 1, 1.0);
      for (auto& v : var) v = static_cast<T>(static_cast<double>(v) * factor);
      return;
    }
    kernels::fused_batch_norm_forward_inference(x.data(), g, b, c.input_as<T>(3).data(), c.input_as<T>(4).data(), l,
                                                a_.epsilon, y.data());
    c.set_output(1, c.input(3));
    c.set_output(2, c.input(4));
    c.set_output(3, c.input(3));
    c.set_output(4, c.input(4));
  }
};

// Inputs (y_backprop, x, scale, reserve_space_1, reserve_space_2); outputs (dx, dscale, doffset).
template <class T>
class FusedBatchNormGradKernel final : public BnKernel {
 public:
  using BnKernel::BnKernel;
  void compute(KernelContext& c) const override {
    const auto& dy = c.input_as<T>(0);
    const auto& x = c.input_as<T>(1);
    if (dy.shape() != x.shape())
      throw InvalidArgumentError("'" + c.op_name() + "' (op: 'FusedBatchNormGrad'): y_backprop of shape " +
                                 c.input(0).shape().to_string() + " does not match x of shape " +
                                 c.input(1).shape().to_string());
    const kernels::BnLayout l = layout<T>(c, 1);
    const std::int64_t C = l.channels;
    check_param<T>(c, 2, "scale", C);
    check_param<T>(c, 3, "reserve_space_1", C);
    check_param<T>(c, 4, "reserve_space_2", C);
    auto dx = c.forward_input_or_allocate<T>(0, 0);  // in dy's buffer when nothing else reads dy
    auto dg = c.allocate_output<T>(1, {static_cast<std::size_t>(C)});
    auto db = c.allocate_output<T>(2, {static_cast<std::size_t>(C)});
    const T* g = c.input_as<T>(2).data();
    const T* r1 = c.input_as<T>(3).data();
    const T* r2 = c.input_as<T>(4).data();
    if (a_.is_training)
      kernels::fused_batch_norm_backward_training(dy.data(), x.data(), g, r1, r2, l, dx.data(), dg.data(), db.data());
    else
      kernels::fused_batch_norm_backward_inference(dy.data(), x.data(), g, r1, r2, l, a_.epsilon, dx.data(),
                                                   dg.data(), db.data());
  }
};

// ---------------------------------------------------------------- gradients

// Per-channel helpers for the composed second-order gradient.
struct Channels {
  bool nchw;
  std::vector<int> axes;  // all but the channel axis
  explicit Channels(const std::string& fmt)
      : nchw(is_nchw(fmt)), axes(nchw ? std::vector<int>{0, 2, 3} : std::vector<int>{0, 1, 2}) {}
  /// A [C] vector shaped to broadcast against x.
  Tensor bc(const Tensor& v) const { return nchw ? reshape(v, Shape{1, -1, 1, 1}) : v; }
  /// Per-channel mean, kept broadcastable.
  Tensor mean(const Tensor& t) const { return reduce_mean(t, axes, true); }
  /// Per-channel sum, [C].
  Tensor sum(const Tensor& t) const { return reduce_sum(t, axes, false); }
};

void accumulate(std::optional<Tensor>& acc, const Tensor& t) { acc = acc ? *acc + t : t; }

OptionalTensors fused_bn_grad(const Operation& op, const OptionalTensors& dy) {
  if (!dy[0]) return OptionalTensors(5);  // only y carries a gradient (TF)
  const auto& a = op.attrs<FusedBatchNormAttrs>();
  const auto in = op.inputs();
  const Operation g = build_op("FusedBatchNormGrad", {*dy[0], in[0], in[1], op.output(3), op.output(4)}, a,
                               "FusedBatchNormGrad");
  return {g.output(0), g.output(1), g.output(2), std::nullopt, std::nullopt};
}

OptionalTensors fused_bn_grad_grad(const Operation& op, const OptionalTensors& dy) {
  const auto& a = op.attrs<FusedBatchNormAttrs>();
  const auto in = op.inputs();
  const Tensor& grad_y = in[0];
  const Tensor& x = in[1];
  const Tensor& scale = in[2];
  const Channels ch(a.data_format);
  const Tensor g = ch.bc(scale);
  const auto& ggx = dy[0];
  const auto& ggg = dy[1];
  const auto& ggb = dy[2];
  std::optional<Tensor> d_dy, d_x, d_scale;
  if (a.is_training) {
    const Tensor inv_c = in[4];
    const Tensor inv = ch.bc(inv_c);
    const Tensor xhat = (x - ch.bc(in[3])) * inv;
    const Tensor A = ch.mean(grad_y * xhat);
    const Tensor P = grad_y - ch.mean(grad_y) - xhat * A;
    if (ggx) {
      const Tensor bx = ch.mean(*ggx * xhat);
      accumulate(d_dy, g * inv * (*ggx - ch.mean(*ggx) - xhat * bx));
      const Tensor t = *ggx * P;
      accumulate(d_scale, inv_c * ch.sum(t));
      const Tensor G = -(g * inv * (grad_y * bx + A * *ggx));
      accumulate(d_x, inv * (G - ch.mean(G) - xhat * ch.mean(G * xhat)) - g * ch.mean(t) * inv * inv * xhat);
    }
    if (ggg) {
      const Tensor gg = ch.bc(*ggg);
      accumulate(d_dy, gg * xhat);
      accumulate(d_x, gg * inv * P);
    }
  } else {
    const Tensor inv_c = rsqrt(in[4] + scalar_like(a.epsilon, in[4]));
    const Tensor inv = ch.bc(inv_c);
    if (ggx) {
      accumulate(d_dy, *ggx * g * inv);
      accumulate(d_scale, ch.sum(*ggx * grad_y) * inv_c);
    }
    if (ggg) {
      const Tensor gg = ch.bc(*ggg);
      accumulate(d_dy, gg * (x - ch.bc(in[3])) * inv);
      accumulate(d_x, gg * grad_y * inv);
    }
  }
  if (ggb) accumulate(d_dy, zeros_like(grad_y) + ch.bc(*ggb));
  return {d_dy, d_x, d_scale, std::nullopt, std::nullopt};
}

Tensor empty_vector(DType dtype) {
  return constant(visit_dtype(dtype, []<class T>() { return Array(xt::xarray<T>::from_shape({0})); }), "Const");
}

}  // namespace

namespace nn {

FusedBatchNormOutputs fused_batch_norm(const Tensor& x, const Tensor& scale, const Tensor& offset,
                                       const std::optional<Tensor>& mean, const std::optional<Tensor>& variance,
                                       double epsilon, const std::string& data_format, bool is_training,
                                       const std::string& name) {
  if (!is_training && (!mean || !variance))
    throw ValueError("fused_batch_norm '" + (name.empty() ? std::string("FusedBatchNorm") : name) +
                     "': both 'mean' and 'variance' must be a 1-D tensor when is_training is false");
  if (!x.valid()) throw ValueError("fused_batch_norm: x is a null Tensor");
  const Tensor m = mean ? *mean : empty_vector(x.dtype());
  const Tensor v = variance ? *variance : empty_vector(x.dtype());
  const Operation op = build_op("FusedBatchNorm", {x, scale, offset, m, v},
                                FusedBatchNormAttrs{epsilon, data_format, is_training}, name);
  return {op.output(0), op.output(1), op.output(2)};
}

}  // namespace nn

namespace detail {
// One rule for every path: 1 / sqrt(variance + epsilon) stays finite for a constant channel
// (variance 0) only with epsilon > 0, and a NaN epsilon would make every output NaN.
void check_variance_epsilon(double epsilon, const std::string& context) {
  if (std::isfinite(epsilon) && epsilon > 0) return;
  std::ostringstream os;
  os << "epsilon must be a finite number > 0, got " << epsilon << context;
  throw ValueError(os.str());
}
}  // namespace detail

void register_batch_norm_ops(OpRegistry& r) {
  r.add({.type = "FusedBatchNorm",
         .shape_fn = fused_bn_shape,
         .kernels = prepared_kernels<FusedBatchNormKernel, KILN_FLOAT_TYPES>(),
         .gradient = fused_bn_grad,
         .accepts_missing_output_grads = true,
         .forwards_input = true,         // y in x's buffer (the kernels allow the alias)
         .passes_inputs_through = true,  // inference: the moving statistics are outputs 1 to 4
         .attr_codec = fused_bn_codec});
  r.add({.type = "FusedBatchNormGrad",
         .shape_fn = fused_bn_grad_shape,
         .kernels = prepared_kernels<FusedBatchNormGradKernel, KILN_FLOAT_TYPES>(),
         .dispatch_input = 1,
         .gradient = fused_bn_grad_grad,
         .accepts_missing_output_grads = true,
         .forwards_input = true,  // dx in dy's buffer (the kernels allow the alias)
         .attr_codec = fused_bn_codec});
}

}  // namespace kiln
