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
// Elements per statistics block: it stays in L2 for a second pass, and it bounds the length of
// every T-precision partial sum (block results are combined in double).
constexpr int64_t kBlock = 16384;
int64_t block_rows(int64_t C) {
  return std::max<int64_t>(64, kBlock / std::max<int64_t>(C, 1));
}

// One generic lambda body serves whole vectors (V = B<T>) and scalar tails (V = T):
// ld(tag, p) reads a value of the tag's type V at p; st(p, v) writes one.
template <class V, class T>
V ld(const V&, const T* p) {
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
// f(i, V{}) for i in [0, n): V = B<T> over whole vectors, then V = T over the tail.
template <class T, class F>
void simd_for(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kW<T> <= n; i += kW<T>) f(i, B<T>{});
  for (; i < n; ++i) f(i, T{});
}

// Four sets of K accumulators (independent chains hide the add/fma latency), zero-initialized.
template <class V, size_t K>
using Acc = std::array<std::array<V, K>, 4>;
template <class V, size_t K>
std::array<V, K> total(const Acc<V, K>& a) {
  std::array<V, K> t;
  for (size_t k = 0; k < K; ++k) t[k] = (a[0][k] + a[1][k]) + (a[2][k] + a[3][k]);
  return t;
}

// K sums over a contiguous range [0, n): f(i, acc) adds element(s) i into acc (std::array<V, K>).
// The four calls are unrolled by hand so that the accumulators stay in registers.
template <class T, size_t K, class F>
std::array<double, K> simd_sum(int64_t n, F&& f) {
  Acc<B<T>, K> a{};
  std::array<T, K> s{};
  int64_t i = 0;
  for (; i + 4 * kW<T> <= n; i += 4 * kW<T>)
    f(i, a[0]), f(i + kW<T>, a[1]), f(i + 2 * kW<T>, a[2]), f(i + 3 * kW<T>, a[3]);
  for (; i + kW<T> <= n; i += kW<T>) f(i, a[0]);
  for (; i < n; ++i) f(i, s);
  const auto t = total(a);
  std::array<double, K> r;
  for (size_t k = 0; k < K; ++k) r[k] = double(xsimd::hadd(t[k])) + double(s[k]);
  return r;
}

// NHWC block of n rows x C channels: K per-channel sums over the rows, vector lanes = channels.
// f(e, c, acc) adds element offset e (row r, channel c) into acc; sum k goes to out[k*C + c].
template <class T, size_t K, class F>
void rows_sum(int64_t n, int64_t C, T* out, F&& f) {
  if (C <= 8 * kW<T>) {  // narrow rows: compact block, register accumulators per channel chunk
    simd_for<T>(C, [&](int64_t c, auto v) {
      Acc<decltype(v), K> a{};
      int64_t r = 0;
      for (; r + 4 <= n; r += 4)
        f(r * C + c, c, a[0]), f((r + 1) * C + c, c, a[1]), f((r + 2) * C + c, c, a[2]),
            f((r + 3) * C + c, c, a[3]);
      for (; r < n; ++r) f(r * C + c, c, a[0]);
      const auto t = total(a);
      for (size_t k = 0; k < K; ++k) st(out + int64_t(k) * C + c, t[k]);
    });
    return;
  }
  std::fill(out, out + K * C, T(0));  // wide rows: row by row, C/W independent chains in out
  for (int64_t r = 0; r < n; ++r)
    simd_for<T>(C, [&](int64_t c, auto v) {
      std::array<decltype(v), K> a;
      for (size_t k = 0; k < K; ++k) a[k] = ld(v, out + int64_t(k) * C + c);
      f(r * C + c, c, a);
      for (size_t k = 0; k < K; ++k) st(out + int64_t(k) * C + c, a[k]);
    });
}

// Chan et al. merge of a block of nb elements into the running (n, mean, m2 = sum of squared
// deviations): d = mb - mean, mean += d*nb/n', m2 += m2b + d^2*n*nb/n' (n' = n + nb). Each block
// is a corrected two-pass around its rounded mean p: r1 = sum(x-p), r2 = sum((x-p)^2) give
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
  if (l.inner == 1) {         // NHWC: a block is R rows
    std::vector<T> s(3 * C);  // p | r1 | r2 of the current block
    for (int64_t r0 = 0, R = block_rows(C); r0 < l.outer; r0 += R) {
      const int64_t n = std::min(R, l.outer - r0);
      const T* xb = x + r0 * C;
      // p = sum_rows(x) / n; then r1 = sum(x - p), r2 = sum((x - p)^2) on the cached block.
      rows_sum<T, 1>(n, C, s.data(),
                     [&](int64_t e, int64_t, auto& a) { a[0] += ld(a[0], xb + e); });
      for (int64_t c = 0; c < C; ++c) s[c] /= T(n);
      rows_sum<T, 2>(n, C, s.data() + C, [&](int64_t e, int64_t c, auto& a) {
        const auto d = ld(a[0], xb + e) - ld(a[0], s.data() + c);
        a[0] += d, a[1] = xsimd::fma(d, d, a[1]);
      });
      for (int64_t c = 0; c < C; ++c) chan_merge(m[c], double(n), s[c], s[C + c], s[2 * C + c]);
    }
    return m;
  }
  for (int64_t o = 0; o < l.outer; ++o)  // NCHW: a block is a plane, or a kBlock slice of one
    for (int64_t j = 0; j < l.inner; j += kBlock)
      for (int64_t c = 0, n = std::min(kBlock, l.inner - j); c < C; ++c) {
        const T* q = x + (o * C + c) * l.inner + j;
        // p = sum(x) / n along the contiguous slice; then r1, r2 as above.
        const auto sum = simd_sum<T, 1>(n, [&](int64_t i, auto& a) { a[0] += ld(a[0], q + i); });
        const T p = T(sum[0] / double(n));
        const auto r = simd_sum<T, 2>(n, [&](int64_t i, auto& a) {
          const auto d = ld(a[0], q + i) - p;
          a[0] += d, a[1] = xsimd::fma(d, d, a[1]);
        });
        chan_merge(m[c], double(n), p, r[0], r[1]);
      }
  return m;
}

// Per channel: s[c] = sum(dy), s[C + c] = sum(dy * (x - mu[c])), in double from T block partials.
template <class T>
std::vector<double> grad_sums(const T* dy, const T* x, const T* mu, BnLayout l) {
  const int64_t C = l.channels;
  std::vector<double> s(2 * C);
  auto add = [&](auto& a, const T* g, const T* xv, auto m) {
    a[0] += ld(a[0], g), a[1] = xsimd::fma(ld(a[0], g), ld(a[0], xv) - m, a[1]);
  };
  if (l.inner == 1) {
    std::vector<T> t(2 * C);
    for (int64_t r0 = 0, R = block_rows(C); r0 < l.outer; r0 += R) {
      const int64_t off = r0 * C;
      rows_sum<T, 2>(std::min(R, l.outer - r0), C, t.data(), [&](int64_t e, int64_t c, auto& a) {
        add(a, dy + off + e, x + off + e, ld(a[0], mu + c));
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
          add(a, dy + off + i, x + off + i, mu[c]);
        });
        s[c] += r[0], s[C + c] += r[1];
      }
  return s;
}

// out = f(u, v, k0, k1, k2, k3) elementwise, with per-channel coefficients kj = k[j*C + c].
template <class T, class F>
void map(BnLayout l, const T* u, const T* v, const std::array<std::vector<T>, 4>& k, T* out,
         F&& f) {
  const int64_t C = l.channels;
  for (int64_t o = 0; o < l.outer; ++o) {
    if (l.inner == 1) {  // NHWC: vectors across channels
      simd_for<T>(C, [&](int64_t c, auto t) {
        const int64_t e = o * C + c;
        st(out + e, f(ld(t, u + e), ld(t, v + e), ld(t, &k[0][c]), ld(t, &k[1][c]), ld(t, &k[2][c]),
                      ld(t, &k[3][c])));
      });
      continue;
    }
    for (int64_t c = 0; c < C; ++c) {  // NCHW: vectors along the plane, coefficients broadcast
      const int64_t base = (o * C + c) * l.inner;
      simd_for<T>(l.inner, [&](int64_t i, auto t) {
        using V = decltype(t);
        st(out + base + i, f(ld(t, u + base + i), ld(t, v + base + i), V(k[0][c]), V(k[1][c]),
                             V(k[2][c]), V(k[3][c])));
      });
    }
  }
}

// y = s * (x - m) + b: subtracting first keeps full precision when |mean| >> std.
constexpr auto kAffine = [](auto x, auto, auto s, auto m, auto b, auto) {
  return xsimd::fma(s, x - m, b);
};
template <class T>
std::array<std::vector<T>, 4> coefficients(int64_t C) {
  return {std::vector<T>(C), std::vector<T>(C), std::vector<T>(C), std::vector<T>(C)};
}

}  // namespace

template <class T>
void fused_batch_norm_forward_training(const T* x, const T* gamma, const T* beta, BnLayout l,
                                       double epsilon, T* y, T* batch_mean, T* batch_var,
                                       T* saved_inv_std) {
  const auto m = moments(x, l);
  auto k = coefficients<T>(l.channels);
  // var = m2 / M (biased), inv = 1/sqrt(var + eps), y = (gamma*inv) * (x - mean) + beta.
  for (int64_t c = 0; c < l.channels; ++c) {
    const double var = m[c].m2 / std::max(m[c].n, 1.0), inv = 1 / std::sqrt(var + epsilon);
    batch_mean[c] = T(m[c].mean), batch_var[c] = T(var), saved_inv_std[c] = T(inv);
    k[0][c] = T(gamma[c] * inv), k[1][c] = batch_mean[c], k[2][c] = beta[c];
  }
  map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_forward_inference(const T* x, const T* gamma, const T* beta, const T* mean,
                                        const T* var, BnLayout l, double epsilon, T* y) {
  auto k = coefficients<T>(l.channels);
  // y = (gamma / sqrt(var + eps)) * (x - mean) + beta.
  for (int64_t c = 0; c < l.channels; ++c)
    k[0][c] = T(gamma[c] / std::sqrt(var[c] + epsilon)), k[1][c] = mean[c], k[2][c] = beta[c];
  map(l, x, x, k, y, kAffine);
}

template <class T>
void fused_batch_norm_backward_training(const T* dy, const T* x, const T* gamma,
                                        const T* batch_mean, const T* saved_inv_std, BnLayout l,
                                        T* dx, T* dgamma, T* dbeta) {
  const auto s = grad_sums(dy, x, batch_mean, l);
  const int64_t C = l.channels;
  const double M = std::max(double(l.outer) * double(l.inner), 1.0);
  auto k = coefficients<T>(C);
  // dx = g*inv*(dy - mean(dy) - (x-mu)*mean(dy*(x-mu))*inv^2) = a*dy + b*(x-mu) + c0 with
  // a = g*inv, b = -a*inv^2*mean(dy*(x-mu)), c0 = -a*mean(dy).
  // dgamma = inv*sum(dy*(x-mu)), dbeta = sum(dy).
  for (int64_t c = 0; c < C; ++c) {
    const double inv = saved_inv_std[c], a = gamma[c] * inv;
    k[0][c] = T(a), k[1][c] = T(-a * inv * inv * s[C + c] / M), k[2][c] = batch_mean[c];
    k[3][c] = T(-a * s[c] / M), dgamma[c] = T(s[C + c] * inv), dbeta[c] = T(s[c]);
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
  auto k = coefficients<T>(l.channels);  // k[1], k[2] stay 0: dx = (gamma*inv) * (dy - 0) + 0
  // dx = dy*gamma*inv_pop; dgamma = inv_pop*sum(dy*(x-mean)); dbeta = sum(dy).
  for (int64_t c = 0; c < l.channels; ++c) {
    const double inv = 1 / std::sqrt(pop_var[c] + epsilon);
    k[0][c] = T(gamma[c] * inv), dgamma[c] = T(s[l.channels + c] * inv), dbeta[c] = T(s[c]);
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
