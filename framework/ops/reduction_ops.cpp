// Reductions: Sum, Mean, Max, Min over a set of axes (empty: all; negative from the end) with
// keepdims, Moments (nn::moments' mean and variance in one op) and its MomentsGrad (and
// _MomentsGradAdd / _MomentsGradAddScaled, MomentsGrad fused with the AddN that reads it by the
// plan), ArgMax, and the internal ReducedShape (x's run-time shape with the reduced axes set to 1,
// for gradients of tensors whose shape is not fully defined).
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "framework/kernels/batch_norm.hpp"
#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/reduce.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

struct ReduceAttrs {
  std::vector<int> axes;  // as given; empty: all
  bool keepdims = false;
};
struct ArgMaxAttrs {
  int axis = 0;
  DType output_type = int64;
};

const AttrCodec reduce_codec = attr_codec<ReduceAttrs>([](auto& io, auto& a) {
  io(a.axes);
  io(a.keepdims);
});

using kernels::AxisMask;
using Dims = kernels::Dims;

/// Which of r axes are reduced: ValueError for an axis out of range or given twice.
AxisMask axis_mask(const std::vector<int>& axes, int r) {
  AxisMask m(static_cast<std::size_t>(r), axes.empty());
  for (int a : axes) {
    const auto k = static_cast<std::size_t>(detail::resolve_axis(a, r));
    if (m[k])
      throw ValueError("axis " + std::to_string(a) +
                       " is given more than once in the reduction axes");
    m[k] = 1;
  }
  return m;
}

/// axis_mask at run time: errors become InvalidArgumentError naming the op.
AxisMask runtime_axis_mask(const KernelContext& c, const std::vector<int>& axes, std::size_t r) {
  try {
    return axis_mask(axes, static_cast<int>(r));
  } catch (const ValueError& e) {
    throw InvalidArgumentError("'" + c.op_name() + "' (op: '" + c.node().def->type +
                               "'): " + e.what());
  }
}

using kernels::is_nan;
using kernels::product;

enum class Reduction { sum, mean, max, min };

// Sums add pairwise (kernels/reduce.hpp) in double (floats) or int64 (integers); the mean divides
// the sum by the number of reduced elements (integer division for integers, like TF). Max/min
// propagate NaN.
template <Reduction R, class T>
void reduce_kernel(KernelContext& c, const ReduceAttrs& a) {
  const auto& x = c.input_as<T>(0);
  const Dims dims(x.shape().begin(), x.shape().end());
  const auto mask = runtime_axis_mask(c, a.axes, dims.size());
  Dims out;
  std::size_t count = 1;
  for (std::size_t k = 0; k < dims.size(); ++k) {
    if (mask[k]) count *= dims[k];
    if (!mask[k] || a.keepdims) out.push_back(mask[k] ? 1 : dims[k]);
  }
  auto y = c.allocate_output<T>(0, out);
  if constexpr (R == Reduction::sum || R == Reduction::mean) {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::int64_t>;
    kernels::Scratch<Acc> acc(y.size());
    kernels::reduce_sum<Acc>(x.data(), dims, mask, acc.data());
    const Acc divisor = R == Reduction::mean && (std::is_floating_point_v<T> || count > 0) ? static_cast<Acc>(count) : Acc(1);
    std::transform(acc.data(), acc.data() + y.size(), y.data(), [&](Acc v) {
      return static_cast<T>(R == Reduction::mean ? v / divisor : v);
    });
  } else {
    constexpr bool max = R == Reduction::max;
    using L = std::numeric_limits<T>;
    const T init =
        L::has_infinity ? (max ? -L::infinity() : L::infinity()) : (max ? L::lowest() : L::max());
    kernels::reduce_fold(x.data(), dims, mask, init, [](T best, T v) {
      return ((max ? v > best : v < best) || is_nan(v)) ? v : best;
    }, y.data());
  }
}

std::vector<TensorSpec> reduce_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 1);
  const auto& a = c.attrs<ReduceAttrs>();
  const Shape& s = c.shapes[0];
  if (!s.has_rank()) {
    for (std::size_t i = 0; i < a.axes.size(); ++i)
      if (std::find(a.axes.begin(), a.axes.begin() + static_cast<std::ptrdiff_t>(i), a.axes[i]) !=
          a.axes.begin() + static_cast<std::ptrdiff_t>(i))
        throw ValueError("axis " + std::to_string(a.axes[i]) +
                         " is given more than once in the reduction axes");
    return detail::one(c.dtypes[0], a.axes.empty() && !a.keepdims ? Shape{} : Shape::unknown());
  }
  const auto mask = axis_mask(a.axes, s.rank());
  std::vector<std::int64_t> out;
  for (std::size_t k = 0; k < mask.size(); ++k)
    if (!mask[k] || a.keepdims) out.push_back(mask[k] ? 1 : s.dims()[k]);
  return detail::one(c.dtypes[0], Shape(out));
}

using detail::int32_vector;
using detail::shape_of;

/// The shape of the reduction's output with keepdims: x's shape with the reduced axes set to 1.
Tensor keepdims_shape(const Operation& op) {
  const Tensor x = op.inputs()[0];
  const auto& a = op.attrs<ReduceAttrs>();
  if (!x.shape().is_fully_defined()) return detail::build1("ReducedShape", {shape(x)}, a, "");
  std::vector<std::int64_t> d = x.shape().dims();
  const auto mask = axis_mask(a.axes, x.shape().rank());
  for (std::size_t k = 0; k < d.size(); ++k)
    if (mask[k]) d[k] = 1;
  return int32_vector(d);
}

// d sum / dx = dy, broadcast back over the reduced axes.
Tensor sum_grad(const Operation& op, const Tensor& dy) {
  return broadcast_to(reshape(dy, keepdims_shape(op)), shape_of(op.inputs()[0]));
}

// Moments' view of x: [outer, C, inner] with the kept axes (mask 0) as the channels C, which needs
// them to be one run of adjacent axes (or none: C = 1).
bool kept_axes_adjacent(const AxisMask& mask) {
  const auto first = std::find(mask.begin(), mask.end(), 0);
  const auto last = std::find(std::make_reverse_iterator(mask.end()), std::make_reverse_iterator(first), 0).base();
  return std::find(first, last, 1) == last;
}
// nn::moments builds a Moments op when the kept axes are adjacent and either the last axis is
// kept (NHWC, rank 2: the kernel's scratch is a few percent of x) or the kept elements are known
// and at most kMomentsMaxChannels (its scratch grows with channels x channel groups otherwise).
constexpr std::int64_t kMomentsMaxChannels = 4096;
bool moments_op_applies(const Shape& s, const AxisMask& mask) {
  if (!kept_axes_adjacent(mask)) return false;
  if (!mask.empty() && !mask.back()) return true;
  std::int64_t kept = 1;
  for (std::size_t k = 0; k < mask.size(); ++k)
    if (!mask[k]) {
      if (s.dims()[k] < 0) return false;
      kept *= s.dims()[k];
    }
  return kept <= kMomentsMaxChannels;
}
kernels::BnLayout moments_layout(const Dims& dims, const AxisMask& mask) {
  const std::size_t k0 = static_cast<std::size_t>(std::find(mask.begin(), mask.end(), 0) - mask.begin());
  std::size_t k1 = dims.size();
  while (k1 > k0 && mask[k1 - 1]) --k1;
  const auto p = [&](std::size_t b, std::size_t e) { return static_cast<std::int64_t>(product(dims, b, e)); };
  return {p(0, k0), p(k0, k1), p(k1, dims.size())};
}

// Moments' and MomentsGrad's run-time view of input 0 (x), and the statistics' dims.
struct MomentsGeometry {
  kernels::BnLayout layout;
  Dims stat_dims;
};
template <class T>
MomentsGeometry moments_geometry(const KernelContext& c, const ReduceAttrs& a, int x_input = 0) {
  const auto& s = c.input_as<T>(x_input).shape();
  const Dims dims(s.begin(), s.end());
  const auto mask = runtime_axis_mask(c, a.axes, dims.size());
  MomentsGeometry g{moments_layout(dims, mask), {}};
  for (std::size_t k = 0; k < dims.size(); ++k)
    if (!mask[k] || a.keepdims) g.stat_dims.push_back(mask[k] ? 1 : dims[k]);
  return g;
}

// A per-channel scale: its shape, right-aligned against x's (`dims`), is 1 on the reduced axes and
// x's size on the kept ones, so its elements are the channels in order.
template <class D>
bool per_channel(const D& s, const D& dims, const AxisMask& mask) {
  if (s.size() > dims.size()) return false;
  const std::size_t lead = dims.size() - s.size();
  for (std::size_t k = 0; k < dims.size(); ++k) {
    const auto sk = k < lead ? 1 : s[k - lead];
    if (mask[k] ? sk != 1 : sk != dims[k]) return false;
  }
  return true;
}

// MomentsGrad's kernel on inputs x, mean, dmean, dvar from `first` on. first == 1:
// _MomentsGradAdd, whose input 0 (of x's shape) is added to dx as an AddN of the two adds them;
// first == 2: _MomentsGradAddScaled, whose input 0 times input 1 (per channel) is, as a Mul and
// then the AddN compute it. dx takes over input 0's buffer when the memory plan allows it.
template <class T>
void moments_grad(KernelContext& c, const ReduceAttrs& a, int first) {
  const MomentsGeometry g = moments_geometry<T>(c, a, first);
  const auto C = static_cast<std::size_t>(g.layout.channels);
  const auto& x = c.input_as<T>(first);
  for (int i = first + 1; i < first + 4; ++i)
    if (c.input_as<T>(i).size() != C)
      throw InvalidArgumentError("'" + c.op_name() + "': input " + std::to_string(i) + " has shape " +
                                 c.input(i).shape().to_string() + ", expected " + std::to_string(C) +
                                 " statistics for x of shape " + c.input(first).shape().to_string());
  if (first >= 1 && c.input_as<T>(0).shape() != x.shape())
    throw InvalidArgumentError("'" + c.op_name() + "': the addend's shape " + c.input(0).shape().to_string() +
                               " is not x's " + c.input(first).shape().to_string());
  if (first == 2 && !per_channel(c.input_as<T>(1).shape(), x.shape(), runtime_axis_mask(c, a.axes, x.dimension())))
    throw InvalidArgumentError("'" + c.op_name() + "': the addend's scale of shape " + c.input(1).shape().to_string() +
                               " is not one value per channel of x's " + c.input(first).shape().to_string());
  const double M = double(g.layout.outer) * double(g.layout.inner);
  kernels::Scratch<T> k(2 * C);
  const T *dmean = c.input_as<T>(first + 2).data(), *dvar = c.input_as<T>(first + 3).data();
  for (std::size_t j = 0; j < C; ++j) k.data()[j] = T(2 * double(dvar[j]) / M), k.data()[C + j] = T(dmean[j] / M);
  const T* addend = first >= 1 ? c.input_as<T>(0).data() : nullptr;
  const T* addend_scale = first == 2 ? c.input_as<T>(1).data() : nullptr;
  auto dx = first >= 1 ? c.forward_input_or_allocate<T>(0, 0) : c.allocate_output_like<T>(0, first);
  kernels::channel_affine(x.data(), k.data(), c.input_as<T>(first + 1).data(), k.data() + C, g.layout, dx.data(),
                          addend, addend_scale);
}

}  // namespace

Tensor reduce_sum(const Tensor& x, std::vector<int> axes, bool keepdims, const std::string& name) {
  return detail::build1("Sum", {x}, ReduceAttrs{std::move(axes), keepdims}, name);
}
Tensor reduce_mean(const Tensor& x, std::vector<int> axes, bool keepdims, const std::string& name) {
  return detail::build1("Mean", {x}, ReduceAttrs{std::move(axes), keepdims}, name);
}
Tensor reduce_max(const Tensor& x, std::vector<int> axes, bool keepdims, const std::string& name) {
  return detail::build1("Max", {x}, ReduceAttrs{std::move(axes), keepdims}, name);
}
Tensor reduce_min(const Tensor& x, std::vector<int> axes, bool keepdims, const std::string& name) {
  return detail::build1("Min", {x}, ReduceAttrs{std::move(axes), keepdims}, name);
}
Tensor argmax(const Tensor& x, int axis, DType output_type, const std::string& name) {
  return detail::build1("ArgMax", {x}, ArgMaxAttrs{axis, output_type}, name);
}

namespace nn {
std::pair<Tensor, Tensor> moments(const Tensor& x, std::vector<int> axes, bool keepdims, const std::string& name) {
  const int rank = x.shape().rank();
  if (rank >= 0) {
    try {
      for (int& a : axes) a = detail::resolve_axis(a, rank);
    } catch (const ValueError& e) {
      throw ValueError("moments on '" + x.name() + "' of shape " + x.shape().to_string() + ": " + e.what());
    }
    if (axes.empty())
      for (int a = 0; a < rank; ++a) axes.push_back(a);
  }
  name_scope ns(name.empty() ? "moments" : name);
  Tensor mean, variance;
  if (rank >= 0 && is_floating(x.dtype()) && moments_op_applies(x.shape(), axis_mask(axes, rank))) {
    const Operation m = build_op("Moments", {x}, ReduceAttrs{axes, true}, "Moments");
    mean = identity(m.output(0), "mean");
    variance = identity(m.output(1), "variance");
  } else {
    mean = reduce_mean(x, axes, true, "mean");
    variance = reduce_mean(squared_difference(x, stop_gradient(mean)), axes, true, "variance");
  }
  if (!keepdims) {
    mean = squeeze(mean, axes);
    variance = squeeze(variance, axes);
  }
  return {mean, variance};
}
}  // namespace nn

void register_reduction_ops(OpRegistry& r) {
  r.add({.type = "Sum",
         .shape_fn = reduce_shape,
         .kernels = kernels_with<ReduceAttrs, KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { reduce_kernel<Reduction::sum, T>(c, a); }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           return OptionalTensors{sum_grad(op, *dy[0])};
         },
         .attr_codec = reduce_codec});
  // d mean / dx = dy / n, n = size(x) / size(y) elements reduced into each output. Divided before
  // it is broadcast (TF divides after): the same values, one division per output element.
  r.add({.type = "Mean",
         .shape_fn = reduce_shape,
         .kernels = kernels_with<ReduceAttrs, KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { reduce_kernel<Reduction::mean, T>(c, a); }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           const Tensor x = op.inputs()[0], y = op.output(0), g = *dy[0];
           if (x.shape().is_fully_defined() && y.shape().is_fully_defined())
             return OptionalTensors{sum_grad(
                 op, g / static_cast<double>(x.shape().num_elements() /
                                             std::max<std::int64_t>(1, y.shape().num_elements())))};
           return OptionalTensors{sum_grad(op, g / (cast(size(x), g.dtype()) / cast(size(y), g.dtype())))};
         },
         .attr_codec = reduce_codec});
  // d max / dx: dy goes to the elements equal to the result, shared equally among ties (TF).
  const GradFn min_or_max_grad = [](const Operation& op, const OptionalTensors& dy) {
    const Tensor x = op.inputs()[0], kept = keepdims_shape(op);
    const Tensor selected = cast(equal(reshape(op.output(0), kept), x), x.dtype());
    const Tensor ties = reduce_sum(selected, op.attrs<ReduceAttrs>().axes, true);
    return OptionalTensors{reshape(*dy[0], kept) * selected / ties};
  };
  r.add({.type = "Max",
         .shape_fn = reduce_shape,
         .kernels = kernels_with<ReduceAttrs, KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { reduce_kernel<Reduction::max, T>(c, a); }),
         .gradient = min_or_max_grad,
         .attr_codec = reduce_codec});
  r.add({.type = "Min",
         .shape_fn = reduce_shape,
         .kernels = kernels_with<ReduceAttrs, KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { reduce_kernel<Reduction::min, T>(c, a); }),
         .gradient = min_or_max_grad,
         .attr_codec = reduce_codec});

  // Moments(x) -> (mean, variance): the biased variance (divided by the count, like nn::moments'
  // composed form), both in one op: x is read from memory once, per block of elements sums around a
  // shift near the block's mean, merged in block order (Chan et al.; kernels/batch_norm.hpp,
  // bit-identical for any thread count). NaN for an empty reduction. The kept axes must be adjacent.
  // The mean's gradient does not flow through the variance (nn::moments' stop_gradient):
  // dx = dmean / M + dvar * 2 (x - mean) / M, M elements reduced into each statistic (MomentsGrad).
  r.add({.type = "Moments",
         .shape_fn =
             [](const InferenceContext& c) {
               const auto specs = reduce_shape(c);
               if (!is_floating(c.dtypes[0]))
                 throw TypeError(std::string("Moments needs a float input, got ") + dtype_name(c.dtypes[0]));
               if (!c.shapes[0].has_rank() || !kept_axes_adjacent(axis_mask(c.attrs<ReduceAttrs>().axes, c.shapes[0].rank())))
                 throw ValueError("Moments needs a known rank and kept axes next to each other, got shape " +
                                  c.shapes[0].to_string());
               return std::vector<TensorSpec>{specs[0], specs[0]};
             },
         .kernels = kernels_with<ReduceAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const ReduceAttrs& a) {
           const MomentsGeometry g = moments_geometry<T>(c, a);
           auto mean = c.allocate_output<T>(0, g.stat_dims);
           auto variance = c.allocate_output<T>(1, g.stat_dims);
           kernels::batch_moments(c.input_as<T>(0).data(), g.layout, mean.data(), variance.data());
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{detail::build1("MomentsGrad", {op.inputs()[0], op.output(0), *dy[0], *dy[1]},
                                                     op.attrs<ReduceAttrs>(), "")};
             },
         .attr_codec = reduce_codec});
  // MomentsGrad(x, mean, dmean, dvar) -> dx = (2 dvar / M) * (x - mean) + dmean / M, one pass.
  // Its own gradient (second derivatives through nn::moments), for g = d loss / d dx and sums S
  // over the reduced axes: d x = g * 2 dvar / M, d mean = -S(g) * 2 dvar / M,
  // d dmean = S(g) / M, d dvar = S(g * (x - mean)) * 2 / M.
  r.add({.type = "MomentsGrad",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 4);
               return detail::one(c.dtypes[0], c.shapes[0]);
             },
         .kernels = kernels_with<ReduceAttrs, KILN_FLOAT_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { moments_grad<T>(c, a, 0); }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const auto& a = op.attrs<ReduceAttrs>();
               const std::vector<Tensor> in = op.inputs();
               const Tensor &x = in[0], &mean = in[1], &dvar = in[3], g = *dy[0];
               const Tensor kept = keepdims_shape(op), stats = shape_of(mean);
               const Tensor count = x.shape().is_fully_defined() && mean.shape().is_fully_defined()
                                        ? scalar_like(double(x.shape().num_elements()) /
                                                          double(std::max<std::int64_t>(1, mean.shape().num_elements())),
                                                      x)
                                        : cast(size(x), x.dtype()) / cast(size(mean), x.dtype());
               const Tensor scale = reshape(dvar, kept) * 2.0 / count;  // per channel, broadcasts over x
               const Tensor sum_g = reduce_sum(g, a.axes, true);
               return OptionalTensors{g * scale, reshape(-sum_g * scale, stats), reshape(sum_g / count, stats),
                                      reshape(reduce_sum(g * (x - reshape(mean, kept)), a.axes, true) * 2.0 / count,
                                              stats)};
             },
         .attr_codec = reduce_codec});

  // _MomentsGradAdd(addend, x, mean, dmean, dvar): AddN(MomentsGrad(x, mean, dmean, dvar), addend)
  // in one op (either order), which the plan runs in place of the pair when nothing else reads
  // the MomentsGrad (framework/simplify.hpp), with its attributes: dx is added to the addend as it
  // is written, never stored alone, in the addend's buffer when it is free; bit for bit the pair's
  // result. Never built by gradients, so not differentiable.
  r.add({.type = "_MomentsGradAdd",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 5);
               if (c.dtypes[0] != c.dtypes[1] || !c.shapes[0].is_compatible_with(c.shapes[1]))
                 throw ValueError("the addend must have x's dtype and shape, got " + c.shapes[0].to_string() +
                                  " for x of shape " + c.shapes[1].to_string());
               return detail::one(c.dtypes[1], c.shapes[1].merge_with(c.shapes[0]));
             },
         .kernels = kernels_with<ReduceAttrs, KILN_FLOAT_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { moments_grad<T>(c, a, 1); }),
         .not_differentiable = true,
         .forwards_input = true,
         .attr_codec = reduce_codec});

  // _MomentsGradAddScaled(a, s, x, mean, dmean, dvar): AddN(MomentsGrad(x, mean, dmean, dvar),
  // Mul(a, s)) in one op, s one value per channel of x (broadcast over the reduced axes), which
  // the plan runs in place of the pair when nothing else reads the MomentsGrad and the product is
  // not otherwise stored (framework/simplify.hpp): a * s is formed and added as dx is written,
  // each step rounded as the Mul and the AddN round it; bit for bit their result. Never built by
  // gradients, so not differentiable.
  r.add({.type = "_MomentsGradAddScaled",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 6);
               if (c.dtypes[0] != c.dtypes[2] || c.dtypes[1] != c.dtypes[2])
                 throw TypeError("the addend and its scale must have x's dtype");
               if (!c.shapes[0].is_compatible_with(c.shapes[2]))
                 throw ValueError("the addend must have x's shape, got " + c.shapes[0].to_string() + " for x of shape " +
                                  c.shapes[2].to_string());
               const Shape x = c.shapes[2].merge_with(c.shapes[0]);
               if (x.is_fully_defined() && c.shapes[1].is_fully_defined() &&
                   !per_channel(c.shapes[1].dims(), x.dims(), axis_mask(c.attrs<ReduceAttrs>().axes, x.rank())))
                 throw ValueError("the addend's scale of shape " + c.shapes[1].to_string() +
                                  " is not one value per channel of x's " + x.to_string());
               return detail::one(c.dtypes[2], x);
             },
         .kernels = kernels_with<ReduceAttrs, KILN_FLOAT_TYPES>(
             []<class T>(KernelContext& c, const ReduceAttrs& a) { moments_grad<T>(c, a, 2); }),
         .not_differentiable = true,
         .forwards_input = true,
         .attr_codec = reduce_codec});

  r.add({.type = "ReducedShape",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               return detail::one(int32, c.shapes[0]);
             },
         .kernels = kernels_with<ReduceAttrs, std::int32_t>([]<class T>(KernelContext& c, const ReduceAttrs& a) {
           const auto& in = c.input_as<std::int32_t>(0);
           const auto mask = runtime_axis_mask(c, a.axes, in.size());
           auto s = c.allocate_output_like<std::int32_t>(0, 0);
           for (std::size_t k = 0; k < s.size(); ++k) s[k] = mask[k] ? 1 : in[k];
         }),
         .not_differentiable = true,
         .attr_codec = reduce_codec});

  // ArgMax: x viewed as [outer, n, inner]; out[o, i] = the first r maximising x[o, r, i], or the
  // first NaN (NumPy's np.argmax: NaN counts as the maximum). The scan over r is the outer loop so
  // that each step reads one contiguous row of `inner` values.
  r.add({.type = "ArgMax",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const auto& a = c.attrs<ArgMaxAttrs>();
               if (a.output_type != int32 && a.output_type != int64)
                 throw TypeError(std::string("output_type must be int32 or int64, got ") +
                                 dtype_name(a.output_type));
               const Shape& s = c.shapes[0];
               if (!s.has_rank()) return detail::one(a.output_type, s);
               auto d = s.dims();
               d.erase(d.begin() + detail::resolve_axis(a.axis, s.rank()));
               return detail::one(a.output_type, Shape(d));
             },
         .kernels = kernels_with<ArgMaxAttrs, KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c, const ArgMaxAttrs& a) {
           const auto& x = c.input_as<T>(0);
           Dims dims(x.shape().begin(), x.shape().end());
           const auto r = static_cast<int>(dims.size());
           if (a.axis < -r || a.axis >= r)
             throw InvalidArgumentError("'" + c.op_name() + "' (op: 'ArgMax'): axis " +
                                        std::to_string(a.axis) + " is out of range for rank " +
                                        std::to_string(r));
           const auto ax = static_cast<std::size_t>(a.axis < 0 ? a.axis + r : a.axis);
           const std::size_t n = dims[ax], outer = product(dims, 0, ax),
                             inner = product(dims, ax + 1, dims.size());
           if (n == 0)
             throw InvalidArgumentError("'" + c.op_name() + "' (op: 'ArgMax'): reduction axis " +
                                        std::to_string(ax) + " is empty in shape " +
                                        c.input(0).shape().to_string());
           std::vector<std::size_t> best(outer * inner, 0);
           for (std::size_t o = 0; o < outer; ++o) {
             const T* base = x.data() + o * n * inner;
             std::size_t* b = best.data() + o * inner;
             for (std::size_t k = 1; k < n; ++k)
               for (std::size_t i = 0; i < inner; ++i)
                 if (const T v = base[k * inner + i], m = base[b[i] * inner + i];
                     v > m || (is_nan(v) && !is_nan(m)))
                   b[i] = k;
           }
           dims.erase(dims.begin() + static_cast<std::ptrdiff_t>(ax));
           c.set_output(0, visit_dtype(a.output_type, [&]<class I>() {
                          xt::xarray<I> y = xt::xarray<I>::from_shape(dims);
                          std::transform(best.begin(), best.end(), y.data(),
                                         [](std::size_t v) { return static_cast<I>(v); });
                          return Array(std::move(y));
                        }));
         }),
         .not_differentiable = true,
         .attr_codec = attr_codec<ArgMaxAttrs>([](auto& io, auto& a) {
           io(a.axis);
           io(a.output_type);
         })});
}

}  // namespace kiln
