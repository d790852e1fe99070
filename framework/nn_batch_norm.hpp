#pragma once
// kiln::nn::fused_batch_norm, TF1's tf.nn.fused_batch_norm: batch normalization of a rank-4 tensor
// in one op ("FusedBatchNorm", gradient op "FusedBatchNormGrad"), NHWC or NCHW, float32 or float64.
//
//   Tensor x = placeholder(float32, {-1, 8, 8, 16});                         // NHWC, C = 16
//   auto [y, mean, variance] = nn::fused_batch_norm(x, gamma, beta);         // training
//   Tensor y_inf = nn::fused_batch_norm(x, gamma, beta, moving_mean, moving_variance, 1e-3,
//                                       "NHWC", /*is_training=*/false).y;     // inference
//
// Training (is_training true): per channel c, over the M = N*H*W elements of that channel,
//   mean = sum(x) / M, var = sum((x - mean)^2) / M (biased),
//   y = scale * (x - mean) / sqrt(var + epsilon) + offset,
// and the outputs are (y, mean, var * M / max(M - 1, 1)): the variance output is
// Bessel-corrected, as TF's, for the moving-variance update (tf.layers adds the factor N/(N-1) to
// its moving variance on the fused path; the composed path does not). `mean` and `variance` are
// ignored (they may be absent). Inference: y = scale * (x - mean) / sqrt(variance + epsilon) +
// offset with the given population statistics, which are passed through as outputs 1 and 2.
//
// The op has TF's five outputs: y, batch_mean, batch_variance, reserve_space_1 = the saved mean
// and reserve_space_2 = the saved 1/sqrt(var + epsilon) (training) or the population variance
// (inference); the last two feed FusedBatchNormGrad. Gradients (registered): dx, dscale, doffset
// (training: through the batch statistics; inference: dx = dy * scale / sqrt(variance + eps));
// none to mean and variance, nor from the statistics outputs. FusedBatchNormGrad has a registered
// gradient too (second order, composed from registered ops).
//
// kiln decisions: NCHW runs on the CPU; epsilon is used as given (TF clamps it to 1.001e-5 for
// cuDNN). Statistics are accumulated blockwise in double around a shifted mean, so an offset of 1e4
// on float32 data does not destroy the variance.
//
// Errors at build time (ValueError naming the op, its type and the input shapes): x not of rank 4;
// scale, offset, mean, variance not 1-D or of a size other than the channel count; data_format not
// "NHWC"/"NCHW"; an epsilon that is not a finite number > 0 (framework/nn_ops.hpp); is_training
// false without mean and variance.
// TypeError: x not float32/float64, or scale/offset/mean/variance of another dtype than x.
// At run time, the same shape mismatches are InvalidArgumentError naming the op.
#include <optional>
#include <string>

#include "framework/graph.hpp"

namespace kiln::nn {

/// The three outputs TF's Python function returns; the op's reserve outputs are y.op().output(3)
/// and y.op().output(4).
struct FusedBatchNormOutputs {
  Tensor y;               // same shape as x
  Tensor batch_mean;      // [C]
  Tensor batch_variance;  // [C]; Bessel-corrected in training
};

FusedBatchNormOutputs fused_batch_norm(const Tensor& x, const Tensor& scale, const Tensor& offset,
                                       const std::optional<Tensor>& mean = std::nullopt,
                                       const std::optional<Tensor>& variance = std::nullopt,
                                       double epsilon = 1e-3, const std::string& data_format = "NHWC",
                                       bool is_training = true, const std::string& name = "");

}  // namespace kiln::nn
