#include "framework/kernels/batch_norm.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "framework/kernels/scratch.hpp"
#include "framework/thread_pool.hpp"

namespace kiln::kernels {
namespace {

using std::int64_t;
template <class T>
using B = xsimd::batch<T>;
template <class T>
constexpr int64_t kW = static_cast<int64_t>(B<T>::size);
// Elements per statistics block: it bounds the length of every T-precision partial sum (block
// results are combined in double) and keeps a block's reads within L2.
constexpr int64_t kBlock = 16384;
// Rows (NHWC) or elements per plane (NCHW) a block's shift is estimated from (see moments): one
// cache line of a plane. It was 64 until 2026-12; on the small planes of NCHW (14x14) that head
// pass was a third of the statistics' work: 256x64x14x14 forward 1.32-1.60 -> 1.10-1.20 ms.
constexpr int64_t kShiftSample = 8;

// clang-format off
// One generic lambda body serves whole vectors (V = B<T>) and scalar tails (V = T):
// ld(tag, p) reads a value of the tag's type at p; st(p, v) writes one.
template <class T> T ld(const T&, const T* p) { return *p; }
template <class T> B<T> ld(const B<T>&, const T* p) { return B<T>::load_unaligned(p); }
template <class T> void st(T* p, T v) { *p = v; }
template <class T> void st(T* p, const B<T>& v) { v.store_unaligned(p); }
// clang-format on

// f(i, V{}) for i in [0, n): V = B<T> over whole vectors, then V = T over the tail.
template <class T, class F>
void simd_for(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kW<T> <= n; i += kW<T>) f(i, B<T>{});
  for (; i < n; ++i) f(i, T{});
}

// Every reduction here is a pair of per-channel sums over a block (below) of elements, of one
// of two kinds: the moments' S0 = sum(x - m), S1 = sum((x - m)^2), and the gradients'
// S0 = sum(dy), S1 = sum(dy * (x - m)); accumulated in T (blocks are short), then combined in
// double. Each kind reads only what it needs: one input and one centre per channel, or dy
// uncentred. (Written as one pair sum(u - m0), sum((u - m0) * (v - m1)), the narrow NHWC loop
// below kept eight centres beside its eight accumulators: the moments loaded x twice, the
// gradient sums spilled a centre and subtracted a zero from dy. Old and new side by side in one
// process, same bits, one thread: forward 2048x32 NHWC 0.80x the time, 1024x64 0.88x,
// 256x14x14x64 0.94-0.99x, 256x64x14x14 NCHW 0.94x; backward 0.87x, 0.94x, about 1x on the
// memory-bound shapes.)
enum class Sums { moments, gradients };
// add(a, du, dv) adds a vector (or a tail scalar) into an accumulator pair.
constexpr auto add = [](auto& a, auto du, auto dv) { a[0] += du, a[1] = xsimd::fma(du, dv, a[1]); };
// Adds element e of the inputs with centre mc (a V, like the accumulators).
template <Sums Kind, class T>
struct Summand {
  const T *u, *v;  // moments: x, none; gradients: dy, x
  template <class A, class M>
  void operator()(A& a, int64_t e, M mc) const {
    using V = std::remove_cvref_t<decltype(a[0])>;
    if constexpr (Kind == Sums::moments) {
      const V d = ld(a[0], u + e) - mc;
      add(a, d, d);
    } else {
      add(a, ld(a[0], u + e), V(ld(a[0], v + e) - mc));
    }
  }
};

// The sums f(acc, e0 + r*step) for r in [0, count), V = B<T> or T, with four interleaved
// accumulator pairs (independent chains hide the add/fma latency; unrolled by hand so that
// they stay in registers).
template <class V, class F>
std::array<V, 2> strided_sum(int64_t e0, int64_t step, int64_t count, F&& f) {
  std::array<std::array<V, 2>, 4> a{};  // value-initialized: zero (xsimd batches too)
  int64_t r = 0;
  for (; r + 4 <= count; r += 4)
    f(a[0], e0 + r * step), f(a[1], e0 + (r + 1) * step), f(a[2], e0 + (r + 2) * step),
        f(a[3], e0 + (r + 3) * step);
  for (; r < count; ++r) f(a[0], e0 + r * step);
  return {(a[0][0] + a[1][0]) + (a[2][0] + a[3][0]), (a[0][1] + a[1][1]) + (a[2][1] + a[3][1])};
}

// A block holds n elements of each of its channels [c0, c1), and fits in L2:
// NHWC rows [o, o + n) of all channels (vector lanes = channels), or the slices [j, j + n) of the
// planes (o, c0..c1) (lanes along each plane; small planes are grouped so that the per-plane
// reductions and merges overlap).
struct Block {
  int64_t o, c0, c1, j, n;
};
struct Blocking {
  int64_t R, G, groups, slices, count;  // rows, planes per group; groups, slices per o; blocks
};
Blocking blocking(BnLayout l) {
  const int64_t C = l.channels;
  Blocking k{std::max<int64_t>(64, kBlock / std::max<int64_t>(C, 1)),
             std::max<int64_t>(1, kBlock / std::max<int64_t>(l.inner, 1)), 0, 0, 0};
  if (l.inner == 1) {
    k.count = (l.outer + k.R - 1) / k.R;
  } else {
    k.groups = (C + k.G - 1) / k.G, k.slices = (l.inner + kBlock - 1) / kBlock;
    k.count = l.outer * k.groups * k.slices;
  }
  return k;
}
// Block i, in the order (o, channel group, slice).
Block block_at(BnLayout l, const Blocking& k, int64_t i) {
  if (l.inner == 1) return Block{i * k.R, 0, l.channels, 0, std::min(k.R, l.outer - i * k.R)};
  const int64_t o = i / (k.groups * k.slices), g = i / k.slices % k.groups, s = i % k.slices;
  return Block{o, g * k.G, std::min(l.channels, (g + 1) * k.G), s * kBlock,
               std::min(kBlock, l.inner - s * kBlock)};
}
// f(block index, block) for every block, in chunks of blocks on the pool.
template <class F>
void parallel_blocks(BnLayout l, const Blocking& k, F&& f) {
  parallel_for(k.count, 2, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) f(i, block_at(l, k, i));
  });
}

// S[c] = S0, S[C + c] = S1 over the block b, for the block's channels, centres m ([C]).
template <Sums Kind, class T>
void block_sums(Summand<Kind, T> sum, const T* m, BnLayout l, Block b, T* S) {
  const int64_t C = l.channels;
  if (l.inner == 1) {  // element e holds channel c; with vectors, channels c..c+W-1
    auto g = [&](auto& a, int64_t e, int64_t c) { sum(a, e, ld(a[0], m + c)); };
    if (C <= 8 * kW<T>) {  // narrow rows: compact block
      // Four vectors of channels per walk down the block's rows (four independent accumulator
      // pairs), so a 64 KB block is walked C/32 times rather than C/8 (float): the walks after the
      // first read it from L2, a line of a row each (256x14x14x64 NHWC at 1 thread: forward
      // 1.25 -> 1.00 ms, backward 1.99 -> 1.65; 64x28x28x32: 0.50 -> 0.40, 0.93 -> 0.61). Then
      // single vectors (four interleaved pairs along the rows), then the scalar tail.
      constexpr int64_t kV = 4;
      int64_t c = 0;
      for (; c + kV * kW<T> <= C; c += kV * kW<T>) {
        std::array<std::array<B<T>, 2>, kV> a{};
        for (int64_t r = b.o; r < b.o + b.n; ++r)
          for (int64_t v = 0; v < kV; ++v) g(a[v], r * C + c + v * kW<T>, c + v * kW<T>);
        for (int64_t v = 0; v < kV; ++v) st(S + c + v * kW<T>, a[v][0]), st(S + C + c + v * kW<T>, a[v][1]);
      }
      simd_for<T>(C - c, [&](int64_t i, auto t) {
        const int64_t ci = c + i;
        auto s = strided_sum<decltype(t)>(b.o * C + ci, C, b.n, [&](auto& a, int64_t e) { g(a, e, ci); });
        st(S + ci, s[0]), st(S + C + ci, s[1]);
      });
      return;
    }
    // Wide rows: row by row, C/W independent chains through S; four rows per visit of S (each
    // chain still adds its rows in order), so S is loaded and stored once per four rows.
    std::fill(S, S + 2 * C, T(0));
    const auto rows = [&]<int64_t K>(int64_t r, std::integral_constant<int64_t, K>) {  // rows r..r+K-1
      simd_for<T>(C, [&](int64_t c, auto t) {
        std::array<decltype(t), 2> a{ld(t, S + c), ld(t, S + C + c)};
        for (int64_t k = 0; k < K; ++k) g(a, (r + k) * C + c, c);
        st(S + c, a[0]), st(S + C + c, a[1]);
      });
    };
    int64_t r = b.o;
    for (; r + 4 <= b.o + b.n; r += 4) rows(r, std::integral_constant<int64_t, 4>{});
    for (; r < b.o + b.n; ++r) rows(r, std::integral_constant<int64_t, 1>{});
    return;
  }
  for (int64_t c = b.c0; c < b.c1; ++c) {  // vectors along the plane, then the scalar tail
    const int64_t e0 = (b.o * C + c) * l.inner + b.j, nv = b.n / kW<T>;
    auto f = [&](auto& a, int64_t e) { sum(a, e, std::remove_cvref_t<decltype(a[0])>(m[c])); };
    const auto s = strided_sum<B<T>>(e0, kW<T>, nv, f);
    const auto t = strided_sum<T>(e0 + nv * kW<T>, 1, b.n - nv * kW<T>, f);
    S[c] = xsimd::hadd(s[0]) + t[0], S[C + c] = xsimd::hadd(s[1]) + t[1];
  }
}

// Per channel mean and m2 = sum of squared deviations, by Chan et al. merges of the blocks: a
// block of nb elements with mean mb and m2b updates (n, mean, m2) by d = mb - mean,
// mean += d*nb/n', m2 += m2b + d^2*n*nb/n' (n' = n + nb). Each block sums around a shift p near
// its mean: r1 = sum(x-p), r2 = sum((x-p)^2) give mb = p + r1/nb, m2b = r2 - r1^2/nb for any p,
// and the cancellation in m2b costs a factor 1 + (mb-p)^2/var of relative precision, so p is the
// mean of the block's first kShiftSample rows (elements of a plane). A channel offset (1e4) costs
// nothing; data whose first rows differ from the rest of the block (neighbouring pixels of a
// smooth image, a step) put p some standard deviations away, which costs a few bits of the block
// sums' float precision (tests: a sorted ramp and a 1e4 step, within 1e-4 of the variance). Each
// block reads its elements from memory once. The
// blocks run in parallel and store (p, r1, r2); the merges then run in block order on one
// thread, so the result does not depend on the number of threads. m holds 3*C doubles:
// n | mean | m2. The scratch is taken once, before the blocks (a block's working space is its own
// part of it), so how the blocks are shared among threads changes nothing of what is taken.
template <class T>
void moments(const T* x, BnLayout l, double* m) {
  const int64_t C = l.channels;
  const Blocking k = blocking(l);
  Scratch<T> part(static_cast<std::size_t>(k.count * 5 * C + C));
  T* zero = part.data() + k.count * 5 * C;
  std::fill(zero, zero + C, T(0));
  parallel_blocks(l, k, [&](int64_t i, Block b) {
    T *p = part.data() + i * 3 * C, *s = part.data() + k.count * 3 * C + i * 2 * C;
    Block head = b;  // the shift p: the mean of the block's first kShiftSample rows (or elements)
    head.n = std::min(b.n, kShiftSample);
    const double inv_nh = 1 / double(head.n);
    block_sums(Summand<Sums::moments, T>{x, nullptr}, zero, l, head, s);  // s[c] = sum(x) over the head
    for (int64_t c = b.c0; c < b.c1; ++c) p[c] = T(s[c] * inv_nh);
    block_sums(Summand<Sums::moments, T>{x, nullptr}, p, l, b, s);  // s = r1 | r2: the one full pass
    for (int64_t c = b.c0; c < b.c1; ++c) p[C + c] = s[c], p[2 * C + c] = s[C + c];
  });
  std::fill(m, m + 3 * C, 0.0);
  for (int64_t i = 0; i < k.count; ++i) {
    const Block b = block_at(l, k, i);
    const T* p = part.data() + i * 3 * C;
    const double nb = double(b.n), inv_nb = 1 / nb;
    for (int64_t c = b.c0; c < b.c1; ++c) {
      double &n = m[c], &mean = m[C + c], &m2 = m[2 * C + c];
      const double r1 = p[C + c], w = nb / (n + nb), d = p[c] + r1 * inv_nb - mean;
      mean += d * w;
      m2 += p[2 * C + c] - r1 * r1 * inv_nb + d * d * n * w;
      n += nb;
    }
  }
}

// Per channel: g[c] = sum(dy), g[C + c] = sum(dy * (x - mu[c])), in double: block sums in
// parallel, added in block order.
template <class T>
void grad_sums(const T* dy, const T* x, const T* mu, BnLayout l, double* g) {
  const int64_t C = l.channels;
  const Blocking k = blocking(l);
  Scratch<T> part(static_cast<std::size_t>(k.count * 2 * C));
  parallel_blocks(l, k, [&](int64_t i, Block b) {
    block_sums(Summand<Sums::gradients, T>{dy, x}, mu, l, b, part.data() + i * 2 * C);
  });
  std::fill(g, g + 2 * C, 0.0);
  for (int64_t i = 0; i < k.count; ++i) {
    const Block b = block_at(l, k, i);
    const T* s = part.data() + i * 2 * C;
    for (int64_t c = b.c0; c < b.c1; ++c) g[c] += s[c], g[C + c] += s[C + c];
  }
}

// out = f(u, v, kj) elementwise, kj(j) = the per-channel coefficient k[j * C + c] (as a V), for
// j < 4 (k holds 4*C values). The chunks copy the pointers into locals: read through the closure,
// they would be reloaded after every store (out might alias them, for all the compiler knows).
template <class T, class F>
void map(BnLayout l, const T* u, const T* v, const T* k, T* out, F&& f) {
  const int64_t C = l.channels, inner = l.inner;
  if (inner == 1) {  // NHWC: vectors across channels, rows in chunks on the pool
    parallel_for(l.outer, std::max<int64_t>(1, kBlock / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
      // Row and coefficient pointers in locals: indexing from the bases (o * C + c, j * C + c)
      // was recomputed, with a multiply, for every vector.
      const T* const kr[4] = {k, k + C, k + 2 * C, k + 3 * C};
      for (int64_t o = lo; o < hi; ++o) {
        const T *const ur = u + o * C, *const vr = v + o * C;
        T* const yr = out + o * C;
        simd_for<T>(C, [&](int64_t c, auto t) {
          st(yr + c, f(ld(t, ur + c), ld(t, vr + c), [&](int j) { return ld(t, kr[j] + c); }));
        });
      }
    });
    return;
  }
  // NCHW: vectors along each plane (o, c), its coefficients broadcast once; planes in chunks.
  parallel_for(l.outer * C, std::max<int64_t>(1, kBlock / inner), [&](int64_t lo, int64_t hi) {
    const T *const u0 = u, *const v0 = v, *const k0 = k;
    T* const y0 = out;
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t c = p % C;
      const T ks[4] = {k0[c], k0[C + c], k0[2 * C + c], k0[3 * C + c]};
      const B<T> kb[4] = {B<T>(ks[0]), B<T>(ks[1]), B<T>(ks[2]), B<T>(ks[3])};
      const T *const up = u0 + p * inner, *const vp = v0 + p * inner;
      T* const yp = y0 + p * inner;
      simd_for<T>(inner, [&](int64_t i, auto t) {
        st(yp + i, f(ld(t, up + i), ld(t, vp + i), [&](int j) {
             if constexpr (std::is_same_v<decltype(t), T>)
               return ks[j];
             else
               return kb[j];
           }));
      });
    }
  });
}

// v as an op stores it: an opaque copy, so that the compiler cannot contract the multiply that
// made v and the add that reads it into one FMA (which skips the product's rounding: the result
// would no longer be a Mul's followed by an Add's).
// ("+v": an x86 vector register, the only ISA kiln builds for, see meson_options.txt.)
template <class V>
V stored(V v) {
  if constexpr (std::is_arithmetic_v<V>) {
    asm("" : "+v"(v));
    return v;
  } else {
    typename V::register_type r = v;
    asm("" : "+v"(r));
    return V(r);
  }
}

// y = k0 * (x - k1) + k2: subtracting first keeps full precision when |mean| >> std.
constexpr auto kAffine = [](auto x, auto, auto k) { return xsimd::fma(k(0), x - k(1), k(2)); };
}  // namespace

template <class T>
void batch_moments(const T* x, BnLayout l, T* mean, T* variance) {
  const int64_t C = l.channels;
  Scratch<double> ms(static_cast<std::size_t>(3 * C));
  const double* m = ms.data();  // n | mean | m2
  moments(x, l, ms.data());
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t c = 0; c < C; ++c) {
    const bool none = m[c] == 0;
    mean[c] = none ? nan : T(m[C + c]), variance[c] = none ? nan : T(m[2 * C + c] / m[c]);
  }
}

template <class T>
void channel_affine(const T* x, const T* a, const T* m, const T* b, BnLayout l, T* y, const T* addend,
                    const T* addend_scale) {
  const int64_t C = l.channels;
  Scratch<T> ks(static_cast<std::size_t>(4 * C));  // map reads 4 coefficients per channel
  T* k = ks.data();
  std::copy(a, a + C, k), std::copy(m, m + C, k + C), std::copy(b, b + C, k + 2 * C);
  if (addend_scale)
    std::copy(addend_scale, addend_scale + C, k + 3 * C);
  else
    std::fill(k + 3 * C, k + 4 * C, T(0));
  if (addend && addend_scale)
    map(l, x, addend, k, y, [](auto xv, auto add, auto kj) { return kAffine(xv, add, kj) + stored(add * kj(3)); });
  else if (addend)
    map(l, x, addend, k, y, [](auto xv, auto add, auto kj) { return kAffine(xv, add, kj) + add; });
  else
    map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_forward_training(const T* x, const T* gamma, const T* beta, BnLayout l,
                                       double epsilon, T* y, T* batch_mean, T* batch_var,
                                       T* saved_inv_std) {
  const int64_t C = l.channels;
  Scratch<double> ms(static_cast<std::size_t>(3 * C));
  Scratch<T> ks(static_cast<std::size_t>(4 * C));
  const double* m = ms.data();  // n | mean | m2
  T* k = ks.data();
  moments(x, l, ms.data());
  // var = m2 / M (biased), inv = 1/sqrt(var + eps), y = (gamma*inv) * (x - mean) + beta.
  for (int64_t c = 0; c < C; ++c) {
    const double var = m[2 * C + c] / std::max(m[c], 1.0), inv = 1 / std::sqrt(var + epsilon);
    batch_mean[c] = T(m[C + c]), batch_var[c] = T(var), saved_inv_std[c] = T(inv);
    k[c] = T(gamma[c] * inv), k[C + c] = batch_mean[c], k[2 * C + c] = beta[c], k[3 * C + c] = T(0);
  }
  map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_forward_inference(const T* x, const T* gamma, const T* beta, const T* mean,
                                        const T* var, BnLayout l, double epsilon, T* y) {
  const int64_t C = l.channels;
  Scratch<T> ks(static_cast<std::size_t>(4 * C));
  T* k = ks.data();
  // y = (gamma / sqrt(var + eps)) * (x - mean) + beta.
  for (int64_t c = 0; c < C; ++c)
    k[c] = T(gamma[c] / std::sqrt(var[c] + epsilon)), k[C + c] = mean[c], k[2 * C + c] = beta[c], k[3 * C + c] = T(0);
  map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_backward_training(const T* dy, const T* x, const T* gamma,
                                        const T* batch_mean, const T* saved_inv_std, BnLayout l,
                                        T* dx, T* dgamma, T* dbeta) {
  const int64_t C = l.channels;
  Scratch<double> ss(static_cast<std::size_t>(2 * C));
  Scratch<T> ks(static_cast<std::size_t>(4 * C));
  const double* s = ss.data();
  T* k = ks.data();
  grad_sums(dy, x, batch_mean, l, ss.data());
  const double M = std::max(double(l.outer) * double(l.inner), 1.0);
  // dx = g*inv*(dy - mean(dy) - (x-mu)*mean(dy*(x-mu))*inv^2) = a*dy + b*(x-mu) + c0 with
  // a = g*inv, b = -a*inv^2*mean(dy*(x-mu)), c0 = -a*mean(dy).
  // dgamma = inv*sum(dy*(x-mu)), dbeta = sum(dy).
  for (int64_t c = 0; c < C; ++c) {
    const double inv = saved_inv_std[c], a = gamma[c] * inv;
    k[c] = T(a), k[C + c] = T(-a * inv * inv * s[C + c] / M), k[2 * C + c] = batch_mean[c];
    k[3 * C + c] = T(-a * s[c] / M), dgamma[c] = T(s[C + c] * inv), dbeta[c] = T(s[c]);
  }
  map(l, dy, x, k, dx, [](auto g, auto xv, auto kj) {  // a*dy + (b*(x - mu) + c0)
    return xsimd::fma(kj(0), g, xsimd::fma(kj(1), xv - kj(2), kj(3)));
  });
}

template <class T>
void fused_batch_norm_backward_inference(const T* dy, const T* x, const T* gamma, const T* pop_mean,
                                         const T* pop_var, BnLayout l, double epsilon, T* dx,
                                         T* dgamma, T* dbeta) {
  const int64_t C = l.channels;
  Scratch<double> ss(static_cast<std::size_t>(2 * C));
  Scratch<T> ks(static_cast<std::size_t>(4 * C));
  const double* s = ss.data();
  T* k = ks.data();
  grad_sums(dy, x, pop_mean, l, ss.data());
  std::fill(k, k + 4 * C, T(0));  // k[C..3C) stay 0: dx = (gamma*inv) * (dy - 0) + 0
  // dx = dy*gamma*inv_pop; dgamma = inv_pop*sum(dy*(x-mean)); dbeta = sum(dy).
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1 / std::sqrt(pop_var[c] + epsilon);
    k[c] = T(gamma[c] * inv), dgamma[c] = T(s[C + c] * inv), dbeta[c] = T(s[c]);
  }
  map(l, dy, dy, k, dx, kAffine);
}

#define KILN_BN_INSTANTIATE(T)                                                                               \
  template void batch_moments<T>(const T*, BnLayout, T*, T*);                                                \
  template void channel_affine<T>(const T*, const T*, const T*, const T*, BnLayout, T*, const T*, const T*); \
  template void fused_batch_norm_forward_training<T>(const T*, const T*, const T*, BnLayout,                 \
                                                     double, T*, T*, T*, T*);                                \
  template void fused_batch_norm_forward_inference<T>(const T*, const T*, const T*, const T*,                \
                                                      const T*, BnLayout, double, T*);                       \
  template void fused_batch_norm_backward_training<T>(const T*, const T*, const T*, const T*,                \
                                                      const T*, BnLayout, T*, T*, T*);                       \
  template void fused_batch_norm_backward_inference<T>(const T*, const T*, const T*, const T*,               \
                                                       const T*, BnLayout, double, T*, T*, T*);
KILN_BN_INSTANTIATE(float)
KILN_BN_INSTANTIATE(double)
#undef KILN_BN_INSTANTIATE

}  // namespace kiln::kernels
