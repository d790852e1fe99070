#pragma once
// layers::BatchNormalization and layers::batch_normalization: TF1's tf.layers.BatchNormalization /
// tf.layers.batch_normalization (the 1.5-1.8 semantics, ../shared/BATCH_NORM.md).
//
//   Tensor training = placeholder(boolean, {}, "training");
//   Tensor h = layers::batch_normalization(x, {.momentum = 0.9, .training = training});
//   ...
//   Operation train_op;
//   {
//     control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));  // the moving averages
//     train_op = train::AdamOptimizer(1e-3).minimize(loss);
//   }
//
//   layers::BatchNormalization bn({.axis = 1});       // an object: call it again to share variables
//   Tensor y1 = bn(x1, true), y2 = bn(x2, training);  // bn.updates() holds 4 update ops
//
// Shapes: any input of known rank >= 1 whose normalized axes have known sizes; the output has the
// input's shape and dtype (float32 or float64; the variables take the input's dtype).
//
// Variables, created on the first call under the layer's variable scope (see layers/layer.hpp for
// naming and reuse), in this order: gamma (if scale), beta (if center), moving_mean,
// moving_variance, and with renorm renorm_mean, renorm_mean_weight (scalar), renorm_stddev,
// renorm_stddev_weight (scalar), all zero-initialized. Shape [C] for one axis; for several axes the
// input's rank with the normalized sizes kept and 1 elsewhere; with virtual batches one more
// leading 1 (a [6, 10, 10, 3] input with axis 3 gives [1, 1, 1, 1, 3]). gamma and beta are
// trainable iff `trainable`; the others never are (GLOBAL_VARIABLES only).
//
// Training mode: per normalized channel, over all other axes, the batch mean and biased variance;
// y = gamma * (x - mean) / sqrt(var + epsilon) + beta, differentiable through the statistics.
// Inference mode: the moving statistics. `training`:
//   false (the default)       inference, no update ops;
//   true                      training; two unconditional moving-average updates per call;
//   a scalar boolean tensor   decided at run time (cond): two update ops per call that change the
//                             moving statistics only when it is true (bit-identical otherwise).
//   A boolean constant tensor counts as its value (kiln decision; TF treats it as unknown).
// Update: v <- v - (v - value) * (1 - momentum), no zero-debiasing. The updates go to updates()
// and to GraphKeys::UPDATE_OPS; nothing runs them unless the train op depends on them.
//
// Execution paths. `fused` empty: the FusedBatchNorm op whenever it applies (rank 4, axis 1
// (NCHW) or 3 (NHWC), no renorm, no virtual batch, no adjustment), else the composed path
// (nn::moments + nn::batch_normalization); false: always composed; true: ValueError naming the
// reason when it cannot apply (kiln decision; TF falls back silently). Both give the same y; the
// fused path's moving variance receives the Bessel-corrected batch variance (factor N/(N-1), N the
// number of elements per channel), as TF's does.
//
// Renorm (Ioffe 2017, TF 1.4-1.8 formulation): with s_B = sqrt(var_B + eps),
// r = s_B / (renorm_stddev + (1 - w_stddev) s_B), d = (mu_B - (renorm_mean + (1 - w_mean) mu_B)) /
// (renorm_stddev + (1 - w_stddev) s_B), clipped to [rmin, rmax] and [-dmax, dmax], stop_gradient;
// y = gamma * ((x - mu_B) / s_B * r + d) + beta in training. The renorm averages (renorm_momentum)
// move when the layer's two update ops run; then moving_mean <- EMA(renorm_mean / w_mean),
// moving_variance <- EMA((renorm_stddev / w_stddev)^2 - eps).
//
// Virtual (ghost) batches of size V: the batch of N rows is viewed as [V, N / V, ...]; group j
// holds rows j, j + G, j + 2G, ... (G = N / V) and is normalized with its own statistics; the
// moving averages take one step with the mean over groups of the group means and variances.
//
// Adjustment: a callable from the dynamic input shape (int32 vector) to (adj_scale, adj_bias),
// applied in training only: y = ((x - mean) / sqrt(var + eps) * adj_scale + adj_bias) * gamma + beta.
//
// epsilon: a finite number > 0 on both paths (one rule, also nn::batch_normalization's and
// nn::fused_batch_norm's; TF's fused path needs it positive and clamps it to 1.001e-5, kiln uses it
// as given); otherwise ValueError naming the layer, when it is built.
//
// Synchronized (data-parallel training, distributed/): with `synchronized` and more than one rank
// when the layer is built, training-mode statistics are distributed::synchronized_moments (the
// per-channel count, mean and centred sum of squares all-reduced with Chan's merge), built inside
// the `training` cond so that inference runs no collective. Every replica normalizes with the global
// batch's mean and variance, updates identical moving averages, and the gradient through the
// statistics is all-reduced (it follows from the AllReduce gradient). The composed ops run then; the
// moving variance keeps the convention of the path the layer would take on one process (the
// Bessel-corrected global variance, N/(N-1) with N the global count, where it would be fused).
// With one rank (or before distributed::init()) the layer is exactly the ordinary one. Not with
// virtual_batch_size (ValueError).
//
// Errors (messages name the layer and the input shape): ValueError for "Invalid axis: <resolved>",
// "Duplicate axis: [...]", "Input has undefined `axis` dimension. Input shape: ...", "Input has
// undefined rank: ...", an empty axis list, an input of another rank or channel size than the first
// call's, virtual_batch_size <= 0 / with axis 0 / with adjustment / not dividing a known batch size,
// an unknown renorm_clipping key (from RenormClipping::from_dict; checked at build, with or
// without renorm), an epsilon that is not a finite number > 0, fused = true that cannot apply;
// TypeError for a non-float input, a later input of another dtype, a `training` tensor that is not
// boolean, or a clipping tensor that is not float; ValueError for a `training` or clipping tensor
// that is not a scalar. At run time, a batch that the virtual batch size does not divide is an
// InvalidArgumentError from the layer's Reshape op ("<layer>/Reshape"). Variable collisions and
// missing variables under reuse raise get_variable's ValueErrors ("Variable bn/gamma already
// exists, disallowed. ...", "Variable bn/gamma does not exist, or was not created with
// get_variable(). ...").
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "framework/graph.hpp"
#include "framework/initializers.hpp"
#include "layers/layer.hpp"

namespace kiln::layers {

/// TF's `training` argument: a bool or a scalar boolean tensor (e.g. a placeholder).
class Training {
 public:
  Training(bool value) : v_(value) {}              // NOLINT: implicit, like Python's bool
  Training(const Tensor& value) : v_(value) {}     // NOLINT
  Training(const char*) = delete;                  // no accidental pointer-to-bool
  bool is_tensor() const { return std::holds_alternative<Tensor>(v_); }
  /// The tensor; ValueError when it is a bool.
  const Tensor& tensor() const;
  /// The value when known while building: a bool, or a boolean Const tensor (kiln decision);
  /// empty for a run-time tensor.
  std::optional<bool> constant_value() const;

 private:
  std::variant<bool, Tensor> v_;
};

/// TF's `axis`: an int or a list of ints (negative values count from the end).
class Axis {
 public:
  Axis(int axis) : v_{axis} {}                                   // NOLINT
  Axis(std::initializer_list<int> axes) : v_(axes), list_(true) {} // NOLINT
  Axis(std::vector<int> axes) : v_(std::move(axes)), list_(true) {} // NOLINT
  const std::vector<int>& values() const { return v_; }
  bool is_list() const { return list_; }

 private:
  std::vector<int> v_;
  bool list_ = false;
};

/// A renorm clipping bound: a number or a scalar float tensor.
class ClipValue {
 public:
  ClipValue(double value) : v_(value) {}           // NOLINT
  ClipValue(const Tensor& value) : v_(value) {}    // NOLINT
  bool is_tensor() const { return std::holds_alternative<Tensor>(v_); }
  /// The number; ValueError when it is a tensor.
  double value() const;
  /// A scalar of `dtype` (a constant, or the tensor cast when its float dtype differs).
  Tensor as_tensor(DType dtype, const std::string& layer) const;

 private:
  std::variant<double, Tensor> v_;
};

/// TF's renorm_clipping dict as a struct; an absent key means no clipping on that side
/// (rmax = inf, rmin = 0, dmax = inf).
struct RenormClipping {
  std::optional<ClipValue> rmax{};
  std::optional<ClipValue> rmin{};
  std::optional<ClipValue> dmax{};
  /// Keys of the dict form other than rmax, rmin, dmax: the layer's build raises a ValueError
  /// naming them and the layer.
  std::vector<std::string> unknown_keys{};
  /// TF's dict form, {{"rmax", 3.0}, {"dmax", 5.0}}. An unknown key is kept in unknown_keys and
  /// reported when the layer is built (so that the message can name the layer).
  static RenormClipping from_dict(const std::map<std::string, ClipValue>& dict);
};

/// From the input's dynamic shape (an int32 vector) to (adj_scale, adj_bias), both broadcastable to
/// the input.
using Adjustment = std::function<std::pair<Tensor, Tensor>(const Tensor& input_shape)>;

/// tf.layers.batch_normalization's keyword arguments, in TF's order, with TF's defaults. Every
/// field has a default member initializer, so designated initializers that leave fields out do not
/// trip g++'s -Wmissing-field-initializers.
struct BatchNormalizationOptions {
  Axis axis = -1;
  double momentum = 0.99;
  double epsilon = 1e-3;
  bool center = true;
  bool scale = true;
  Initializer beta_initializer = initializers::zeros();
  Initializer gamma_initializer = initializers::ones();
  Initializer moving_mean_initializer = initializers::zeros();
  Initializer moving_variance_initializer = initializers::ones();
  TensorFn beta_regularizer{};  // empty: none
  TensorFn gamma_regularizer{};
  TensorFn beta_constraint{};   // applied by optimizers after the update
  TensorFn gamma_constraint{};
  Training training = false;   // used by the functional form; the class takes it per call
  bool trainable = true;
  std::string name{};          // empty: batch_normalization, batch_normalization_1, ...
  Reuse reuse = Reuse::inherit;
  bool renorm = false;
  RenormClipping renorm_clipping = {};
  double renorm_momentum = 0.99;
  std::optional<bool> fused{}; // empty: fused whenever it applies
  std::optional<int> virtual_batch_size{};
  Adjustment adjustment{};     // empty: none
  /// kiln extension (TF's SyncBatchNormalization): in training, the statistics of the global batch
  /// over all ranks of distributed::size() (see "Synchronized" above). Default false.
  bool synchronized = false;
};

class BatchNormalization : public Layer {
 public:
  explicit BatchNormalization(BatchNormalizationOptions options = {});
  /// Normalizes `inputs` (builds the variables on the first call). See the header comment.
  Tensor operator()(const Tensor& inputs, Training training = false);

  /// The variables; a null Variable (valid() false) before the first call or when not created.
  Variable gamma() const { return gamma_; }
  Variable beta() const { return beta_; }
  Variable moving_mean() const { return moving_mean_; }
  Variable moving_variance() const { return moving_variance_; }
  Variable renorm_mean() const { return renorm_mean_; }
  Variable renorm_mean_weight() const { return renorm_mean_weight_; }
  Variable renorm_stddev() const { return renorm_stddev_; }
  Variable renorm_stddev_weight() const { return renorm_stddev_weight_; }

  const BatchNormalizationOptions& options() const { return opts_; }
  /// After the first call: whether the fused op is used.
  bool fused() const { return use_fused_; }
  /// After the first call: the normalized axes, resolved (shifted by one with virtual batches).
  const std::vector<int>& axis() const { return axis_; }

 protected:
  void build(const Shape& input_shape) override;
  void forget_variables() override;

 private:
  friend Tensor batch_normalization(const Tensor& inputs, const BatchNormalizationOptions& options);
  BatchNormalization(BatchNormalizationOptions options, bool functional);
  Tensor call(const Tensor& inputs, const Training& training);
  Tensor fused_call(const Tensor& inputs, const Training& training);
  struct RenormCorrection {
    Tensor r, d, new_mean, new_variance;
  };
  RenormCorrection renorm_correction(const Tensor& mean, const Tensor& variance, const Training& training);
  std::vector<Tensor> synchronized_statistics(const Tensor& inputs, const std::vector<int>& reduction_axes,
                                              bool keep_dims, const Training& training);
  std::string where(const Shape& input_shape) const;

  BatchNormalizationOptions opts_;
  DType dtype_ = float32;
  Shape input_shape_;        // of the first call
  std::vector<int> axis_;    // resolved; shifted by one with virtual batches
  Shape param_shape_;
  bool use_fused_ = false;
  std::string data_format_;  // of the fused path
  bool synchronized_ = false;  // statistics over all ranks (options.synchronized, more than one rank)
  bool bessel_ = false;        // moving variance Bessel-corrected (the fused path's convention)
  Variable gamma_, beta_, moving_mean_, moving_variance_;
  Variable renorm_mean_, renorm_mean_weight_, renorm_stddev_, renorm_stddev_weight_;
};

/// Functional form: builds a BatchNormalization layer named `options.name` (the variable scope
/// itself: a second call with that name needs `reuse`) and applies it with `options.training`.
Tensor batch_normalization(const Tensor& inputs, const BatchNormalizationOptions& options = {});

}  // namespace kiln::layers
