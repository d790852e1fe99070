#pragma once
// Reduction kernels on contiguous row-major buffers: pairwise sums (NumPy's pairwise summation)
// and order-independent folds (max, min), over any set of axes.
//
// Sums: adding n values one by one into one accumulator has a rounding error that grows like n eps;
// adding them pairwise (split in halves, add the two sums) grows like log2(n) eps. The leaves are
// blocks of up to 128 values added with independent accumulators, so the inner loops stay
// vectorizable and the recursion costs nothing per element. Callers accumulate float32 in double
// (Acc = double), so float32 sums are exact to float32 precision for any practical n.
// Thread safety: pure functions of their arguments.
#include <algorithm>
#include <cstddef>
#include <functional>
#include <numeric>
#include <vector>

namespace kiln::kernels {

using Dims = std::vector<std::size_t>;

/// Product of d[first .. last).
inline std::size_t product(const Dims& d, std::size_t first, std::size_t last) {
  return std::accumulate(d.begin() + static_cast<std::ptrdiff_t>(first),
                         d.begin() + static_cast<std::ptrdiff_t>(last), std::size_t{1},
                         std::multiplies<>());
}

/// Leaf size of the pairwise recursion (NumPy's PW_BLOCKSIZE).
inline constexpr std::size_t kPairwiseBlock = 128;

/// Sum of f(x[i]) for i < n, pairwise: up to 128 values with eight interleaved accumulators
/// (combined as a balanced tree), more by halves split at a multiple of 8. f maps a T to an Acc.
template <class Acc, class T, class F>
Acc pairwise_sum(const T* x, std::size_t n, F f) {
  if (n < 8) {
    Acc s = 0;
    for (std::size_t i = 0; i < n; ++i) s += f(x[i]);
    return s;
  }
  if (n <= kPairwiseBlock) {
    Acc r[8];
    for (std::size_t j = 0; j < 8; ++j) r[j] = f(x[j]);
    std::size_t i = 8;
    for (; i + 8 <= n; i += 8)
      for (std::size_t j = 0; j < 8; ++j) r[j] += f(x[i + j]);
    Acc s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += f(x[i]);
    return s;
  }
  std::size_t half = n / 2;
  half -= half % 8;
  return pairwise_sum<Acc>(x, half, f) + pairwise_sum<Acc>(x + half, n - half, f);
}

/// Sum of x[i] for i < n, pairwise.
template <class Acc, class T>
Acc pairwise_sum(const T* x, std::size_t n) {
  return pairwise_sum<Acc>(x, n, [](T v) { return static_cast<Acc>(v); });
}

/// y[i] = sum over r < n of x[r * inner + i], for i < inner: pairwise over r. Blocks of up to 128
/// rows are added row by row (the loop over i is contiguous and vectorizes); their sums are added
/// pairwise. inner == 1 is pairwise_sum.
template <class Acc, class T>
void sum_rows(const T* x, std::size_t n, std::size_t inner, Acc* y) {
  if (inner == 1) {
    *y = pairwise_sum<Acc>(x, n);
    return;
  }
  if (n <= kPairwiseBlock) {
    std::fill(y, y + inner, Acc(0));
    for (std::size_t r = 0; r < n; ++r) {
      const T* xr = x + r * inner;
      for (std::size_t i = 0; i < inner; ++i) y[i] += static_cast<Acc>(xr[i]);
    }
    return;
  }
  const std::size_t half = n / 2;
  sum_rows(x, half, inner, y);
  std::vector<Acc> rest(inner);
  sum_rows(x + half * inner, n - half, inner, rest.data());
  for (std::size_t i = 0; i < inner; ++i) y[i] += rest[i];
}

/// x viewed as [outer, n, inner] -> [outer, inner], each the pairwise sum along n.
template <class Acc, class T>
std::vector<Acc> sum_middle(const T* x, std::size_t outer, std::size_t n, std::size_t inner) {
  std::vector<Acc> y(outer * inner);
  for (std::size_t o = 0; o < outer; ++o) sum_rows(x + o * n * inner, n, inner, y.data() + o * inner);
  return y;
}

/// x viewed as [outer, n, inner]: y[o, i] = f(...f(f(init, x[o,0,i]), x[o,1,i])..., x[o,n-1,i]),
/// for folds whose result does not depend on the order (max, min). Contiguous inner loop.
template <class Acc, class T, class F>
std::vector<Acc> fold_middle(const T* x, std::size_t outer, std::size_t n, std::size_t inner,
                             Acc init, F f) {
  std::vector<Acc> y(outer * inner, init);
  for (std::size_t o = 0; o < outer; ++o) {
    Acc* yr = y.data() + o * inner;
    for (std::size_t r = 0; r < n; ++r) {
      const T* xr = x + (o * n + r) * inner;
      for (std::size_t i = 0; i < inner; ++i) yr[i] = f(yr[i], static_cast<Acc>(xr[i]));
    }
  }
  return y;
}

/// Reduces x (row-major `dims`) over the axes where mask is nonzero; the result lists the kept
/// elements in row-major order (the reduced axes dropped). Adjacent axes of the same kind merge
/// (size-1 axes are dropped), so x is [g_0, g_1, ...] with kept and reduced groups alternating;
/// each reduced group is reduced by middle(src, outer, g_j, inner) -> std::vector<Acc> in turn,
/// innermost first. One buffer per reduced group; none per element.
template <class Acc, class T, class Middle>
std::vector<Acc> reduce_axes(const T* x, const Dims& dims, const std::vector<char>& mask,
                             Middle middle) {
  Dims g;
  std::vector<char> reduced;
  for (std::size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == 1) continue;
    if (!g.empty() && reduced.back() == mask[k])
      g.back() *= dims[k];
    else
      g.push_back(dims[k]), reduced.push_back(mask[k]);
  }
  std::vector<Acc> acc;
  bool folded = false;
  for (std::size_t j = g.size(); j-- > 0;) {
    if (!reduced[j]) continue;
    const std::size_t outer = product(g, 0, j), inner = product(g, j + 1, g.size());
    acc = folded ? middle(acc.data(), outer, g[j], inner) : middle(x, outer, g[j], inner);
    g[j] = 1;
    folded = true;
  }
  if (!folded) acc.assign(x, x + product(dims, 0, dims.size()));
  return acc;
}

/// Pairwise sums of x over the masked axes (see reduce_axes), accumulated in Acc.
template <class Acc, class T>
std::vector<Acc> reduce_sum(const T* x, const Dims& dims, const std::vector<char>& mask) {
  return reduce_axes<Acc>(x, dims, mask, [](const auto* src, std::size_t o, std::size_t n, std::size_t i) {
    return sum_middle<Acc>(src, o, n, i);
  });
}

/// An order-independent fold f(acc, value) from init over the masked axes (max, min).
template <class T, class F>
std::vector<T> reduce_fold(const T* x, const Dims& dims, const std::vector<char>& mask, T init, F f) {
  return reduce_axes<T>(x, dims, mask, [init, f](const T* src, std::size_t o, std::size_t n, std::size_t i) {
    return fold_middle(src, o, n, i, init, f);
  });
}

}  // namespace kiln::kernels
