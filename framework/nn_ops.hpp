#pragma once
// kiln::nn, TF's tf.nn: activations, softmax and cross entropies, moments and batch normalization,
// bias_add, l2_loss, dropout.
//
//   Tensor logits = nn::bias_add(matmul(h, w), b);                     // [N, C]
//   Tensor loss = reduce_mean(nn::sparse_softmax_cross_entropy_with_logits(labels, logits));
//   auto [mean, variance] = nn::moments(x, {0, 1, 2});                 // per channel of NHWC
//   Tensor y = nn::batch_normalization(x, mean, variance, beta, gamma, 1e-3);
//
// Every function builds ops in the default graph (or the inputs' graph); `name` empty means TF's
// default name. Shape errors are ValueError at build time, naming the op, its type and the input
// shapes; inputs of a dtype the op has no kernel for (activations and losses take float32 and
// float64 only) are TypeError. Kernels compute in the input's dtype; sums accumulate in double.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::nn {

// ---- activations: same shape and dtype as `features`; each has a registered gradient op. Each is
// a function object, so it is both called (`nn::relu(x)`, `nn::relu(x, "name")`) and used as a
// value where a TensorFn is expected (`layers::dense(x, 10, {.activation = nn::relu})`, as TF1's
// `activation=tf.nn.relu`).
/// One elementwise activation op of the given type, with its default name.
struct Activation {
  const char* type;  // the op type, e.g. "Relu"
  Tensor operator()(const Tensor& features, const std::string& name = "") const;
};
/// max(x, 0) ("Relu"; gradient "ReluGrad").
inline constexpr Activation relu{"Relu"};
/// min(max(x, 0), 6) ("Relu6").
inline constexpr Activation relu6{"Relu6"};
/// x if x > 0 else exp(x) - 1 ("Elu").
inline constexpr Activation elu{"Elu"};
/// 1 / (1 + exp(-x)) ("Sigmoid"); saturates to exactly 0 or 1, never NaN.
inline constexpr Activation sigmoid{"Sigmoid"};
/// ("Tanh").
inline constexpr Activation tanh{"Tanh"};
/// log(1 + exp(x)), computed as log1p(exp(-|x|)) + max(x, 0): finite for any finite x ("Softplus").
inline constexpr Activation softplus{"Softplus"};

// ---- softmax family. The max along `axis` is subtracted first, so logits of +-1000 stay finite.
/// exp(x) / sum(exp(x), axis) ("Softmax"); same shape as logits (rank >= 1). An axis outside the
/// rank: ValueError at build time (InvalidArgumentError at run time when the rank was unknown).
Tensor softmax(const Tensor& logits, int axis = -1, const std::string& name = "");
/// x - log(sum(exp(x), axis)) ("LogSoftmax").
Tensor log_softmax(const Tensor& logits, int axis = -1, const std::string& name = "");

// ---- losses; the class axis is the last axis of logits.
/// labels [N] (int32 or int64 class indices), logits [N, C] -> loss [N] (also [d0.., C] logits with
/// [d0..] labels). Op "SparseSoftmaxCrossEntropyWithLogits" with TF's two outputs (loss, backprop =
/// softmax - one_hot); only logits receive a gradient. Rank or size mismatch: ValueError; labels
/// not integer: TypeError; a label outside [0, C) at run time: InvalidArgumentError naming the op
/// and the label value.
Tensor sparse_softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits,
                                                const std::string& name = "");
/// labels [N, C] (a distribution per row, same dtype as logits), logits [N, C] -> loss [N] =
/// -sum(labels * log_softmax(logits), -1). Op "SoftmaxCrossEntropyWithLogits"; gradients flow to
/// logits and labels (TF v2). Shape mismatch: ValueError; dtype mismatch: TypeError.
Tensor softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits,
                                         const std::string& name = "");
/// Elementwise max(x, 0) - x * z + log(1 + exp(-|x|)) for logits x and labels z of the same shape
/// and dtype (composed: softplus(x) - x * z). Different static shapes: ValueError.
Tensor sigmoid_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits,
                                         const std::string& name = "");
/// sum(t^2) / 2 as a scalar ("L2Loss").
Tensor l2_loss(const Tensor& t, const std::string& name = "");

// ---- normalization
/// (mean, biased variance) of x over `axes` (empty: all axes; negative count from the end), with
/// the reduced axes kept as size 1 when keepdims. TF composes mean = reduce_mean(x), variance =
/// reduce_mean(squared_difference(x, stop_gradient(mean))); kiln computes the same two values in one
/// "Moments" op (one read of x, statistics around each block's mean: accurate for data far from
/// zero; the gradient is exact because d variance / d mean = 0) when x is a float tensor of known
/// rank whose kept axes are adjacent (batch norm's case), and TF's composition otherwise. The values
/// agree with the composition to rounding (the summation order differs).
std::pair<Tensor, Tensor> moments(const Tensor& x, std::vector<int> axes, bool keepdims = false,
                                  const std::string& name = "");
/// (x - mean) * scale / sqrt(variance + variance_epsilon) + offset, composed as inv =
/// rsqrt(variance + eps) * scale; (x - mean) * inv + offset (TF writes x * inv + (offset - mean *
/// inv), which cancels for data far from zero). mean, variance, offset and scale broadcast against
/// x (typically [C] for channels-last x); absent offset / scale mean 0 / 1.
/// variance_epsilon: a finite number > 0 (batch normalization's one rule, shared with
/// fused_batch_norm and the layer; TF does not check it here), else ValueError naming the op.
Tensor batch_normalization(const Tensor& x, const Tensor& mean, const Tensor& variance,
                           const std::optional<Tensor>& offset, const std::optional<Tensor>& scale,
                           double variance_epsilon, const std::string& name = "");

// ---- bias and dropout
/// x (rank >= 2) + bias (1-D, [C]) along the channel dimension: the last one for "NHWC", dimension
/// 1 for "NCHW" ("BiasAdd"; gradient "BiasAddGrad", the sum over all but the channel dimension).
/// bias not 1-D, a size mismatch or another data_format: ValueError.
Tensor bias_add(const Tensor& x, const Tensor& bias, const std::string& data_format = "NHWC",
                const std::string& name = "");
/// Keeps each element with probability keep = 1 - rate, scaled by 1 / keep; drops it (0) otherwise.
/// Composed: mask = floor(keep + uniform[0, 1)), y = x / keep * mask; new mask each run, seeded
/// like random_uniform. noise_shape (empty: x's shape; -1 entries: x's run-time dimension) must
/// broadcast to x's shape, e.g. {-1, 1, 1, C} drops whole channels of NHWC. rate == 0 returns x.
/// rate outside [0, 1), x not float, or noise_shape not broadcastable: ValueError.
Tensor dropout(const Tensor& x, double rate, std::vector<std::int64_t> noise_shape = {},
               std::optional<std::int64_t> seed = {}, const std::string& name = "");

// ---- debugging
/// x unchanged ("CheckNumerics", TF's tf.debugging.check_numerics). Running it with a NaN or an
/// infinity in x throws InvalidArgumentError "CheckNumerics '<op>': <message> : Tensor had NaN
/// values" (or "Inf", "Inf and NaN"). Its gradient is the incoming gradient, checked the same way
/// with TF's message. x not float32/float64: TypeError.
Tensor check_numerics(const Tensor& x, const std::string& message, const std::string& name = "");

}  // namespace kiln::nn

namespace kiln {
/// TF1's tf.add_check_numerics_ops(): a CheckNumerics (message "<op name>:<output index>") on every
/// float output of every op in the default graph, chained by control dependencies in creation
/// order, and an op grouping them. Running it (with the feeds the graph needs) throws
/// InvalidArgumentError naming the first op, in creation order, whose output holds a NaN or an Inf.
/// Not checked: variables, ops that write to a variable (checking would run them), earlier checks,
/// and ops inside a cond branch or fed by one (their values are checked where they leave the cond;
/// TF1 refuses graphs with control flow instead).
Operation add_check_numerics_ops();
}  // namespace kiln
namespace kiln::detail {
/// Batch normalization's epsilon rule (nn::batch_normalization, nn::fused_batch_norm and the
/// layer): a finite number > 0, else ValueError "epsilon must be a finite number > 0, got
/// <epsilon><context>".
void check_variance_epsilon(double epsilon, const std::string& context);
}  // namespace kiln::detail
