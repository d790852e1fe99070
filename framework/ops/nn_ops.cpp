// nn ops (TF's tf.nn): activations with their *Grad ops, Softmax / LogSoftmax, the two softmax
// cross entropies, L2Loss, BiasAdd / BiasAddGrad, Floor and the dropout noise; moments,
// batch_normalization, sigmoid cross entropy and dropout are composed from registered ops.
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

Tensor in(const Operation& op, int i = 0) {
  return op.inputs()[static_cast<std::size_t>(i)];
}
Tensor build2(const char* type, const Tensor& a, const Tensor& b) {
  return detail::build1(type, {a, b}, {}, "");
}
// "Type 'name': ", the prefix of a kernel's run-time errors.
std::string where_in(const KernelContext& c) {
  return c.node().def->type + " '" + c.op_name() + "': ";
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

// An OpDef by assignment (g++ 12 flags designated initializers that skip members).
OpDef make_def(const char* type, ShapeFn shape_fn, std::array<KernelFactory, kNumDTypes> kernels,
               GradFn gradient) {
  OpDef d;
  d.type = type;
  d.shape_fn = std::move(shape_fn);
  d.kernels = std::move(kernels);
  d.gradient = std::move(gradient);
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
    auto& y = c.forward_input_or_allocate<T>(0, 0);
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
    auto& y = c.forward_input_or_allocate<T>(0, 0);
    kernels::map_binary(pa, 1, pb, 1, y.data(), n, f);
  });
}

// ---- softmax along `axis`

struct AxisAttrs {
  int axis;
};
const AttrCodec axis_codec = attr_codec<AxisAttrs>([](auto& io, auto& a) { io(a.axis); });

std::vector<TensorSpec> softmax_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 1);
  const Shape& s = c.shapes[0];
  if (s.rank() == 0) throw ValueError("logits must have rank >= 1, got a scalar");
  if (s.has_rank()) detail::resolve_axis(c.attrs<AxisAttrs>().axis, s.rank());
  return detail::one(c.dtypes[0], s);
}

// Softmax along the middle axis of an [outer, n, inner] view. With m = max along the axis every
// exp(x - m) <= 1 and their sum s >= 1, so nothing overflows: softmax = exp(x - m) / s, and
// log_softmax = (x - m) - log s (subtracting m first keeps the small log s term exact in float).
// A "line" is one whole row (inner == 1, m a single value) or one inner block (m one per position).
// The sums s add the exp values pairwise in double; the max propagates NaN (so does the sum).
template <class T>
void softmax_lines(const T* x, T* y, std::size_t outer, std::size_t n, std::size_t inner,
                   bool log) {
  const std::size_t len = inner == 1 ? n : inner, lines = inner == 1 ? 1 : n,
                    step = inner == 1 ? 0 : 1;
  kernels::Scratch<T> m_buf(inner), t_buf(inner), e_buf(log ? n * inner : 0);
  kernels::Scratch<double> s_buf(inner);
  T *m = m_buf.data(), *t = t_buf.data(), *e = e_buf.data();
  double* s = s_buf.data();
  const auto sub = [](auto a, auto b) { return a - b; };
  const auto div = [](auto a, auto b) { return a / b; };
  const auto exp_ = [](auto a) { return kernels::exp(a); };
  for (std::size_t o = 0; o < outer; ++o) {
    const T* xo = x + o * n * inner;
    T* yo = y + o * n * inner;
    std::fill(m, m + inner, -std::numeric_limits<T>::infinity());
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t i = 0; i < inner; ++i) m[i] = kernels::maximum(m[i], xo[j * inner + i]);
    T* eo = log ? e : yo;
    for (std::size_t l = 0; l < lines; ++l) {
      T* yl = yo + l * len;
      kernels::map_binary(xo + l * len, 1, m, step, yl, len, sub);
      kernels::map_unary(yl, eo + l * len, len, exp_);
    }
    kernels::sum_rows(eo, n, inner, s);
    for (std::size_t i = 0; i < inner; ++i) t[i] = static_cast<T>(log ? std::log(s[i]) : s[i]);
    for (std::size_t l = 0; l < lines; ++l) {
      T* yl = yo + l * len;
      if (log)
        kernels::map_binary(yl, 1, t, step, yl, len, sub);
      else
        kernels::map_binary(yl, 1, t, step, yl, len, div);
    }
  }
}

template <class T>
void softmax_kernel(KernelContext& c, const AxisAttrs& attrs, bool log) {
  const auto& x = c.input_as<T>(0);
  const int rank = static_cast<int>(x.dimension());
  const int axis = attrs.axis;
  if (rank == 0 || axis < -rank || axis >= rank)
    throw InvalidArgumentError(where_in(c) + "axis " + std::to_string(axis) +
                               " is out of range for logits of shape " +
                               c.input(0).shape().to_string());
  const auto a = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < a; ++d) outer *= x.shape()[d];
  for (std::size_t d = a + 1; d < x.dimension(); ++d) inner *= x.shape()[d];
  auto& y = c.allocate_output_like<T>(0, 0);
  softmax_lines(x.data(), y.data(), outer, x.shape()[a], inner, log);
}

// ---- cross entropies: classes on the last axis; TF's inputs (logits, labels), outputs
// (loss, backprop)

std::vector<TensorSpec> xent_outputs(DType t, const Shape& logits) {
  if (!logits.has_rank()) return {{t, Shape::unknown()}, {t, logits}};
  auto d = logits.dims();
  d.pop_back();
  return {{t, Shape(d)}, {t, logits}};
}

std::vector<TensorSpec> sparse_xent_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  if (!is_integer(c.dtypes[1]))
    throw TypeError(std::string("labels must be int32 or int64, got ") + dtype_name(c.dtypes[1]));
  const Shape &x = c.shapes[0], &t = c.shapes[1];
  if (x.rank() == 0)
    throw ValueError("logits must have rank >= 1 (classes on the last axis), got a scalar");
  if (x.has_rank() && t.has_rank() && t.rank() != x.rank() - 1)
    throw ValueError("Rank mismatch: rank of labels (received " + std::to_string(t.rank()) +
                     ") should equal rank of logits minus 1 (received " + std::to_string(x.rank()) +
                     ")");
  if (!x.has_rank()) {
    if (!t.has_rank()) return xent_outputs(c.dtypes[0], x);
    auto d = t.dims();
    d.push_back(-1);
    return xent_outputs(c.dtypes[0], Shape(d));
  }
  auto d = x.dims();
  const std::int64_t classes = d.back();
  d.pop_back();
  if (!Shape(d).is_compatible_with(t))
    throw ValueError("labels of shape " + t.to_string() + " do not match logits of shape " +
                     x.to_string() + " without its last (class) dimension");
  d = Shape(d).merge_with(t).dims();
  d.push_back(classes);
  return xent_outputs(c.dtypes[0], Shape(d));
}

std::vector<TensorSpec> dense_xent_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  detail::expect_same_dtype(c);
  if (!c.shapes[0].is_compatible_with(c.shapes[1]))
    throw ValueError("logits and labels must have the same shape, got " + c.shapes[0].to_string() +
                     " and " + c.shapes[1].to_string());
  const Shape s = c.shapes[0].merge_with(c.shapes[1]);
  if (s.rank() == 0)
    throw ValueError("logits must have rank >= 1 (classes on the last axis), got a scalar");
  return xent_outputs(c.dtypes[0], s);
}

// Per row x of C logits with label t: log_softmax lp = (x - m) - log s (softmax_lines);
// loss = -lp[t]; backprop = d loss / d x = exp(lp) - one_hot(t).
template <class T, class L>
void sparse_xent(KernelContext& c) {
  const auto& x = c.input_as<T>(0);
  const auto& t = c.input_as<L>(1);
  const auto xs = x.shape();
  if (x.dimension() == 0 || t.dimension() + 1 != x.dimension() ||
      !std::equal(t.shape().begin(), t.shape().end(), xs.begin()))
    throw InvalidArgumentError(where_in(c) + "labels of shape " + c.input(1).shape().to_string() +
                               " do not match logits of shape " + c.input(0).shape().to_string());
  const std::size_t classes = xs.back(), rows = t.size();
  for (std::size_t r = 0; r < rows; ++r)
    if (t.data()[r] < 0 || static_cast<std::size_t>(t.data()[r]) >= classes)
      throw InvalidArgumentError(
          where_in(c) + "received a label value of " + std::to_string(t.data()[r]) +
          " which is outside the valid range of [0, " + std::to_string(classes) + ")");
  auto& loss = c.allocate_output<T>(0, t.shape());
  auto& back = c.allocate_output_like<T>(1, 0);
  softmax_lines(x.data(), back.data(), rows, classes, 1, true);
  for (std::size_t r = 0; r < rows; ++r)
    loss.data()[r] = -back.data()[r * classes + static_cast<std::size_t>(t.data()[r])];
  kernels::map_unary(back.data(), back.data(), back.size(), [](auto a) { return kernels::exp(a); });
  for (std::size_t r = 0; r < rows; ++r)
    back.data()[r * classes + static_cast<std::size_t>(t.data()[r])] -= T(1);
}

// Per row with labels l (L = sum l): loss = -sum l * lp; backprop = d loss / d x = L exp(lp) - l.
// (TF writes exp(lp) - l, the same for labels that sum to 1; this form stays exact otherwise.)
template <class T>
void dense_xent(KernelContext& c) {
  const auto& x = c.input_as<T>(0);
  const auto& l = c.input_as<T>(1);
  if (x.shape() != l.shape() || x.dimension() == 0)
    throw InvalidArgumentError(where_in(c) + "logits and labels must have the same shape, got " +
                               c.input(0).shape().to_string() + " and " +
                               c.input(1).shape().to_string());
  const std::size_t classes = x.shape().back(), rows = classes ? x.size() / classes : 0;
  std::vector<std::size_t> loss_shape(x.shape().begin(), x.shape().end() - 1);
  auto& loss = c.allocate_output<T>(0, loss_shape);
  std::fill(loss.begin(), loss.end(), T(0));
  auto& back = c.allocate_output_like<T>(1, 0);
  softmax_lines(x.data(), back.data(), rows, classes, 1, true);
  for (std::size_t r = 0; r < rows; ++r) {
    T* b = back.data() + r * classes;
    const T* lr = l.data() + r * classes;
    double total = 0, sum = 0;
    for (std::size_t j = 0; j < classes; ++j) {
      total -= static_cast<double>(lr[j]) * b[j];
      sum += lr[j];
    }
    for (std::size_t j = 0; j < classes; ++j)
      b[j] = static_cast<T>(sum * std::exp(static_cast<double>(b[j]))) - lr[j];
    loss.data()[r] = static_cast<T>(total);
  }

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
Layout bias_layout(const KernelContext& c, detail::DataFormat format, const xt::xarray<T>& x) {
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
  auto& y = c.allocate_output_like<T>(0, 0);
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
    auto& db = c.allocate_output<T>(0, {l.channels});
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
  auto& u = c.allocate_output<T>(0, d);
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
Tensor softmax(const Tensor& logits, int axis, const std::string& name) {
  return detail::build1("Softmax", {logits}, AxisAttrs{axis}, name);
}
Tensor log_softmax(const Tensor& logits, int axis, const std::string& name) {
  return detail::build1("LogSoftmax", {logits}, AxisAttrs{axis}, name);
}
Tensor sparse_softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits,
                                                const std::string& name) {
  return build_op("SparseSoftmaxCrossEntropyWithLogits", {logits, labels}, {}, name).output(0);
}
Tensor softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits,
                                         const std::string& name) {
  return build_op("SoftmaxCrossEntropyWithLogits", {logits, labels}, {}, name).output(0);
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

  // Softmax: dx = (dy - sum(dy y, axis)) y. LogSoftmax: dx = dy - exp(y) sum(dy, axis).
  r.add(with_codec(make_def(
      "Softmax", softmax_shape,
      kernels_with<AxisAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const AxisAttrs& a) { softmax_kernel<T>(c, a, false); }),
      [](Op op, G dy) {
        const Tensor y = op.output(0), g = *dy[0];
        return OptionalTensors{(g - reduce_sum(g * y, {op.attrs<AxisAttrs>().axis}, true)) * y};
      }), axis_codec));
  r.add(with_codec(make_def(
      "LogSoftmax", softmax_shape,
      kernels_with<AxisAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const AxisAttrs& a) { softmax_kernel<T>(c, a, true); }),
      [](Op op, G dy) {
        const Tensor g = *dy[0];
        return OptionalTensors{g - exp(op.output(0)) *
                                       reduce_sum(g, {op.attrs<AxisAttrs>().axis}, true)};
      }), axis_codec));

  // d loss / d logits = dloss[..., None] backprop (labels: none). A gradient reaching the backprop
  // output b = softmax(x) - onehot (second order) adds the softmax gradient (db - sum(db p)) p.
  r.add(accepting_missing_grads(
      make_def("SparseSoftmaxCrossEntropyWithLogits", sparse_xent_shape,
               kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
                 if (c.input(1).dtype() == int32)
                   sparse_xent<T, std::int32_t>(c);
                 else
                   sparse_xent<T, std::int64_t>(c);
               }),
               [](Op op, G dy) {
                 std::optional<Tensor> dx;
                 if (dy[0]) dx = expand_dims(*dy[0], -1) * op.output(1);
                 if (dy[1]) {
                   const Tensor p = nn::softmax(in(op, 0)), db = *dy[1];
                   const Tensor t = (db - reduce_sum(db * p, {-1}, true)) * p;
                   dx = dx ? *dx + t : t;
                 }
                 return OptionalTensors{dx, std::nullopt};
               })));

  // loss = -sum(l lp): d/dx = dloss b, d/dl = -dloss lp (TF v2). With backprop b = L p - l
  // (L = sum l): d sum(db b)/dx = L (db - sum(db p)) p and d sum(db b)/dl = sum(db p) - db.
  r.add(accepting_missing_grads(
      make_def("SoftmaxCrossEntropyWithLogits", dense_xent_shape,
               kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) { dense_xent<T>(c); }),
               [](Op op, G dy) {
                 const Tensor x = in(op, 0), l = in(op, 1);
                 std::optional<Tensor> dx, dl;
                 if (dy[0]) {
                   const Tensor g = expand_dims(*dy[0], -1);
                   dx = g * op.output(1);
                   dl = -(g * nn::log_softmax(x));
                 }
                 if (dy[1]) {
                   const Tensor p = nn::softmax(x), db = *dy[1], s = reduce_sum(db * p, {-1}, true);
                   const Tensor tx = reduce_sum(l, {-1}, true) * (db - s) * p, tl = s - db;
                   dx = dx ? *dx + tx : tx;
                   dl = dl ? *dl + tl : tl;
                 }
                 return OptionalTensors{dx, dl};
               })));

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
