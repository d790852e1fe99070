#include "distributed/synchronized_moments.hpp"

#include "distributed/collective_ops.hpp"
#include "framework/errors.hpp"
#include "framework/ops.hpp"

namespace kiln::distributed {

SynchronizedMoments synchronized_moments(const Tensor& x, std::vector<int> axes, bool keepdims,
                                         const std::string& name) {
  const int rank = x.shape().rank();
  const std::string where = "synchronized_moments on '" + x.name() + "' of shape " + x.shape().to_string();
  if (rank < 0) throw ValueError(where + ": the rank must be known");
  if (!is_floating(x.dtype())) throw TypeError(where + ": needs float32 or float64, got " + dtype_name(x.dtype()));
  for (int& a : axes) {
    if (a < -rank || a >= rank) throw ValueError(where + ": axis " + std::to_string(a) + " is out of range");
    if (a < 0) a += rank;
  }
  if (axes.empty())
    for (int a = 0; a < rank; ++a) axes.push_back(a);
  std::vector<std::int64_t> kept;  // the statistics' shape with keepdims
  for (int a = 0; a < rank; ++a) {
    const bool reduced = std::find(axes.begin(), axes.end(), a) != axes.end();
    if (!reduced && x.shape()[a] < 0)
      throw ValueError(where + ": the size of non-reduced axis " + std::to_string(a) + " must be known");
    kept.push_back(reduced ? 1 : x.shape()[a]);
  }
  const Shape stats_shape(kept);
  const std::int64_t channels = stats_shape.num_elements();

  name_scope ns(name.empty() ? "sync_moments" : name);
  const DType t = x.dtype();
  // n_r: elements per channel on this rank (the batch size may be known at run time only).
  const Tensor n = cast(size(x), t) / scalar(static_cast<double>(channels), t);
  const Tensor local_mean = reduce_mean(x, axes, true, "local_mean");
  // [n_r m_r (C values), n_r] summed over ranks in one collective.
  const Tensor totals = all_reduce(concat({reshape(n * local_mean, Shape{-1}), reshape(n, Shape{1})}, 0), Reduction::sum,
                                   "sum_and_count");
  const Tensor count = reshape(slice(totals, {channels}, {1}), Shape{}, "count");
  const Tensor mean = reshape(slice(totals, {0}, {channels}), stats_shape) / count;
  // M2_r + n_r (m_r - mean)^2: the centred sum of squares of this rank about the global mean. The
  // stop_gradients drop terms whose derivative is zero (sum (x - m_r) = 0; sum_r n_r (m_r - mean) = 0),
  // as nn::moments does for its mean.
  const Tensor local_m2 = reduce_sum(squared_difference(x, stop_gradient(local_mean)), axes, true, "local_m2");
  const Tensor m2 = all_reduce(local_m2 + n * squared_difference(local_mean, stop_gradient(mean)), Reduction::sum, "m2");
  Tensor out_mean = mean, variance = m2 / count;
  if (!keepdims) {
    out_mean = squeeze(out_mean, axes);
    variance = squeeze(variance, axes);
  }
  return {identity(out_mean, "mean"), identity(variance, "variance"), count};
}

}  // namespace kiln::distributed
