#pragma once
// Reduction kernels on contiguous row-major buffers: pairwise sums (NumPy's pairwise summation)
// and order-independent folds (max, min), over any set of axes.
//
// Sums: adding n values one by one into one accumulator has a rounding error that grows like n eps;
// adding them pairwise (split in halves, add the two sums) grows like log2(n) eps. The leaves are
// blocks of up to 128 values added with independent accumulators, so the inner loops stay
// vectorizable and the recursion costs nothing per element. Callers accumulate float32 in double
// (Acc = double), so float32 sums are exact to float32 precision for any practical n.
// The sums read their values from a source `x`: a pointer, or any value type with x[i] and x + k
// (kernels/reduce_sources.hpp: ProductOf, the products of two arrays formed as they are read; a
// FillsBlocks source forms a block of values at a time: BroadcastSource).
// Thread safety: pure functions of their arguments; large sums split across kiln's pool with
// results independent of the thread count.
#include <algorithm>
#include <cstddef>
#include <functional>
#include <numeric>
#include <type_traits>
#include <vector>

#ifdef __AVX__
#include <immintrin.h>
#endif

#include <xtensor/xstorage.hpp>

#include "framework/kernels/reduce_sources.hpp"
#include "framework/kernels/scratch.hpp"
#include "framework/thread_pool.hpp"

namespace kiln::kernels {

using AxisMask = xt::svector<char, 4>;  // nonzero: the axis is reduced

/// Product of d[first .. last).
inline std::size_t product(const Dims& d, std::size_t first, std::size_t last) {
  return std::accumulate(d.begin() + static_cast<std::ptrdiff_t>(first),
                         d.begin() + static_cast<std::ptrdiff_t>(last), std::size_t{1},
                         std::multiplies<>());
}

/// Leaf size of the pairwise recursion (NumPy's PW_BLOCKSIZE).
inline constexpr std::size_t kPairwiseBlock = 128;
/// Rows at least this long are summed by sum_rows row after row rather than column group by group
/// (from 64 columns on streaming is the faster: 12.8 MB as [50176, 64] in 0.30 against 0.37 ms
/// when it is in cache, 0.68 against 0.97 ms from memory; 40 columns run alike either way).
inline constexpr std::size_t kStreamColumns = 64;

/// The conversion pairwise_sum(x, n) applies to each value.
template <class Acc>
struct CastTo {
  template <class V>
  Acc operator()(V v) const {
    return static_cast<Acc>(v);
  }
};

#ifdef __AVX__
/// Eight float values of the form kForm, form_value's at a[0..8), b[0..8) and m (all eight lanes
/// of mv), each step rounded to float as it rounds it (no FMA), widened to doubles in lo and hi.
template <Form kForm>
void widened_values(const float* a, const float* b, __m256 mv, __m256d& lo, __m256d& hi) {
  const __m256 x = _mm256_loadu_ps(a);
  __m256 p;
  if constexpr (kForm == Form::product) p = _mm256_mul_ps(x, _mm256_loadu_ps(b));
  if constexpr (kForm == Form::centered) p = _mm256_mul_ps(_mm256_sub_ps(x, mv), _mm256_loadu_ps(b));
  if constexpr (kForm == Form::scaled) p = _mm256_mul_ps(x, mv);
  lo = _mm256_cvtps_pd(_mm256_castps256_ps128(p)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1));
}

/// pairwise_sum of float values of the form kForm in double, m one value over the range: a
/// ProductOf<float> source, or a BroadcastSource<float> whose broadcast value is one over the
/// range. The leaves' eight accumulators sit in two AVX registers; the same roundings and
/// additions in the same order as the generic code, which GCC compiles to half the speed (12.8 MB
/// of NCHW planes in 0.45 against 0.23 ms on one core). b is unread (may be null) when scaled.
template <Form kForm>
double pairwise_product_sum(const float* a, const float* b, std::size_t n, float m = 0.f) {
  const auto value = [&](std::size_t i) { return form_value<kForm>(a, b, i, m); };
  if (n < 8) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(value(i));
    return s;
  }
  if (n <= kPairwiseBlock) {
    const __m256 mv = _mm256_set1_ps(m);
    const auto widened = [&](std::size_t i, __m256d& lo, __m256d& hi) {
      widened_values<kForm>(a + i, kForm == Form::scaled ? b : b + i, mv, lo, hi);  // b null when scaled
    };
    __m256d r0, r1, lo, hi;
    widened(0, r0, r1);
    std::size_t i = 8;
    for (; i + 8 <= n; i += 8) widened(i, lo, hi), r0 = _mm256_add_pd(r0, lo), r1 = _mm256_add_pd(r1, hi);
    alignas(32) double r[8];
    _mm256_store_pd(r, r0), _mm256_store_pd(r + 4, r1);
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += static_cast<double>(value(i));
    return s;
  }
  std::size_t half = n / 2;
  half -= half % 8;
  const float* b_half = kForm == Form::scaled ? b : b + half;  // b is null for the scaled form
  return pairwise_product_sum<kForm>(a, b, half, m) + pairwise_product_sum<kForm>(a + half, b_half, n - half, m);
}
#endif

#ifdef __AVX__
/// acc[i] += value(k, i) for k < K in row order, i < len: K rows of float values of the form kForm
/// (ColumnRows: m one value per column) added into double sums, eight columns at a time in AVX
/// registers with the columns' m loaded once for the K rows. The same roundings and additions
/// in the same order as the generic loop, which GCC vectorizes as wide as the double sums (four
/// values a vector) and which loads m again for every row: one core, [50176, 64] (x - m) * dy
/// summed in 0.77-0.84 against 0.97-1.02 ms, dy * scale in 0.38-0.41 against 0.42-0.45 ms.
template <std::size_t K, Form kForm>
void add_column_rows(double* __restrict acc, const ColumnRows<float, kForm>& rows, std::size_t len) {
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 mv = _mm256_loadu_ps(rows.m + i);
    __m256d lo = _mm256_loadu_pd(acc + i), hi = _mm256_loadu_pd(acc + i + 4), vlo, vhi;
    for (std::size_t k = 0; k < K; ++k) {
      const std::size_t e = k * rows.inner + i;
      widened_values<kForm>(rows.a + e, kForm == Form::scaled ? rows.b : rows.b + e, mv, vlo, vhi);  // b null when scaled
      lo = _mm256_add_pd(lo, vlo), hi = _mm256_add_pd(hi, vhi);
    }
    _mm256_storeu_pd(acc + i, lo);
    _mm256_storeu_pd(acc + i + 4, hi);
  }
  for (; i < len; ++i) {
    double s = acc[i];
    for (std::size_t k = 0; k < K; ++k) s += static_cast<double>(rows.at(k, i));
    acc[i] = s;
  }
}
#endif

/// Sum of f(x[i]) for i < n, pairwise: up to 128 values with eight interleaved accumulators
/// (combined as a balanced tree), more by halves split at a multiple of 8. f maps a value of x to
/// an Acc.
template <class Acc, class Src, class F>
Acc pairwise_sum(Src x, std::size_t n, F f) {
#ifdef __AVX__
  if constexpr (std::is_same_v<Src, ProductOf<float>> && std::is_same_v<F, CastTo<double>>)
    return pairwise_product_sum<Form::product>(x.a, x.b, n);
  if constexpr (std::is_same_v<Src, ConstantRun<float, Form::centered>> && std::is_same_v<F, CastTo<double>>)
    return pairwise_product_sum<Form::centered>(x.a, x.b, n, x.m);
  if constexpr (std::is_same_v<Src, ConstantRun<float, Form::scaled>> && std::is_same_v<F, CastTo<double>>)
    return pairwise_product_sum<Form::scaled>(x.a, x.b, n, x.m);
#endif
  if constexpr (BroadcastFormed<Src>) {
    ConstantRun<typename Src::value_type, Src::form> run;
    if (x.constant_run(n, run)) return pairwise_sum<Acc>(run, n, f);
  }
  if constexpr (FillsBlocks<Src>)
    if (n <= kPairwiseBlock) {
      using V = std::remove_cvref_t<decltype(x[0])>;
      V block[kPairwiseBlock];
      x.fill(block, n);
      return pairwise_sum<Acc>(static_cast<const V*>(block), n, f);
    }
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
template <class Acc, class Src>
Acc pairwise_sum(Src x, std::size_t n) {
  return pairwise_sum<Acc>(x, n, CastTo<Acc>{});
}

/// The ColumnRows a BroadcastFormed source gives (a placeholder type for other sources).
template <class Src>
struct ColumnRowsOfT {
  using type = char;
};
template <BroadcastFormed Src>
struct ColumnRowsOfT<Src> {
  using type = ColumnRows<typename Src::value_type, Src::form>;
};
template <class Src>
using ColumnRowsOf = typename ColumnRowsOfT<Src>::type;

/// A buffer of at least n values of this thread's, kept between calls (a FillsBlocks source's
/// values; it grows to the largest block, never shrinks).
template <class V>
V* thread_buffer(std::size_t n) {
  thread_local std::vector<V> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

/// The workspace sum_rows(x, n, inner, y, work) needs: a row of partial sums per level of its
/// recursion (the larger half, n - n/2, is the deeper).
inline std::size_t sum_rows_work(std::size_t n, std::size_t inner) {
  std::size_t levels = 0;
  for (; n > kPairwiseBlock; n -= n / 2) ++levels;
  return inner == 1 ? 0 : levels * inner;
}

/// y[i] = sum over r < n of x[r * inner + i], for i < inner: pairwise over r. Blocks of up to 128
/// rows are added row by row (the loop over i is contiguous and vectorizes); their sums are added
/// pairwise, the right halves' in `work` (sum_rows_work(n, inner) elements). inner == 1 is
/// pairwise_sum.
template <class Acc, class Src>
void sum_rows(Src x, std::size_t n, std::size_t inner, Acc* y, Acc* work) {
  if (inner == 1) {
    *y = pairwise_sum<Acc>(x, n);
    return;
  }
  if (n <= kPairwiseBlock) {
    // Each y[i] adds rows 0..n-1 in order, from zero. Wide rows stream: in column chunks whose
    // sums stay in L1 (16 KB of Acc), each row's chunk is added in turn, so x is read in
    // contiguous runs. (Groups of columns walked down the rows would read x with a stride of a
    // row: one cache line per row per group, and a new page per row for rows of 4 KB or more;
    // 37 against 25 us for a 256x1024 float sum.) Narrow rows: groups of columns whose accumulators
    // stay in registers for the whole block (independent chains: the adds overlap), then one at
    // a time. A source whose broadcast value varies by column only (NHWC's per-channel mean or
    // scale: ColumnRows) forms each value as it adds it; others (FillsBlocks) form their values
    // into a buffer of this thread's, kept between calls: wide rows a visit's rows at a time, narrow
    // ones the whole block. (One core, [50176, 64] dy * scale: 0.72 ms formed a block at a time,
    // 0.38 as added, 0.28 for a stored tensor; [50176, 32]: 0.40, 0.17, 0.14.)
    [[maybe_unused]] ColumnRowsOf<Src> formed{};
    [[maybe_unused]] bool by_column = false;
    if constexpr (BroadcastFormed<Src>) by_column = x.column_rows(inner, formed);
    if (inner >= kStreamColumns) {
      constexpr std::size_t kChunk = 16384 / sizeof(Acc);
      for (std::size_t i0 = 0; i0 < inner; i0 += kChunk) {
        const std::size_t len = std::min(kChunk, inner - i0);
        Acc* __restrict acc = y + i0;
        std::fill(acc, acc + len, Acc(0));
        // Rows r..r+K-1 per visit of the sums, added in row order: value(k, i) is row r + k's
        // value in column i0 + i.
        const auto add = [&]<std::size_t K>(std::integral_constant<std::size_t, K>, auto value) {
          for (std::size_t i = 0; i < len; ++i) {
            Acc s = acc[i];
            for (std::size_t k = 0; k < K; ++k) s += static_cast<Acc>(value(k, i));
            acc[i] = s;
          }
        };
        const auto rows = [&]<std::size_t K>(std::size_t r, std::integral_constant<std::size_t, K> k) {
          if constexpr (BroadcastFormed<Src>)
            if (by_column) {  // (by value: stores to acc cannot change what it reads)
              const auto rows_here = formed.from(r, i0);
#ifdef __AVX__
              if constexpr (std::is_same_v<Acc, double> && std::is_same_v<typename Src::value_type, float>)
                return add_column_rows<K>(acc, rows_here, len);
#endif
              return add(k, [rows_here](std::size_t j, std::size_t i) { return rows_here.at(j, i); });
            }
          if constexpr (FillsBlocks<Src>) {
            using V = std::remove_cvref_t<decltype(x[0])>;
            V* buf = thread_buffer<V>(K * len);
            if (len == inner)
              (x + r * inner).fill(buf, K * len);  // the K rows are contiguous
            else
              for (std::size_t j = 0; j < K; ++j) (x + ((r + j) * inner + i0)).fill(buf + j * len, len);
            add(k, [buf, len](std::size_t j, std::size_t i) { return buf[j * len + i]; });
          } else {
            const Src xr = x + (r * inner + i0);
            add(k, [&](std::size_t j, std::size_t i) { return xr[j * inner + i]; });
          }
        };
        std::size_t r = 0;
        for (; r + 4 <= n; r += 4) rows(r, std::integral_constant<std::size_t, 4>{});
        for (; r < n; ++r) rows(r, std::integral_constant<std::size_t, 1>{});
      }
      return;
    }
    if constexpr (FillsBlocks<Src>)
      if (!by_column) {
        using V = std::remove_cvref_t<decltype(x[0])>;
        V* block = thread_buffer<V>(n * inner);
        x.fill(block, n * inner);
        return sum_rows(static_cast<const V*>(block), n, inner, y, work);
      }
    std::size_t i = 0;
    const auto columns = [&]<std::size_t K>(std::integral_constant<std::size_t, K>) {
      for (; i + K <= inner; i += K) {
        Acc acc[K] = {};
        for (std::size_t r = 0; r < n; ++r) {
          if constexpr (BroadcastFormed<Src>) {  // by_column (else the block was filled above)
            for (std::size_t j = 0; j < K; ++j) acc[j] += static_cast<Acc>(formed.at(r, i + j));
          } else {
            const Src xr = x + (r * inner + i);
            for (std::size_t j = 0; j < K; ++j) acc[j] += static_cast<Acc>(xr[j]);
          }
        }
        std::copy(acc, acc + K, y + i);
      }
    };
    columns(std::integral_constant<std::size_t, 32>{});
    columns(std::integral_constant<std::size_t, 8>{});
    columns(std::integral_constant<std::size_t, 1>{});
    return;
  }
  const std::size_t half = n / 2;
  sum_rows(x, half, inner, y, work);  // done with work before the right half takes it
  Acc* rest = work;
  sum_rows(x + half * inner, n - half, inner, rest, work + inner);
  for (std::size_t i = 0; i < inner; ++i) y[i] += rest[i];
}

/// The same with its workspace from the scratch pool (on the calling thread).
template <class Acc, class Src>
void sum_rows(Src x, std::size_t n, std::size_t inner, Acc* y) {
  Scratch<Acc> work(sum_rows_work(n, inner));
  sum_rows(x, n, inner, y, work.data());
}

/// Elements per chunk of a reduction split across threads.
inline constexpr std::size_t kReduceGrain = std::size_t{1} << 15;

/// sum_rows on up to 8 threads, with the same result: the top levels of its recursion (each node
/// splits its rows in halves, n/2 and n - n/2) are unrolled into up to 8 subtrees summed in
/// parallel, whose results are then added as the recursion adds them (left += right, bottom up).
template <class Acc, class Src>
void sum_rows_parallel(Src x, std::size_t n, std::size_t inner, Acc* y) {
  int depth = 3;  // every split node must have more than kPairwiseBlock rows, as in sum_rows
  while (depth > 0 && (n >> (depth - 1)) <= 2 * kPairwiseBlock) --depth;
  const std::size_t leaves = std::size_t{1} << depth;
  if (inner == 1 || depth == 0 || n * inner < 2 * kReduceGrain || num_threads() == 1) {
    sum_rows(x, n, inner, y);
    return;
  }
  std::size_t bounds[9] = {0};  // leaf j covers rows [bounds[j], bounds[j + 1])
  bounds[leaves] = n;
  for (std::size_t step = leaves; step > 1; step /= 2)
    for (std::size_t j = 0; j < leaves; j += step)
      bounds[j + step / 2] = bounds[j] + (bounds[j + step] - bounds[j]) / 2;
  // The partial sums, then each leaf's workspace: taken here, so no chunk takes scratch.
  const std::size_t work = sum_rows_work(n - n / 2, inner);  // enough for the largest leaf
  Scratch<Acc> part(leaves * (inner + work));
  Acc* works = part.data() + leaves * inner;
  parallel_for(static_cast<std::int64_t>(leaves), 1, [&](std::int64_t lo, std::int64_t hi) {
    for (auto j = static_cast<std::size_t>(lo); j < static_cast<std::size_t>(hi); ++j)
      sum_rows(x + bounds[j] * inner, bounds[j + 1] - bounds[j], inner, part.data() + j * inner, works + j * work);
  });
  for (std::size_t step = 1; step < leaves; step *= 2)
    for (std::size_t j = 0; j < leaves; j += 2 * step) {
      Acc *left = part.data() + j * inner, *right = part.data() + (j + step) * inner;
      for (std::size_t i = 0; i < inner; ++i) left[i] += right[i];
    }
  std::copy(part.data(), part.data() + inner, y);
}

/// x viewed as [outer, n, inner] -> y [outer, inner], each the pairwise sum along n. Large sums
/// with several outputs split across threads (independent outputs, or sum_rows_parallel; a single
/// full sum, inner == outer == 1, runs on the calling thread): the same result for any thread count.
template <class Acc, class Src>
void sum_middle(Src x, std::size_t outer, std::size_t n, std::size_t inner, Acc* y) {
  if (outer == 1) return sum_rows_parallel(x, n, inner, y);
  const std::size_t per = std::max<std::size_t>(1, n * inner), work = sum_rows_work(n, inner);
  const int workers = num_threads();
  Scratch<Acc> works(static_cast<std::size_t>(workers) * work);  // one workspace per thread
  parallel_for_workers(static_cast<std::int64_t>(outer), static_cast<std::int64_t>(std::max<std::size_t>(1, kReduceGrain / per)),
                       workers, [&](std::int64_t lo, std::int64_t hi, int w) {
                         const auto first = static_cast<std::size_t>(lo), last = static_cast<std::size_t>(hi);
                         if constexpr (BroadcastFormed<Src>)
                           if (inner == 1 &&
                               x.for_constant_rows(first, last, n, [&](std::size_t o, auto run) { y[o] = pairwise_sum<Acc>(run, n); }))
                             return;
                         for (std::size_t o = first; o < last; ++o)
                           sum_rows(x + o * n * inner, n, inner, y + o * inner, works.data() + static_cast<std::size_t>(w) * work);
                       });
}

/// x viewed as [outer, n, inner]: y[o, i] = f(...f(f(init, x[o,0,i]), x[o,1,i])..., x[o,n-1,i]),
/// for folds whose result does not depend on the order (max, min). Contiguous inner loop.
template <class Acc, class T, class F>
void fold_middle(const T* x, std::size_t outer, std::size_t n, std::size_t inner, Acc init, F f, Acc* y) {
  std::fill(y, y + outer * inner, init);
  for (std::size_t o = 0; o < outer; ++o) {
    Acc* yr = y + o * inner;
    for (std::size_t r = 0; r < n; ++r) {
      const T* xr = x + (o * n + r) * inner;
      for (std::size_t i = 0; i < inner; ++i) yr[i] = f(yr[i], static_cast<Acc>(xr[i]));
    }
  }
}

/// Reduces x (row-major `dims`) over the axes where mask is nonzero into out, which receives the
/// kept elements in row-major order (the reduced axes dropped). Adjacent axes of the same kind
/// merge (size-1 axes are dropped), so x is [g_0, g_1, ...] with kept and reduced groups
/// alternating; each reduced group is reduced by middle(src, outer, g_j, inner, dst) in turn,
/// innermost first, the intermediate results in scratch buffers (no allocation once warm).
template <class Acc, class Src, class Middle>
void reduce_axes(Src x, const Dims& dims, const AxisMask& mask, Middle middle, Acc* out) {
  Dims g;
  AxisMask reduced;
  for (std::size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == 1) continue;
    if (!g.empty() && reduced.back() == mask[k])
      g.back() *= dims[k];
    else
      g.push_back(dims[k]), reduced.push_back(mask[k]);
  }
  std::size_t first = g.size(), last = g.size();  // the outermost and innermost reduced groups
  for (std::size_t j = 0; j < g.size(); ++j)
    if (reduced[j]) last = j, first = first == g.size() ? j : first;
  if (first == g.size()) {
    const std::size_t n = product(dims, 0, dims.size());
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Acc>(x[i]);
    return;
  }
  const std::size_t scratch = product(g, 0, g.size()) / std::max<std::size_t>(1, g[last]);
  Scratch<Acc> ping(first == last ? 0 : scratch), pong(first == last ? 0 : scratch);
  const Acc* src = nullptr;
  for (std::size_t j = last + 1; j-- > first;) {
    if (!reduced[j]) continue;
    const std::size_t outer = product(g, 0, j), inner = product(g, j + 1, g.size());
    Acc* dst = j == first ? out : (src == ping.data() ? pong.data() : ping.data());
    if (src)
      middle(src, outer, g[j], inner, dst);
    else
      middle(x, outer, g[j], inner, dst);
    src = dst;
    g[j] = 1;
  }
}

/// The number of elements reduce_axes leaves.
inline std::size_t kept_size(const Dims& dims, const AxisMask& mask) {
  std::size_t n = 1;
  for (std::size_t k = 0; k < dims.size(); ++k)
    if (!mask[k]) n *= dims[k];
  return n;
}

/// Pairwise sums of x over the masked axes (see reduce_axes), accumulated in Acc, into out.
template <class Acc, class Src>
void reduce_sum(Src x, const Dims& dims, const AxisMask& mask, Acc* out) {
  reduce_axes<Acc>(
      x, dims, mask,
      [](auto src, std::size_t o, std::size_t n, std::size_t i, Acc* dst) { sum_middle<Acc>(src, o, n, i, dst); },
      out);
}
template <class Acc, class T>
std::vector<Acc> reduce_sum(const T* x, const Dims& dims, const AxisMask& mask) {
  std::vector<Acc> out(kept_size(dims, mask));
  reduce_sum<Acc>(x, dims, mask, out.data());
  return out;
}

/// An order-independent fold f(acc, value) from init over the masked axes (max, min), into out.
template <class T, class F>
void reduce_fold(const T* x, const Dims& dims, const AxisMask& mask, T init, F f, T* out) {
  reduce_axes<T>(
      x, dims, mask,
      [init, f](const T* src, std::size_t o, std::size_t n, std::size_t i, T* dst) {
        fold_middle(src, o, n, i, init, f, dst);
      },
      out);
}

}  // namespace kiln::kernels
