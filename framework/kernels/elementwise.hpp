#pragma once
// Elementwise kernels on contiguous buffers. Floating types go through xsimd batches; the functor
// must accept both T and xsimd::batch<T> (a generic lambda). Other types run a scalar loop.
// Broadcasting follows NumPy: shapes are right-aligned, size-1 dimensions stretch.
// Threads: map_unary and map_binary over at least kParallelElements elements run in chunks of
// kChunkElements on kiln's thread pool (elementwise, so results do not depend on the threads).
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>
#include <xtensor/xstorage.hpp>

#include "framework/thread_pool.hpp"

namespace kiln::kernels {

inline constexpr std::size_t kParallelElements = std::size_t{1} << 16;
inline constexpr std::size_t kChunkElements = std::size_t{1} << 14;

/// f(begin, end) over [0, n): on the pool in chunks when n is large, else one call.
template <class F>
void for_chunks(std::size_t n, const F& f) {
  if (n < kParallelElements) return f(std::size_t{0}, n);
  parallel_for(static_cast<std::int64_t>(n), static_cast<std::int64_t>(kChunkElements),
               [&](std::int64_t lo, std::int64_t hi) { f(static_cast<std::size_t>(lo), static_cast<std::size_t>(hi)); });
}

template <class T>
inline constexpr bool kSimd = std::is_same_v<T, float> || std::is_same_v<T, double>;

// ---- NaN-propagating lane operations for kernel functors: each takes scalars (any arithmetic
// type) or xsimd batches. xsimd::max / std::max return one operand when the other is NaN (x86's
// maxps returns its second operand), so maximum(NaN, x) would depend on the argument order; these
// return NaN whenever either float input is NaN, like NumPy's np.maximum and TF.

template <class V>
inline constexpr bool kIsBatch = false;
template <class T, class A>
inline constexpr bool kIsBatch<xsimd::batch<T, A>> = true;

/// True where v is NaN (always false for integers).
template <class V>
auto is_nan(const V& v) {
  if constexpr (kIsBatch<V>)
    return xsimd::isnan(v);
  else if constexpr (std::is_floating_point_v<V>)
    return v != v;  // NOLINT(misc-redundant-expression): the NaN test
  else
    return false;
}

/// c ? a : b, lane-wise for batches.
template <class C, class V>
V select(const C& c, const V& a, const V& b) {
  if constexpr (kIsBatch<V>)
    return xsimd::select(c, a, b);
  else
    return c ? a : b;
}

/// max(a, b); NaN when either is NaN (a + b is then NaN).
template <class V>
V maximum(const V& a, const V& b) {
  if constexpr (kIsBatch<V>)
    return xsimd::select(xsimd::isnan(a) || xsimd::isnan(b), a + b, xsimd::max(a, b));
  else if constexpr (std::is_floating_point_v<V>)
    return (a != a || b != b) ? a + b : (a < b ? b : a);  // NOLINT(misc-redundant-expression)
  else
    return a < b ? b : a;
}

/// min(a, b); NaN when either is NaN.
template <class V>
V minimum(const V& a, const V& b) {
  if constexpr (kIsBatch<V>)
    return xsimd::select(xsimd::isnan(a) || xsimd::isnan(b), a + b, xsimd::min(a, b));
  else if constexpr (std::is_floating_point_v<V>)
    return (a != a || b != b) ? a + b : (b < a ? b : a);  // NOLINT(misc-redundant-expression)
  else
    return b < a ? b : a;
}

/// xsimd's exp, expm1, tanh and log1p convert their argument to an integer on the way, which is
/// undefined for NaN and for huge magnitudes. These wrappers clamp the argument to [lo, hi], where
/// the function has already saturated in float and double, and put NaN back afterwards, so they are
/// defined for every input and propagate NaN. Scalars go to std::.
template <class V, class F>
V clamped_nan_safe(const V& x, double lo, double hi, F f) {
  const auto nan = xsimd::isnan(x);
  const V c = xsimd::select(nan, V(0), xsimd::min(xsimd::max(x, V(lo)), V(hi)));
  return xsimd::select(nan, x, f(c));
}
template <class V>
V exp(const V& x) {
  if constexpr (kIsBatch<V>)
    return clamped_nan_safe(x, -1000, 1000, [](const V& c) { return xsimd::exp(c); });
  else
    return std::exp(x);
}
template <class V>
V expm1(const V& x) {
  if constexpr (kIsBatch<V>)
    return clamped_nan_safe(x, -1000, 1000, [](const V& c) { return xsimd::expm1(c); });
  else
    return std::expm1(x);
}
template <class V>
V tanh(const V& x) {
  if constexpr (kIsBatch<V>)
    return clamped_nan_safe(x, -50, 50, [](const V& c) { return xsimd::tanh(c); });
  else
    return std::tanh(x);
}
/// log1p for arguments >= -1 (softplus's): NaN and +inf pass through.
template <class V>
V log1p(const V& x) {
  if constexpr (kIsBatch<V>) {
    const auto keep = xsimd::isnan(x) || x == V(std::numeric_limits<double>::infinity());
    return xsimd::select(keep, x, xsimd::log1p(xsimd::select(keep, V(0), x)));
  } else {
    return std::log1p(x);
  }
}

/// A gradient gated by a comparison on the op's input or output x (ReluGrad and friends): g where
/// `pass`, else g * 0 as TF computes it (g times the 0/1 mask), so a NaN or infinite g gives NaN;
/// NaN where x is NaN (the op's value is undefined there, so is its derivative). g - g is g * 0
/// without its sign: 0 for finite g, NaN for NaN or infinite g.
template <class C, class V>
V gate(const C& pass, const V& g, const V& x) {
  return select(pass, g, select(is_nan(x), x, g - g));
}

/// y[i] = f(x[i]).
template <class T, class R, class F>
void map_unary(const T* x, R* y, std::size_t n, F f) {
  for_chunks(n, [&](std::size_t i, std::size_t end) {
    if constexpr (kSimd<T> && std::is_same_v<T, R> && std::is_invocable_v<F, xsimd::batch<T>>) {
      constexpr std::size_t w = xsimd::batch<T>::size;
      for (; i + w <= end; i += w) f(xsimd::batch<T>::load_unaligned(x + i)).store_unaligned(y + i);
    }
    for (; i < end; ++i) y[i] = static_cast<R>(f(x[i]));
  });
}

/// sqrt of a value or of a batch.
template <class V>
V root(const V& v) {
  if constexpr (kIsBatch<V>)
    return xsimd::sqrt(v);
  else
    return std::sqrt(v);
}

/// update(g, x) for every i < n, with g = g[i] and x[r] = from[r][i] (std::array<V, N>), written
/// to to[r][i] (from[r] == to[r]: in place): V = a batch of T over whole vectors, T over each
/// chunk's tail. Chunks of at least `grain` elements on the pool (bounds independent of the
/// thread count).
template <class T, std::size_t N, class F>
void update_elements(const std::array<const T*, N>& from, const std::array<T*, N>& to, const T* g, std::size_t n,
                     std::size_t grain, F update) {
  const auto step = [&](auto v, std::size_t i) {  // v: the value type (T or a batch of T)
    using V = decltype(v);
    const auto load = [](const T* q) {
      if constexpr (std::is_same_v<V, T>)
        return *q;
      else
        return V::load_unaligned(q);
    };
    std::array<V, N> x;
    for (std::size_t r = 0; r < N; ++r) x[r] = load(from[r] + i);
    update(load(g + i), x);
    for (std::size_t r = 0; r < N; ++r) {
      if constexpr (std::is_same_v<V, T>)
        to[r][i] = x[r];
      else
        x[r].store_unaligned(to[r] + i);
    }
  };
  parallel_for(static_cast<std::int64_t>(n), static_cast<std::int64_t>(grain), [&](std::int64_t lo, std::int64_t hi) {
    auto i = static_cast<std::size_t>(lo);
    const auto end = static_cast<std::size_t>(hi);
    if constexpr (kSimd<T>)
      for (constexpr std::size_t w = xsimd::batch<T>::size; i + w <= end; i += w) step(xsimd::batch<T>{}, i);
    for (; i < end; ++i) step(T{}, i);
  });
}

/// Whether adding +0 changes one of x[0, n): a -0 (to +0) or a signalling NaN (quietened).
/// Integers: never. Reads x once (in chunks on the pool for large n), comparing bit patterns.
template <class T>
bool any_changed_by_adding_zero(const T* x, std::size_t n) {
  if constexpr (!kSimd<T>) {
    return false;
  } else {
    using I = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
    constexpr int kMantissa = std::numeric_limits<T>::digits - 1;  // 23 or 52 bits
    constexpr I kSign = std::numeric_limits<I>::min();             // -0: the sign bit alone
    constexpr I kQuiet = I(1) << (kMantissa - 1);                  // a NaN's quiet bit
    constexpr I kExponent = ~kSign & ~((I(1) << kMantissa) - 1);   // all ones: infinity or NaN
    constexpr I kPayload = kQuiet - 1;  // a signalling NaN: exponent all ones, quiet bit 0, payload not 0
    const auto changed = [&](auto b) {
      return b == kSign || (((b & (kExponent | kQuiet)) == kExponent) && ((b & kPayload) != 0));
    };
    std::atomic<bool> found{false};
    for_chunks(n, [&](std::size_t i, std::size_t end) {
      using B = xsimd::batch<T>;
      using BI = xsimd::batch<I>;
      constexpr std::size_t w = B::size;
      auto any = BI(0) != BI(0);  // all false
      for (; i + w <= end; i += w) any = any || changed(xsimd::bitwise_cast<BI>(B::load_unaligned(x + i)));
      bool tail = false;
      for (; i < end; ++i) tail |= changed(std::bit_cast<I>(x[i]));
      if (tail || xsimd::any(any)) found.store(true, std::memory_order_relaxed);
    });
    return found.load(std::memory_order_relaxed);
  }
}

/// map_binary's loop on the calling thread.
template <class T, class R, class F>
void map_binary_serial(const T* a, std::size_t a_step, const T* b, std::size_t b_step, R* y, std::size_t n, F f) {
  std::size_t i = 0;
  if constexpr (kSimd<T> && std::is_same_v<T, R> && std::is_invocable_v<F, xsimd::batch<T>, xsimd::batch<T>>) {
    using B = xsimd::batch<T>;
    constexpr std::size_t w = B::size;
    if (a_step && b_step) {
      for (; i + w <= n; i += w) f(B::load_unaligned(a + i), B::load_unaligned(b + i)).store_unaligned(y + i);
    } else if (a_step) {
      const B bv(*b);
      for (; i + w <= n; i += w) f(B::load_unaligned(a + i), bv).store_unaligned(y + i);
    } else if (b_step) {
      const B av(*a);
      for (; i + w <= n; i += w) f(av, B::load_unaligned(b + i)).store_unaligned(y + i);
    }
  }
  for (; i < n; ++i) y[i] = static_cast<R>(f(a[i * a_step], b[i * b_step]));
}

/// y[i] = f(a[i], b[i]), with either side optionally a single broadcast value (a_step/b_step 0).
template <class T, class R, class F>
void map_binary(const T* a, std::size_t a_step, const T* b, std::size_t b_step, R* y, std::size_t n, F f) {
  for_chunks(n, [&](std::size_t i, std::size_t end) {
    map_binary_serial(a + i * a_step, a_step, b + i * b_step, b_step, y + i, end - i, f);
  });
}

/// Dimensions, as xtensor keeps them (inline up to rank 4: no allocation).
using Extents = xt::svector<std::size_t, 4>;

/// NumPy broadcast of two shapes (the caller has checked compatibility). Where a dimension of a
/// is not 1 the result has it, so broadcast_shape(a, b) == b says that a broadcasts to b.
Extents broadcast_shape(const Extents& a, const Extents& b);
/// Whether a and b broadcast together (each trailing pair equal or one of them 1).
bool broadcastable(const Extents& a, const Extents& b);

/// Element strides of `in` (right-aligned into `out`), 0 along broadcast dimensions.
Extents broadcast_strides(const Extents& in, const Extents& out);

/// The broadcast of two operands over `out` with adjacent dimensions merged where both operands
/// step through them contiguously (or both repeat them), size-1 dimensions dropped: strides in
/// elements, 0 where an operand is broadcast.
struct BroadcastLoops {
  Extents dims, st_a, st_b;
};
BroadcastLoops broadcast_loops(const Extents& sa, const Extents& sb, const Extents& out);

/// Elements of the stack tile of a repeated short row (broadcast_binary).
inline constexpr std::size_t kRowTile = 512;

/// y = f(a, b) over the broadcast shape `out`. After broadcast_loops, rows along the innermost
/// merged dimension run through map_binary_serial (same shape, a scalar, a vector along the last
/// axes, a per-channel value over NCHW planes: all vectorised), in chunks of rows on the pool.
template <class T, class R, class F>
void broadcast_binary(const T* a, const Extents& sa, const T* b, const Extents& sb, R* y, const Extents& out, F f) {
  std::size_t total = 1;
  for (auto d : out) total *= d;
  if (total == 0) return;
  if (sa == sb) return map_binary(a, 1, b, 1, y, total, f);
  const BroadcastLoops l = broadcast_loops(sa, sb, out);
  const std::size_t r = l.dims.size();
  if (r <= 1) return map_binary(a, r ? l.st_a[0] : 0, b, r ? l.st_b[0] : 0, y, total, f);
  const std::size_t inner = l.dims[r - 1], rows = total / inner;
  const std::size_t grain = std::max<std::size_t>(1, kChunkElements / inner);
  const auto in_parallel = [&](const auto& run) {
    if (total < kParallelElements) return run(0, rows);
    parallel_for(static_cast<std::int64_t>(rows), static_cast<std::int64_t>(grain),
                 [&](std::int64_t lo, std::int64_t hi) { run(static_cast<std::size_t>(lo), static_cast<std::size_t>(hi)); });
  };
  // Short rows of one operand against one row the other repeats (a per-channel value over NHWC
  // rows): a call and an index update for every few vectors cost as much as the work (64x28x28x32
  // times [32]: 0.34 against 0.17 ms for equal shapes). That row tiled on the stack lets one call
  // cover kRowTile / inner rows.
  const bool a_repeats = l.st_a[0] == 0 && l.st_b[0] == inner, b_repeats = l.st_b[0] == 0 && l.st_a[0] == inner;
  if (r == 2 && inner * 4 <= kRowTile && l.st_a[1] == 1 && l.st_b[1] == 1 && (a_repeats || b_repeats)) {
    const T* row = a_repeats ? a : b;
    const T* full = a_repeats ? b : a;
    const std::size_t per_call = kRowTile / inner;
    return in_parallel([&](std::size_t lo, std::size_t hi) {
      T tile[kRowTile];
      for (std::size_t j = 0; j < per_call; ++j) std::copy(row, row + inner, tile + j * inner);
      for (std::size_t first = lo; first < hi; first += per_call) {
        const std::size_t n = std::min(per_call, hi - first) * inner;
        const T* part = full + first * inner;
        if (a_repeats)
          map_binary_serial<T>(tile, 1, part, 1, y + first * inner, n, f);
        else
          map_binary_serial<T>(part, 1, tile, 1, y + first * inner, n, f);
      }
    });
  }
  in_parallel([&](std::size_t lo, std::size_t hi) {
    Extents idx(r - 1, 0);  // the multi-index of row lo over the outer dimensions
    std::size_t off_a = 0, off_b = 0;
    for (std::size_t d = r - 1, rest = lo; d-- > 0;) {
      idx[d] = rest % l.dims[d], rest /= l.dims[d];
      off_a += idx[d] * l.st_a[d], off_b += idx[d] * l.st_b[d];
    }
    for (std::size_t row = lo; row < hi; ++row) {
      map_binary_serial(a + off_a, l.st_a[r - 1], b + off_b, l.st_b[r - 1], y + row * inner, inner, f);
      for (std::size_t d = r - 1; d-- > 0;) {  // the next row
        ++idx[d], off_a += l.st_a[d], off_b += l.st_b[d];
        if (idx[d] < l.dims[d]) break;
        off_a -= l.st_a[d] * l.dims[d], off_b -= l.st_b[d] * l.dims[d], idx[d] = 0;
      }
    }
  });
}

}  // namespace kiln::kernels
