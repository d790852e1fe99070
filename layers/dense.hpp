#pragma once
// layers::dense / layers::Dense: TF1's tf.layers.dense, outputs = activation(inputs . kernel + bias).
//
//   Tensor logits = layers::dense(h, 10);                                  // "dense/kernel:0" [in, 10]
//   Tensor h2 = layers::dense(h, 128, {.activation = [](const Tensor& t) { return nn::relu(t); },
//                                      .kernel_regularizer = regularizers::l2(1e-4)});
//   layers::Dense fc(10, {.name = "fc"});                                  // an object: shared
//   Tensor a = fc(x1), b = fc(x2);                                         // variables
//
// Shapes: inputs [..., in] of rank >= 2 with `in` known -> [..., units]. Rank 2 is one MatMul;
// a higher rank is TF's tensordot: reshape to [-1, in], MatMul, reshape back (leading dimensions
// kept static as far as known). The bias is added with BiasAdd.
//
// Variables, created on the first call under the layer's variable scope (naming and reuse as
// layers/layer.hpp): `kernel` [in, units] and, with use_bias, `bias` [units], of the input's dtype
// (float32 or float64), trainable unless `trainable` is false. kernel_initializer empty means the
// enclosing variable scope's initializer, else glorot_uniform (TF's None); bias_initializer
// defaults to zeros. Regularizer losses go to REGULARIZATION_LOSSES (and losses()) once, at
// creation; activity_regularizer(outputs) is added on every call. Constraints are applied by the
// optimizers after each update.
//
// Errors, naming the layer and the input shape: ValueError for units < 1, an input of unknown rank
// or rank < 2, an unknown last dimension ("The last dimension of the inputs to `Dense` should be
// defined. Found `None`."), and on later calls a last dimension other than the first call's;
// TypeError for a non-float input or a later input of another dtype. Variable collisions and
// missing variables under reuse raise get_variable's ValueErrors.
#include <cstdint>
#include <string>

#include "framework/graph.hpp"
#include "framework/initializers.hpp"
#include "layers/layer.hpp"

namespace kiln::layers {

/// tf.layers.dense's keyword arguments after `units`, in TF's order, with TF's defaults.
struct DenseOptions {
  TensorFn activation;  // empty: linear
  bool use_bias = true;
  Initializer kernel_initializer;  // empty: the scope's initializer, else glorot_uniform
  Initializer bias_initializer = initializers::zeros();
  TensorFn kernel_regularizer;  // empty: none
  TensorFn bias_regularizer;
  TensorFn activity_regularizer;
  TensorFn kernel_constraint;
  TensorFn bias_constraint;
  bool trainable = true;
  std::string name;  // empty: dense, dense_1, ...
  Reuse reuse = Reuse::inherit;
};

class Dense : public Layer {
 public:
  explicit Dense(std::int64_t units, DenseOptions options = {});
  Tensor operator()(const Tensor& inputs);

  std::int64_t units() const { return units_; }
  const DenseOptions& options() const { return opts_; }
  /// The variables; null (valid() false) before the first call, bias also without use_bias.
  Variable kernel() const { return kernel_; }
  Variable bias() const { return bias_; }

 protected:
  void build(const Shape& input_shape) override;
  void forget_variables() override;

 private:
  friend Tensor dense(const Tensor& inputs, std::int64_t units, const DenseOptions& options);
  Dense(std::int64_t units, DenseOptions options, bool functional);
  Tensor call(const Tensor& inputs);

  std::int64_t units_;
  DenseOptions opts_;
  DType dtype_ = float32;
  std::int64_t input_dim_ = -1;
  Variable kernel_, bias_;
};

/// Functional form: a Dense layer named `options.name` (the variable scope itself: a second call
/// with that name needs `reuse`) applied once.
Tensor dense(const Tensor& inputs, std::int64_t units, const DenseOptions& options = {});

}  // namespace kiln::layers
