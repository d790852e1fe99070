#include "framework/kernels/batch_norm.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

namespace kiln::kernels {
namespace {

using std::int64_t;
using std::size_t;
template <class T>
using B = xsimd::batch<T>;
template <class T>
constexpr int64_t kW = static_cast<int64_t>(B<T>::size);
// Elements per statistics block: it stays in L2 for the second pass over it, and it bounds the
// length of every T-precision partial sum (block results are combined in double).
constexpr int64_t kBlock = 16384;
constexpr int64_t kU = 4;  // independent accumulator sets per reduction (hide add/fma latency)

// V is B<T> (whole vectors) or T (scalar tails); the same lambda body serves both.
template <class V, class T>
V ld(const T* p) {
  if constexpr (std::is_same_v<V, T>)
    return *p;
  else
    return V::load_unaligned(p);
}
template <class T, class V>
void st(T* p, const V& v) {
  if constexpr (std::is_same_v<V, T>)
    *p = v;
  else
    v.store_unaligned(p);
}
template <class A>
using Lane = typename std::remove_reference_t<A>::value_type;
template <class V, size_t K>
using Acc = std::array<std::array<V, K>, kU>;
template <class V, size_t K>
Acc<V, K> zeros() {
  Acc<V, K> a;
  for (auto& s : a) s.fill(V(0));
  return a;
}
template <class V, size_t K>
std::array<V, K> total(const Acc<V, K>& a) {
  std::array<V, K> t;
  for (size_t k = 0; k < K; ++k) t[k] = (a[0][k] + a[1][k]) + (a[2][k] + a[3][k]);
  return t;
}

// f(i, V{}) for i in [0, n): V = B<T> over whole vectors, then V = T over the tail.
template <class T, class F>
void simd_for(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kW<T> <= n; i += kW<T>) f(i, B<T>{});
  for (; i < n; ++i) f(i, T{});
}

// K sums over a contiguous range [0, n): f(i, acc) adds element(s) i into acc (std::array<V, K>).
template <class T, size_t K, class F>
std::array<double, K> simd_sum(int64_t n, F&& f) {
  auto a = zeros<B<T>, K>();
  auto s = zeros<T, K>();
  int64_t i = 0;
  for (; i + kU * kW<T> <= n; i += kU * kW<T>)  // unrolled by hand: a[u] must stay in registers
    f(i, a[0]), f(i + kW<T>, a[1]), f(i + 2 * kW<T>, a[2]), f(i + 3 * kW<T>, a[3]);
  for (; i + kW<T> <= n; i += kW<T>) f(i, a[0]);
  for (; i < n; ++i) f(i, s[0]);
  const auto t = total(a);
  std::array<double, K> r;
  for (size_t k = 0; k < K; ++k) r[k] = double(xsimd::hadd(t[k])) + double(s[0][k]);
  return r;
}

// NHWC block of n rows x C channels: K per-channel sums over the rows, vector lanes = channels.
// f(e, c, acc) adds element offset e (row r, channel c) into acc; sum k goes to out[k*C + c].
template <class T, size_t K, class F>
void rows_sum(int64_t n, int64_t C, T* out, F&& f) {
  if (C <= 8 * kW<T>) {  // narrow rows: the block is compact; per-chunk register accumulators
    simd_for<T>(C, [&](int64_t c, auto v) {
      auto a = zeros<decltype(v), K>();
      int64_t r = 0;
      for (; r + kU <= n; r += kU)
        f(r * C + c, c, a[0]), f((r + 1) * C + c, c, a[1]), f((r + 2) * C + c, c, a[2]),
            f((r + 3) * C + c, c, a[3]);
      for (; r < n; ++r) f(r * C + c, c, a[0]);
      const auto t = total(a);
      for (size_t k = 0; k < K; ++k) st(out + int64_t(k) * C + c, t[k]);
    });
    return;
  }
  std::fill(out, out + K * C, T(0));  // wide rows: stream row by row, C/W independent chains in out
  for (int64_t r = 0; r < n; ++r)
    simd_for<T>(C, [&](int64_t c, auto v) {
      std::array<decltype(v), K> a;
      for (size_t k = 0; k < K; ++k) a[k] = ld<decltype(v)>(out + int64_t(k) * C + c);
      f(r * C + c, c, a);
      for (size_t k = 0; k < K; ++k) st(out + int64_t(k) * C + c, a[k]);
    });
}

// Chan et al. merge of a block of nb elements into running (n, mean, m2 = sum of squared
// deviations): d = mb - mean, mean += d*nb/n', m2 += m2b + d^2*n*nb/n' (n' = n + nb). The block is
// a corrected two-pass around its rounded provisional mean p: r1 = sum(x-p), r2 = sum((x-p)^2) give
// exactly mb = p + r1/nb, m2b = r2 - r1^2/nb.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};
void chan_merge(Moments& a, double nb, double p, double r1, double r2) {
  const double n = a.n + nb, d = p + r1 / nb - a.mean;
  a.mean += d * nb / n;
  a.m2 += r2 - r1 * r1 / nb + d * d * a.n * nb / n;
  a.n = n;
}

template <class T>
std::vector<Moments> moments(const T* x, BnLayout l) {
  const int64_t C = l.channels;
  std::vector<Moments> m(C);
  if (l.inner == 1) {
    std::vector<T> s(3 * C);  // p | r1 | r2 of the current block
    const int64_t R = std::max<int64_t>(64, kBlock / std::max<int64_t>(C, 1));
    for (int64_t r0 = 0; r0 < l.outer; r0 += R) {
      const int64_t n = std::min(R, l.outer - r0);
      const T* xb = x + r0 * C;
      // p = sum_rows(x) / n.
      rows_sum<T, 1>(n, C, s.data(),
                     [&](int64_t e, int64_t, auto& a) { a[0] += ld<Lane<decltype(a)>>(xb + e); });
      for (int64_t c = 0; c < C; ++c) s[c] /= T(n);
      // r1 = sum(x - p), r2 = sum((x - p)^2), on the cache-resident block.
      rows_sum<T, 2>(n, C, s.data() + C, [&](int64_t e, int64_t c, auto& a) {
        using V = Lane<decltype(a)>;
        const V d = ld<V>(xb + e) - ld<V>(s.data() + c);
        a[0] += d, a[1] = xsimd::fma(d, d, a[1]);
      });
      for (int64_t c = 0; c < C; ++c) chan_merge(m[c], double(n), s[c], s[C + c], s[2 * C + c]);
    }
    return m;
  }
  // NCHW: a block is one plane (or a kBlock slice of it), visited in memory order.
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t j = 0; j < l.inner; j += kBlock) {
      const int64_t n = std::min(kBlock, l.inner - j);
      for (int64_t c = 0; c < C; ++c) {
        const T* q = x + (o * C + c) * l.inner + j;
        // p = sum(x) / n along the contiguous slice; then r1, r2 as above.
        const T p = T(simd_sum<T, 1>(
                          n, [&](int64_t i, auto& a) { a[0] += ld<Lane<decltype(a)>>(q + i); })[0] /
                      double(n));
        const auto r = simd_sum<T, 2>(n, [&](int64_t i, auto& a) {
          using V = Lane<decltype(a)>;
          const V d = ld<V>(q + i) - V(p);
          a[0] += d, a[1] = xsimd::fma(d, d, a[1]);
        });
        chan_merge(m[c], double(n), p, r[0], r[1]);
      }
    }
  return m;
}

// Per channel: s[c] = sum(dy), s[C + c] = sum(dy * (x - mu[c])), in double from T block partials.
template <class T>
std::vector<double> grad_sums(const T* dy, const T* x, const T* mu, BnLayout l) {
  const int64_t C = l.channels;
  std::vector<double> s(2 * C);
  if (l.inner == 1) {
    std::vector<T> t(2 * C);
    const int64_t R = std::max<int64_t>(64, kBlock / std::max<int64_t>(C, 1));
    for (int64_t r0 = 0; r0 < l.outer; r0 += R) {
      const int64_t off = r0 * C;
      rows_sum<T, 2>(std::min(R, l.outer - r0), C, t.data(), [&](int64_t e, int64_t c, auto& a) {
        using V = Lane<decltype(a)>;
        const V g = ld<V>(dy + off + e);
        a[0] += g, a[1] = xsimd::fma(g, ld<V>(x + off + e) - ld<V>(mu + c), a[1]);
      });
      for (size_t k = 0; k < s.size(); ++k) s[k] += double(t[k]);
    }
    return s;
  }
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < l.inner; j += kBlock) {
        const int64_t off = (o * C + c) * l.inner + j;
        const auto r = simd_sum<T, 2>(std::min(kBlock, l.inner - j), [&](int64_t i, auto& a) {
          using V = Lane<decltype(a)>;
          const V g = ld<V>(dy + off + i);
          a[0] += g, a[1] = xsimd::fma(g, ld<V>(x + off + i) - V(mu[c]), a[1]);
        });
        s[c] += r[0], s[C + c] += r[1];
      }
  return s;
}

// out = f(u, v, k0, k1, k2, k3) elementwise, with per-channel coefficients kj = k[j*C + c] (k:
// 4*C).
template <class T, class F>
void map(BnLayout l, const T* u, const T* v, const std::vector<T>& kv, T* out, F&& f) {
  const int64_t C = l.channels;
  const T* k = kv.data();
  for (int64_t o = 0; o < l.outer; ++o) {
    if (l.inner == 1) {  // vectors across channels
      simd_for<T>(C, [&](int64_t c, auto t) {
        using V = decltype(t);
        const int64_t e = o * C + c;
        st(out + e, f(ld<V>(u + e), ld<V>(v + e), ld<V>(k + c), ld<V>(k + C + c),
                      ld<V>(k + 2 * C + c), ld<V>(k + 3 * C + c)));
      });
      continue;
    }
    for (int64_t c = 0; c < C; ++c) {  // vectors along the plane, coefficients broadcast
      const int64_t base = (o * C + c) * l.inner;
      simd_for<T>(l.inner, [&](int64_t i, auto t) {
        using V = decltype(t);
        const int64_t e = base + i;
        st(out + e,
           f(ld<V>(u + e), ld<V>(v + e), V(k[c]), V(k[C + c]), V(k[2 * C + c]), V(k[3 * C + c])));
      });
    }
  }
}

// y = s * (x - m) + b: subtracting first keeps full precision when |mean| >> std.
constexpr auto kAffine = [](auto x, auto, auto s, auto m, auto b, auto) {
  return xsimd::fma(s, x - m, b);
};

}  // namespace

template <class T>
void fused_batch_norm_forward_training(const T* x, const T* gamma, const T* beta, BnLayout l,
                                       double epsilon, T* y, T* batch_mean, T* batch_var,
                                       T* saved_inv_std) {
  const auto m = moments(x, l);
  const int64_t C = l.channels;
  std::vector<T> k(4 * C);
  // var = m2 / M (biased), inv = 1/sqrt(var + eps), y = (gamma*inv) * (x - mean) + beta.
  for (int64_t c = 0; c < C; ++c) {
    const double var = m[c].m2 / std::max(m[c].n, 1.0), inv = 1 / std::sqrt(var + epsilon);
    batch_mean[c] = T(m[c].mean), batch_var[c] = T(var), saved_inv_std[c] = T(inv);
    k[c] = T(double(gamma[c]) * inv), k[C + c] = batch_mean[c], k[2 * C + c] = beta[c];
  }
  map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_forward_inference(const T* x, const T* gamma, const T* beta, const T* mean,
                                        const T* var, BnLayout l, double epsilon, T* y) {
  const int64_t C = l.channels;
  std::vector<T> k(4 * C);
  // y = (gamma / sqrt(var + eps)) * (x - mean) + beta.
  for (int64_t c = 0; c < C; ++c)
    k[c] = T(double(gamma[c]) / std::sqrt(double(var[c]) + epsilon)), k[C + c] = mean[c],
    k[2 * C + c] = beta[c];
  map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_backward_training(const T* dy, const T* x, const T* gamma,
                                        const T* batch_mean, const T* saved_inv_std, BnLayout l,
                                        T* dx, T* dgamma, T* dbeta) {
  const auto s = grad_sums(dy, x, batch_mean, l);
  const int64_t C = l.channels;
  const double M = std::max(double(l.outer) * double(l.inner), 1.0);
  std::vector<T> k(4 * C);
  // dx = g*inv*(dy - mean(dy) - (x-mu)*mean(dy*(x-mu))*inv^2) = a*dy + b*(x-mu) + c0 with a =
  // g*inv, b = -a*inv^2*mean(dy*(x-mu)), c0 = -a*mean(dy); dgamma = inv*sum(dy*(x-mu)), dbeta =
  // sum(dy).
  for (int64_t c = 0; c < C; ++c) {
    const double inv = saved_inv_std[c], a = double(gamma[c]) * inv;
    k[c] = T(a), k[C + c] = T(-a * inv * inv * s[C + c] / M), k[2 * C + c] = batch_mean[c];
    k[3 * C + c] = T(-a * s[c] / M);
    dgamma[c] = T(s[C + c] * inv), dbeta[c] = T(s[c]);
  }
  map(l, dy, x, k, dx, [](auto g, auto xv, auto a, auto b, auto mu, auto c0) {
    return xsimd::fma(a, g, xsimd::fma(b, xv - mu, c0));
  });
}

template <class T>
void fused_batch_norm_backward_inference(const T* dy, const T* x, const T* gamma, const T* pop_mean,
                                         const T* pop_var, BnLayout l, double epsilon, T* dx,
                                         T* dgamma, T* dbeta) {
  const auto s = grad_sums(dy, x, pop_mean, l);
  const int64_t C = l.channels;
  std::vector<T> k(4 * C);  // k[C..3C) stay 0: dx = (gamma*inv) * (dy - 0) + 0
  // dx = dy*gamma*inv_pop; dgamma = inv_pop*sum(dy*(x-mean)); dbeta = sum(dy).
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1 / std::sqrt(double(pop_var[c]) + epsilon);
    k[c] = T(double(gamma[c]) * inv), dgamma[c] = T(s[C + c] * inv), dbeta[c] = T(s[c]);
  }
  map(l, dy, dy, k, dx, kAffine);
}

#define KILN_BN_INSTANTIATE(T)                                                                 \
  template void fused_batch_norm_forward_training<T>(const T*, const T*, const T*, BnLayout,   \
                                                     double, T*, T*, T*, T*);                  \
  template void fused_batch_norm_forward_inference<T>(const T*, const T*, const T*, const T*,  \
                                                      const T*, BnLayout, double, T*);         \
  template void fused_batch_norm_backward_training<T>(const T*, const T*, const T*, const T*,  \
                                                      const T*, BnLayout, T*, T*, T*);         \
  template void fused_batch_norm_backward_inference<T>(const T*, const T*, const T*, const T*, \
                                                       const T*, BnLayout, double, T*, T*, T*);
KILN_BN_INSTANTIATE(float)
KILN_BN_INSTANTIATE(double)
#undef KILN_BN_INSTANTIATE

}  // namespace kiln::kernels
