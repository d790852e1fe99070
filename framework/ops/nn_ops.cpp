// nn ops (TF's tf.nn): activations with their *Grad ops, L2Loss, BiasAdd / BiasAddGrad, Floor and
// the dropout noise; batch_normalization, sigmoid cross entropy and dropout are composed from
// registered ops. Softmax, LogSoftmax and the softmax cross entropies: softmax_ops.cpp.
// Each op: shape function, kernel, gradient side by side, registered in register_nn_ops.
#include <algorithm>
#include <cmath>
#include <limits>

#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/reduce.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops/formats.hpp"
#include "framework/ops/nn_ops.hpp"

namespace kiln {

namespace {

using detail::accepting_missing_grads;
using detail::forwards_input;
using detail::in;
using detail::make_def;
using detail::not_differentiable;
using detail::where_in;
using detail::with_codec;

Tensor build2(const char* type, const Tensor& a, const Tensor& b) {
  return detail::build1(type, {a, b}, {}, "");
}

template <class V>
struct elem {
  using type = V;
};
template <class T, class A>
struct elem<xsimd::batch<T, A>> {
  using type = T;
};
template <class V>
V k(double v) {  // a constant as a scalar or a batch of the functor's argument type
  return V(static_cast<typename elem<V>::type>(v));
}

// ---- elementwise ops: one input (activations), or two same-shape inputs (their *Grad ops)

std::vector<TensorSpec> same_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 1);
  return detail::one(c.dtypes[0], c.shapes[0]);
}

std::vector<TensorSpec> pair_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  detail::expect_same_dtype(c);
  if (!c.shapes[0].is_compatible_with(c.shapes[1]))
    throw ValueError("inputs must have the same shape, got " + c.shapes[0].to_string() + " and " +
                     c.shapes[1].to_string());
  return detail::one(c.dtypes[0], c.shapes[0].merge_with(c.shapes[1]));
}

template <class F>
std::array<KernelFactory, kNumDTypes> unary_kernels(F f) {
  return kernels_for<KILN_FLOAT_TYPES>([f]<class T>(KernelContext& c) {
    const auto& x = c.input_as<T>(0);
    const T* in = x.data();
    const std::size_t n = x.size();
    auto y = c.forward_input_or_allocate<T>(0, 0);
    kernels::map_unary(in, y.data(), n, f);
  });
}

template <class F>
std::array<KernelFactory, kNumDTypes> binary_kernels(F f) {
  return kernels_for<KILN_FLOAT_TYPES>([f]<class T>(KernelContext& c) {
    const auto& a = c.input_as<T>(0);
    const auto& b = c.input_as<T>(1);
    if (a.shape() != b.shape())
      throw InvalidArgumentError(where_in(c) + "inputs must have the same shape, got " +
                                 c.input(0).shape().to_string() + " and " +
                                 c.input(1).shape().to_string());
    const T *pa = a.data(), *pb = b.data();
    const std::size_t n = a.size();
    auto y = c.forward_input_or_allocate<T>(0, 0);
    kernels::map_binary(pa, 1, pb, 1, y.data(), n, f);
  });
}

// ---- BiasAdd / BiasAddGrad: x viewed as [outer, C, inner]; NHWC has inner == 1, NCHW outer == N.

using detail::BiasAddAttrs;
const AttrCodec bias_add_codec = attr_codec<BiasAddAttrs>([](auto& io, auto& a) { io(a.data_format); });

int channel_dim(const std::string& data_format, int rank) {
  return detail::channel_axis(detail::parse_data_format(data_format), rank);
}

std::int64_t channels_of(const InferenceContext& c) {
  const auto& f = c.attrs<BiasAddAttrs>().data_format;
  const Shape& x = c.shapes[0];
  if (!x.has_rank()) return -1;
  if (x.rank() < 2) throw ValueError("input must be at least 2-D, got shape " + x.to_string());
  return x[channel_dim(f, x.rank())];
}

std::vector<TensorSpec> bias_add_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  detail::expect_same_dtype(c);
  const std::int64_t ch = channels_of(c);
  const Shape& b = c.shapes[1];
  if (b.has_rank() && b.rank() != 1)
    throw ValueError("bias must be 1-D, got shape " + b.to_string());
  const std::int64_t nb = b.has_rank() ? b[0] : -1;
  if (ch >= 0 && nb >= 0 && ch != nb)
    throw ValueError("bias of size " + std::to_string(nb) + " must match the channel dimension (" +
                     std::to_string(ch) + ") of the input");
  if (!c.shapes[0].has_rank()) return detail::one(c.dtypes[0], c.shapes[0]);
  auto d = c.shapes[0].dims();
  d[static_cast<std::size_t>(
      channel_dim(c.attrs<BiasAddAttrs>().data_format, c.shapes[0].rank()))] = ch >= 0 ? ch : nb;
  return detail::one(c.dtypes[0], Shape(d));
}

struct Layout {
  std::size_t outer, channels, inner;
};
template <class T>
Layout bias_layout(const KernelContext& c, detail::DataFormat format, TensorView<const T> x) {
  if (x.dimension() < 2)
    throw InvalidArgumentError(where_in(c) + "input must be at least 2-D, got shape " +
                               c.input(0).shape().to_string());
  const auto ch = static_cast<std::size_t>(detail::channel_axis(format, static_cast<int>(x.dimension())));
  Layout l{1, x.shape()[ch], 1};
  for (std::size_t d = 0; d < x.dimension(); ++d)
    if (d != ch) (d < ch ? l.outer : l.inner) *= x.shape()[d];
  return l;
}

// BiasAdd's and BiasAddGrad's prepared part: the data format.
class BiasKernel : public OpKernel {
 public:
  explicit BiasKernel(const detail::Node& n)
      : format_(detail::parse_data_format(detail::node_attrs<BiasAddAttrs>(n).data_format)) {}

 protected:
  detail::DataFormat format_;
};

// y[o, c, i] = x[o, c, i] + b[c]: whole rows of C (NHWC) or planes with one b[c] (NCHW).
template <class T>
class BiasAddKernel final : public BiasKernel {
 public:
  using BiasKernel::BiasKernel;
  void compute(KernelContext& c) const override;
};
template <class T>
void BiasAddKernel<T>::compute(KernelContext& c) const {
  const auto& x = c.input_as<T>(0);
  const auto& b = c.input_as<T>(1);
  const Layout l = bias_layout(c, format_, x);
  if (b.dimension() != 1 || b.size() != l.channels)
    throw InvalidArgumentError(where_in(c) + "bias of shape " + c.input(1).shape().to_string() +
                               " must match the channel dimension of the input of shape " +
                               c.input(0).shape().to_string());
  auto y = c.allocate_output_like<T>(0, 0);
  const auto add = [](auto p, auto q) { return p + q; };
  for (std::size_t o = 0; o < l.outer; ++o) {
    const std::size_t base = o * l.channels * l.inner;
    if (l.inner == 1)
      kernels::map_binary(x.data() + base, 1, b.data(), 1, y.data() + base, l.channels, add);
    else
      for (std::size_t ch = 0; ch < l.channels; ++ch)
        kernels::map_binary(x.data() + base + ch * l.inner, 1, b.data() + ch, 0,
                            y.data() + base + ch * l.inner, l.inner, add);
  }
}

// db[c] = sum over o, i of dy[o, c, i], pairwise in double.
template <class T>
class BiasAddGradKernel final : public BiasKernel {
 public:
  using BiasKernel::BiasKernel;
  void compute(KernelContext& c) const override {
    const auto& dy = c.input_as<T>(0);
    const Layout l = bias_layout(c, format_, dy);
    kernels::Scratch<double> acc(l.channels);
    kernels::reduce_sum<double>(dy.data(), {l.outer, l.channels, l.inner}, {1, 0, 1}, acc.data());
    auto db = c.allocate_output<T>(0, {l.channels});
    std::transform(acc.data(), acc.data() + l.channels, db.data(), [](double v) { return static_cast<T>(v); });
  }
};

// ---- dropout noise: uniform [0, 1) values of x's dtype, shaped like x at run time

struct NoiseAttrs {
  std::vector<std::int64_t> shape;  // empty: x's shape; -1: x's dimension (right-aligned)
};
const AttrCodec noise_codec = attr_codec<NoiseAttrs>([](auto& io, auto& a) { io(a.shape); });

// The noise shape from x's dimensions (static, possibly -1, or run-time).
std::vector<std::int64_t> noise_dims(const std::vector<std::int64_t>& noise,
                                     const std::vector<std::int64_t>& x) {
  if (noise.empty()) return x;
  if (noise.size() > x.size())
    throw ValueError("noise_shape of rank " + std::to_string(noise.size()) +
                     " does not broadcast to x of rank " + std::to_string(x.size()));
  std::vector<std::int64_t> d = noise;
  const std::size_t off = x.size() - noise.size();
  for (std::size_t i = 0; i < d.size(); ++i) {
    const std::int64_t xd = x[off + i];
    if (d[i] == -1)
      d[i] = xd;
    else if (d[i] != 1 && xd >= 0 && d[i] != xd)
      throw ValueError("noise_shape dimension " + std::to_string(i) + " (" + std::to_string(d[i]) +
                       ") does not broadcast to x's dimension " + std::to_string(xd));
  }
  return d;
}

std::vector<TensorSpec> noise_shape_fn(const InferenceContext& c) {
  detail::expect_inputs(c, 1);
  const auto& noise = c.attrs<NoiseAttrs>().shape;
  if (!c.shapes[0].has_rank())
    return detail::one(c.dtypes[0], noise.empty()
                                        ? Shape::unknown()
                                        : Shape::unknown_of_rank(static_cast<int>(noise.size())));
  return detail::one(c.dtypes[0], Shape(noise_dims(noise, c.shapes[0].dims())));
}

// Uniform [0, 1) from the generator's top 24 (float) or 53 (double) bits: never rounds up to 1.
template <class T>
void noise_kernel(KernelContext& c, const NoiseAttrs& attrs) {
  const Shape xs = c.input(0).shape();
  std::vector<std::int64_t> d;
  try {
    d = noise_dims(attrs.shape, xs.dims());
  } catch (const ValueError& e) {
    throw InvalidArgumentError(where_in(c) + e.what());
  }
  auto u = c.allocate_output<T>(0, d);
  auto& g = c.rng();
  for (auto& v : u) {
    if constexpr (std::is_same_v<T, float>)
      v = static_cast<float>(g() >> 40) * 0x1.0p-24f;
    else
      v = static_cast<double>(g() >> 11) * 0x1.0p-53;
  }
}

}  // namespace

// ---------------------------------------------------------------- public functions

namespace nn {

Tensor Activation::operator()(const Tensor& features, const std::string& name) const {
  return detail::build1(type, {features}, {}, name);
}

// TF's stable form max(x, 0) - x z + log(1 + exp(-|x|)) is softplus(x) - x z.
Tensor sigmoid_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits,
                                         const std::string& name) {
  const std::string op = name.empty() ? "logistic_loss" : name;
  if (labels.dtype() != logits.dtype())
    throw TypeError("sigmoid_cross_entropy_with_logits '" + op + "': labels of dtype " +
                    dtype_name(labels.dtype()) + " do not match logits of dtype " +
                    dtype_name(logits.dtype()));
  if (!labels.shape().is_compatible_with(logits.shape()))
    throw ValueError("sigmoid_cross_entropy_with_logits '" + op +
                     "': logits and labels must have the same shape, got " +
                     logits.shape().to_string() + " and " + labels.shape().to_string());
  name_scope ns(op);
  return softplus(logits) - logits * labels;
}

Tensor l2_loss(const Tensor& t, const std::string& name) {
  return detail::build1("L2Loss", {t}, {}, name);
}

Tensor batch_normalization(const Tensor& x, const Tensor& mean, const Tensor& variance,
                           const std::optional<Tensor>& offset, const std::optional<Tensor>& scale,
                           double variance_epsilon, const std::string& name) {
  kiln::detail::check_variance_epsilon(variance_epsilon,
                                       " (nn::batch_normalization '" + (name.empty() ? "batchnorm" : name) + "')");
  // TF writes x * inv + (offset - mean * inv); that is the same value, but for data far from zero
  // (mean 1e4, std 1) both terms are ~1e4 and cancel, in y and, worse, in d/dinv = sum(dy x) -
  // mean sum(dy): float32 keeps ~3 digits of dgamma. (x - mean) is exact for x near the mean.
  name_scope ns(name.empty() ? "batchnorm" : name);
  Tensor inv = rsqrt(variance + variance_epsilon);
  if (scale) inv = inv * *scale;
  return offset ? (x - mean) * inv + *offset : (x - mean) * inv;
}

Tensor bias_add(const Tensor& x, const Tensor& bias, const std::string& data_format,
                const std::string& name) {
  return detail::build1("BiasAdd", {x, bias}, BiasAddAttrs{data_format}, name);
}

Tensor dropout(const Tensor& x, double rate, std::vector<std::int64_t> noise_shape,
               std::optional<std::int64_t> seed, const std::string& name) {
  const std::string op = name.empty() ? "dropout" : name;
  if (!(rate >= 0 && rate < 1))
    throw ValueError("dropout '" + op + "': rate must be in the range [0, 1), got " +
                     std::to_string(rate));
  if (!is_floating(x.dtype()))
    throw ValueError("dropout '" + op +
                     "': x has to be a floating point tensor since it is scaled, got a " +
                     dtype_name(x.dtype()) + " tensor");
  if (rate == 0) return x;
  name_scope ns(op);
  const Operation noise =
      build_op("RandomUniformLike", {x}, NoiseAttrs{std::move(noise_shape)}, "random_uniform");
  // The seed as random_ops.cpp derives it (TF1's get_seed): op seed and/or graph seed, else none.
  if (const auto graph_seed = noise.graph().seed(); graph_seed || seed) {
    const auto g = static_cast<std::uint64_t>(graph_seed.value_or(87654321));
    const auto o = static_cast<std::uint64_t>(seed.value_or(noise.node()->id));
    noise.node()->seed =
        g * 0x9E3779B97F4A7C15ull ^ (o + 0x632BE59BD9B4E019ull + (g << 6) + (g >> 2));
  }
  const double keep = 1 - rate;
  const Tensor mask = detail::build1("Floor", {noise.output(0) + keep}, {}, "Floor");
  return x / keep * mask;
}

}  // namespace nn

// ---------------------------------------------------------------- registration

void register_nn_ops(OpRegistry& r) {
  const auto unary = [&r](const char* type, auto f, GradFn grad) {
    r.add(forwards_input(make_def(type, same_shape, unary_kernels(f), std::move(grad))));
  };
  const auto binary = [&r](const char* type, auto f, GradFn grad) {
    r.add(forwards_input(make_def(type, pair_shape, binary_kernels(f), std::move(grad))));
  };
  using G = const OptionalTensors&;
  using Op = const Operation&;

  // NaN propagates through every activation and its gradient (kernels::maximum, kernels::gate).
  // Relu: y = max(x, 0); dx = ReluGrad(dy, y) (TF passes the output: y > 0 exactly where x > 0).
  // ReluGrad(g, f) = g [f > 0] is linear in g and piecewise constant in f.
  unary(
      "Relu", [](auto x) { return kernels::maximum(x, k<decltype(x)>(0)); },
      [](Op op, G dy) { return OptionalTensors{build2("ReluGrad", *dy[0], op.output(0))}; });
  binary(
      "ReluGrad", [](auto g, auto f) { return kernels::gate(f > k<decltype(f)>(0), g, f); },
      [](Op op, G dy) {
        return OptionalTensors{build2("ReluGrad", *dy[0], in(op, 1)), zeros_like(in(op, 1))};
      });

  // Relu6: y = min(max(x, 0), 6); Relu6Grad(g, x) = g [0 < x < 6].
  unary(
      "Relu6",
      [](auto x) {
        using V = decltype(x);
        return kernels::minimum(kernels::maximum(x, k<V>(0)), k<V>(6));
      },
      [](Op op, G dy) { return OptionalTensors{build2("Relu6Grad", *dy[0], in(op))}; });
  binary(
      "Relu6Grad",
      [](auto g, auto f) {
        using V = decltype(g);
        return kernels::gate((f > k<V>(0)) && (f < k<V>(6)), g, f);
      },
      [](Op op, G dy) {
        return OptionalTensors{build2("Relu6Grad", *dy[0], in(op, 1)), zeros_like(in(op, 1))};
      });

  // Elu: y = x if x > 0 else exp(x) - 1, so dy/dx = 1 or y + 1: EluGrad(g, y) = g if y > 0 else g
  // (y + 1). EluGrad's own gradient: (EluGrad(dz, y), dz g where y < 0).
  unary(
      "Elu",
      [](auto x) {
        using V = decltype(x);
        return kernels::select(x < k<V>(0), kernels::expm1(x), x);  // x >= 0 and NaN pass through
      },
      [](Op op, G dy) { return OptionalTensors{build2("EluGrad", *dy[0], op.output(0))}; });
  binary(
      "EluGrad",
      [](auto g, auto y) {
        using V = decltype(g);
        return kernels::select(y > k<V>(0), g, g * (y + k<V>(1)));
      },
      [](Op op, G dy) {
        const Tensor g = in(op, 0), y = in(op, 1), dz = *dy[0];
        return OptionalTensors{build2("EluGrad", dz, y),
                               where(less(y, scalar_like(0, y)), dz * g, zeros_like(y))};
      });

  // Sigmoid: y = 1 / (1 + exp(-x)) (exp overflow gives exactly 0); dy/dx = y (1 - y).
  // SigmoidGrad(y, g) = g y (1 - y); its gradient: (dz g (1 - 2y), SigmoidGrad(y, dz)).
  unary(
      "Sigmoid",
      [](auto x) {
        using V = decltype(x);
        return k<V>(1) / (k<V>(1) + kernels::exp(-x));
      },
      [](Op op, G dy) { return OptionalTensors{build2("SigmoidGrad", op.output(0), *dy[0])}; });
  binary(
      "SigmoidGrad", [](auto y, auto g) { return g * y * (k<decltype(y)>(1) - y); },
      [](Op op, G dy) {
        const Tensor y = in(op, 0), g = in(op, 1), dz = *dy[0];
        return OptionalTensors{dz * g * (1.0 - 2.0 * y), build2("SigmoidGrad", y, dz)};
      });

  // Tanh: dy/dx = 1 - y^2. TanhGrad(y, g) = g (1 - y^2); its gradient: (-2 dz g y, TanhGrad(y,
  // dz)).
  unary(
      "Tanh", [](auto x) { return kernels::tanh(x); },
      [](Op op, G dy) { return OptionalTensors{build2("TanhGrad", op.output(0), *dy[0])}; });
  binary(
      "TanhGrad", [](auto y, auto g) { return g * (k<decltype(y)>(1) - y * y); },
      [](Op op, G dy) {
        const Tensor y = in(op, 0), g = in(op, 1), dz = *dy[0];
        return OptionalTensors{-2.0 * dz * g * y, build2("TanhGrad", y, dz)};
      });

  // Softplus: log(1 + e^x) = log1p(e^-|x|) + max(x, 0) (the exp argument is <= 0: no overflow);
  // dy/dx = sigmoid(x): SoftplusGrad(g, x) = g / (1 + e^-x); its gradient:
  // (SoftplusGrad(dz, x), dz g sigmoid'(x)) with sigmoid' = s (1 - s), written as SigmoidGrad.
  unary(
      "Softplus",
      [](auto x) {
        return kernels::log1p(kernels::exp(-xsimd::abs(x))) + kernels::maximum(x, k<decltype(x)>(0));
      },
      [](Op op, G dy) { return OptionalTensors{build2("SoftplusGrad", *dy[0], in(op))}; });
  binary(
      "SoftplusGrad",
      [](auto g, auto x) {
        using V = decltype(g);
        return g / (k<V>(1) + kernels::exp(-x));
      },
      [](Op op, G dy) {
        const Tensor g = in(op, 0), x = in(op, 1), dz = *dy[0];
        return OptionalTensors{build2("SoftplusGrad", dz, x),
                               build2("SigmoidGrad", nn::sigmoid(x), dz * g)};
      });

  // Floor (dropout's mask): piecewise constant, so no gradient flows (TF returns None).
  r.add(not_differentiable(
      forwards_input(make_def("Floor", same_shape, unary_kernels([](auto x) { return xsimd::floor(x); }), {}))));

  // L2Loss: sum(x^2) / 2, pairwise in double; dx = x dy.
  r.add(make_def(
      "L2Loss",
      [](const InferenceContext& c) {
        detail::expect_inputs(c, 1);
        return detail::one(c.dtypes[0], Shape{});
      },
      kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
        const auto& x = c.input_as<T>(0);
        const double s = kernels::pairwise_sum<double>(x.data(), x.size(), [](T v) {
          return static_cast<double>(v) * static_cast<double>(v);
        });
        c.set_output(0, Array(static_cast<T>(s / 2)));
      }),
      [](Op op, G dy) { return OptionalTensors{in(op) * *dy[0]}; }));

  // BiasAdd: dx = dy, db = BiasAddGrad(dy). BiasAddGrad is linear, db[c] = sum of dy over all but
  // the channel dimension; its adjoint broadcasts dz back along the channel: BiasAdd(0, dz).
  r.add(with_codec(make_def(
      "BiasAdd", bias_add_shape,
      prepared_kernels<BiasAddKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        return OptionalTensors{
            *dy[0], detail::build1("BiasAddGrad", {*dy[0]}, op.attrs<BiasAddAttrs>(), "")};
      }), bias_add_codec));
  r.add(with_codec(make_def(
      "BiasAddGrad",
      [](const InferenceContext& c) {
        detail::expect_inputs(c, 1);
        return detail::one(c.dtypes[0], Shape{channels_of(c)});
      },
      prepared_kernels<BiasAddGradKernel, KILN_FLOAT_TYPES>(),
      [](Op op, G dy) {
        return OptionalTensors{
            nn::bias_add(zeros_like(in(op)), *dy[0], op.attrs<BiasAddAttrs>().data_format)};
      }), bias_add_codec));

  // Dropout's noise: random, so not differentiable (like TF's RandomUniform).
  r.add(with_codec(not_differentiable(make_def(
      "RandomUniformLike", noise_shape_fn,
      kernels_with<NoiseAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const NoiseAttrs& a) { noise_kernel<T>(c, a); }), {})), noise_codec));
}

}  // namespace kiln
