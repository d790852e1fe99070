#pragma once
// Raw-buffer fused batch-normalization kernels (no graph types, no xtensor).
//
// Every tensor x / y / dy / dx is a contiguous buffer viewed as [outer, C, inner]:
//   NHWC: outer = N*H*W, inner = 1;  NCHW: outer = N, inner = H*W;
//   any tensor with one normalized axis k: outer = prod(dims < k), inner = prod(dims > k).
// Per-channel vectors (gamma, beta, means, variances, inv_std, dgamma, dbeta) have C elements.
// Statistics are over the M = outer*inner elements of each channel; variances are BIASED (/M).
// The Bessel-corrected variance of the moving-variance update is the caller's: var * M / max(M-1,
// 1). Outputs may alias the same-shaped inputs (y == x, dx == dy); instantiated for float and
// double.
#include <cstdint>

namespace kiln::kernels {

struct BnLayout {
  std::int64_t outer, channels, inner;
};

/// In: x [outer,C,inner], gamma/beta [C]. Out: y [outer,C,inner]; batch_mean, batch_var (biased),
/// saved_inv_std = 1/sqrt(batch_var + epsilon), all [C].
template <class T>
void fused_batch_norm_forward_training(const T* x, const T* gamma, const T* beta, BnLayout layout,
                                       double epsilon, T* y, T* batch_mean, T* batch_var,
                                       T* saved_inv_std);

/// In: x, and [C] gamma, beta, mean, var (population statistics). Out: y =
/// gamma*(x-mean)/sqrt(var+eps)+beta.
template <class T>
void fused_batch_norm_forward_inference(const T* x, const T* gamma, const T* beta, const T* mean,
                                        const T* var, BnLayout layout, double epsilon, T* y);

/// In: dy, x [outer,C,inner]; gamma, batch_mean, saved_inv_std [C] from the training forward.
/// Out: dx [outer,C,inner]; dgamma, dbeta [C] (overwritten, not accumulated).
template <class T>
void fused_batch_norm_backward_training(const T* dy, const T* x, const T* gamma,
                                        const T* batch_mean, const T* saved_inv_std,
                                        BnLayout layout, T* dx, T* dgamma, T* dbeta);

/// In: dy, x [outer,C,inner]; gamma, pop_mean, pop_var [C]. Out: dx = dy*gamma/sqrt(pop_var+eps),
/// dgamma, dbeta [C]. No gradient flows to the population statistics.
template <class T>
void fused_batch_norm_backward_inference(const T* dy, const T* x, const T* gamma, const T* pop_mean,
                                         const T* pop_var, BnLayout layout, double epsilon, T* dx,
                                         T* dgamma, T* dbeta);

}  // namespace kiln::kernels
