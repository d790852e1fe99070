#pragma once
// nn::moments of the global batch: the union over ranks of every rank's x (synchronized batch
// normalization's statistics).
//
//   auto m = distributed::synchronized_moments(x, {0, 1, 2});   // x [n_r, H, W, C] on rank r
//   m.mean, m.variance   // [C], the same on every rank: the moments of the concatenated batches
//   m.count              // scalar: the number of elements per channel over all ranks
//
// Chan et al.'s parallel merge, composed from registered ops (so the gradients, including the
// cross-rank terms, come from the AllReduce gradient): on each rank, the count n_r, the local mean
// m_r and the centred sum of squares M2_r = sum (x - m_r)^2 over `axes`; then
//   N = sum_r n_r, mean = sum_r n_r m_r / N                      (one AllReduce: [n_r m_r, n_r])
//   M2 = sum_r (M2_r + n_r (m_r - mean)^2), variance = M2 / N    (a second AllReduce)
// The variance is the biased one, like nn::moments. Centring on the local mean keeps the variance
// accurate when the data sit at a large offset (1e4 in float32). With one process the collectives
// are copies and the result is nn::moments' up to rounding (the layer uses nn::moments itself then).
//
// x: float32 or float64 of known rank; `axes` as nn::moments (empty: all; negative count from the
// end); the sizes of the other axes must be known at build time (ValueError otherwise). Every rank
// must call it on the same graph position with tensors of the same non-reduced shape.
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::distributed {

struct SynchronizedMoments {
  Tensor mean;      // keepdims as requested
  Tensor variance;  // biased
  Tensor count;     // scalar, elements per channel over all ranks (x's dtype)
};

SynchronizedMoments synchronized_moments(const Tensor& x, std::vector<int> axes, bool keepdims = false,
                                         const std::string& name = "");

}  // namespace kiln::distributed
