// Softmax and LogSoftmax along an axis, and the two softmax cross entropies (TF's
// SparseSoftmaxCrossEntropyWithLogits and SoftmaxCrossEntropyWithLogits: classes on the last axis,
// outputs (loss, backprop)), on one numerically safe softmax walk. Each op: shape function,
// kernel, gradient side by side, registered in register_softmax_ops.
#include <algorithm>
#include <cmath>
#include <limits>

#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/reduce.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

using detail::accepting_missing_grads;
using detail::in;
using detail::make_def;
using detail::where_in;
using detail::with_codec;

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
  auto y = c.allocate_output_like<T>(0, 0);
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
  auto loss = c.allocate_output<T>(0, t.shape());
  auto back = c.allocate_output_like<T>(1, 0);
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
  auto loss = c.allocate_output<T>(0, loss_shape);
  std::fill(loss.begin(), loss.end(), T(0));
  auto back = c.allocate_output_like<T>(1, 0);
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

}  // namespace

namespace nn {

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

}  // namespace nn

void register_softmax_ops(OpRegistry& r) {
  using G = const OptionalTensors&;
  using Op = const Operation&;

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
}

}  // namespace kiln
