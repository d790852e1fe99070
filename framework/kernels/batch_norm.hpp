#pragma once
// Raw-buffer fused batch-normalization kernels (no graph types, no xtensor), T = float or double.
// x, y, dy, dx are contiguous [outer, C, inner] buffers: NHWC is outer = N*H*W, inner = 1; NCHW is
// outer = N, inner = H*W; normalizing axis k of any tensor: outer = prod(dims before k), inner =
// prod(dims after k). gamma, beta, the statistics, dgamma and dbeta are [C]. Statistics run over
// the M = outer*inner elements of each channel; variances are biased (/M): the Bessel-corrected
// moving-variance update (var * M / max(M - 1, 1)) is the caller's. y may alias x, dx may alias dy.
//
// Threads: the statistics run per block of elements (each read from memory once) on kiln's thread
// pool and are merged in block order on the calling thread (Chan et al.), the normalization runs
// in chunks of rows (NHWC) or planes (NCHW): results are bit-identical for any thread count, and
// equal to a single-threaded run. Thread-safe; scratch memory comes from kernels::Scratch.
#include <cstdint>

namespace kiln::kernels {

struct BnLayout {
  std::int64_t outer, channels, inner;
};

/// Per channel mean and biased variance over the M = outer*inner elements (the statistics of the
/// training forward below); NaN when M = 0 (the mean of nothing).
template <class T>
void batch_moments(const T* x, BnLayout layout, T* mean, T* variance);

/// y = a * (x - m) + b with per-channel a, m, b ([C]); with an addend (x's layout), y = that
/// value, rounded to T, + addend (what an Add of the two computes); with an addend and its
/// per-channel scale s ([C]), that value + addend * s, the product rounded to T (a Mul, then
/// the Add). y may alias x or the addend.
template <class T>
void channel_affine(const T* x, const T* a, const T* m, const T* b, BnLayout layout, T* y,
                    const T* addend = nullptr, const T* addend_scale = nullptr);

/// y = gamma * (x - mean) * inv + beta with the batch statistics; writes batch_mean, batch_var
/// (biased) and saved_inv_std = inv = 1 / sqrt(batch_var + epsilon).
template <class T>
void fused_batch_norm_forward_training(const T* x, const T* gamma, const T* beta, BnLayout layout,
                                       double epsilon, T* y, T* batch_mean, T* batch_var,
                                       T* saved_inv_std);

/// y = gamma * (x - mean) / sqrt(var + epsilon) + beta with given (population) mean and var.
template <class T>
void fused_batch_norm_forward_inference(const T* x, const T* gamma, const T* beta, const T* mean,
                                        const T* var, BnLayout layout, double epsilon, T* y);

/// Gradients through the batch statistics, from batch_mean and saved_inv_std of the forward pass.
/// Writes (does not accumulate) dx, dgamma, dbeta.
template <class T>
void fused_batch_norm_backward_training(const T* dy, const T* x, const T* gamma,
                                        const T* batch_mean, const T* saved_inv_std,
                                        BnLayout layout, T* dx, T* dgamma, T* dbeta);

/// dx = dy * gamma / sqrt(pop_var + epsilon), dgamma, dbeta; no gradient to the statistics.
template <class T>
void fused_batch_norm_backward_inference(const T* dy, const T* x, const T* gamma, const T* pop_mean,
                                         const T* pop_var, BnLayout layout, double epsilon, T* dx,
                                         T* dgamma, T* dbeta);

}  // namespace kiln::kernels
