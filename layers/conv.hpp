#pragma once
// layers::conv2d / layers::Conv2D: TF1's tf.layers.conv2d, outputs = activation(conv2d(inputs,
// kernel) + bias), one Conv2D op (im2col + gemm, framework/nn_conv.hpp) and a BiasAdd.
//
//   Tensor h = layers::conv2d(x, 32, {3, 3}, {.padding = "same", .use_bias = false});
//   Tensor c = layers::conv2d(xc, 16, 5, {.strides = 2, .data_format = "channels_first",
//                                         .activation = [](const Tensor& t) { return nn::relu(t); }});
//   layers::Conv2D conv(8, 3, {.name = "c1"});            // an object: call it again to share
//   Tensor a = conv(x1), b = conv(x2);
//
// Shapes: inputs [N, H, W, C] ("channels_last", default) or [N, C, H, W] ("channels_first"), C
// known -> [N, OH, OW, filters] (or [N, filters, OH, OW]); per spatial dimension with the effective
// kernel e = (k - 1) * dilation + 1: "valid" OH = ceil((H - e + 1) / stride), "same" OH =
// ceil(H / stride) (TF's rules; unknown dimensions stay unknown). padding is case-insensitive.
//
// Variables, created on the first call under the layer's variable scope (naming and reuse as
// layers/layer.hpp): `kernel` [kh, kw, C, filters] and, with use_bias, `bias` [filters], of the
// input's dtype (float32 or float64). kernel_initializer empty means the enclosing variable
// scope's initializer, else glorot_uniform (TF's None; fans include the receptive field);
// bias_initializer defaults to zeros. Regularizers, activity_regularizer, constraints and
// trainable as layers::Dense.
//
// Errors, naming the layer (and the input shape when there is one): ValueError for filters,
// kernel_size, strides or dilation_rate < 1, a padding other than valid/same, a data_format other
// than channels_last/channels_first, an input not of rank 4 ("expected ndim=4"), an unknown
// channel dimension, a "valid" kernel larger than a known spatial input size, and on later calls
// another channel count than the first call's; TypeError for a non-float input or a later input
// of another dtype.
#include <cstdint>
#include <string>

#include "framework/graph.hpp"
#include "framework/initializers.hpp"
#include "layers/layer.hpp"

namespace kiln::layers {

/// tf.layers.conv2d's keyword arguments after `kernel_size`, in TF's order, with TF's defaults.
struct Conv2DOptions {
  IntPair strides = 1;
  std::string padding = "valid";              // or "same" (any case)
  std::string data_format = "channels_last";  // or "channels_first"
  IntPair dilation_rate = 1;
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
  std::string name;  // empty: conv2d, conv2d_1, ...
  Reuse reuse = Reuse::inherit;
};

class Conv2D : public Layer {
 public:
  Conv2D(std::int64_t filters, IntPair kernel_size, Conv2DOptions options = {});
  Tensor operator()(const Tensor& inputs);

  std::int64_t filters() const { return filters_; }
  IntPair kernel_size() const { return kernel_size_; }
  const Conv2DOptions& options() const { return opts_; }
  /// The variables; null (valid() false) before the first call, bias also without use_bias.
  Variable kernel() const { return kernel_; }
  Variable bias() const { return bias_; }

 protected:
  void build(const Shape& input_shape) override;
  void forget_variables() override;

 private:
  friend Tensor conv2d(const Tensor& inputs, std::int64_t filters, IntPair kernel_size,
                       const Conv2DOptions& options);
  Conv2D(std::int64_t filters, IntPair kernel_size, Conv2DOptions options, bool functional);
  Tensor call(const Tensor& inputs);

  std::int64_t filters_;
  IntPair kernel_size_;
  Conv2DOptions opts_;
  std::string padding_;  // "SAME" / "VALID"
  bool channels_first_ = false;
  DType dtype_ = float32;
  std::int64_t input_channels_ = -1;
  Variable kernel_, bias_;
};

/// Functional form: a Conv2D layer named `options.name` (the variable scope itself: a second call
/// with that name needs `reuse`) applied once.
Tensor conv2d(const Tensor& inputs, std::int64_t filters, IntPair kernel_size,
              const Conv2DOptions& options = {});

}  // namespace kiln::layers
