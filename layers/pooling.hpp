#pragma once
// layers::max_pooling2d / MaxPooling2D and layers::average_pooling2d / AveragePooling2D: TF1's
// tf.layers pooling, one MaxPool or AvgPool op (framework/nn_conv.hpp) under the layer's name
// scope ("max_pooling2d/MaxPool").
//
//   Tensor p = layers::max_pooling2d(h, {2, 2}, {2, 2});                     // [N, 28, 28, C] -> 14
//   Tensor q = layers::average_pooling2d(hc, 3, 2, {.padding = "same", .data_format = "channels_first"});
//
// Shapes as layers::conv2d with `pool_size` as the kernel (no dilation): inputs [N, H, W, C]
// (channels_last) or [N, C, H, W] (channels_first) -> the pooled [N, OH, OW, C] / [N, C, OH, OW].
// Padding never takes part: max ignores it, average divides by the number of input elements in
// the window (TF). No variables.
//
// Errors, naming the layer: ValueError for pool_size or strides < 1, a padding other than
// valid/same (any case), a data_format other than channels_last/channels_first, an input not of
// rank 4, a "valid" window larger than a known spatial input size; TypeError for a non-float input.
#include <string>

#include "framework/graph.hpp"
#include "layers/layer.hpp"

namespace kiln::layers {

/// tf.layers.max_pooling2d / average_pooling2d keyword arguments after `strides`, in TF's order.
struct Pooling2DOptions {
  std::string padding = "valid";              // or "same" (any case)
  std::string data_format = "channels_last";  // or "channels_first"
  std::string name;                           // empty: max_pooling2d / average_pooling2d, _1, ...
};

/// The common part of the two pooling layers.
class Pooling2D : public Layer {
 public:
  Tensor operator()(const Tensor& inputs);
  IntPair pool_size() const { return pool_size_; }
  IntPair strides() const { return strides_; }
  const Pooling2DOptions& options() const { return opts_; }

 protected:
  Pooling2D(IntPair pool_size, IntPair strides, Pooling2DOptions options, std::string base_name,
            bool max);
  void build(const Shape& input_shape) override;

 private:
  IntPair pool_size_;
  IntPair strides_;
  Pooling2DOptions opts_;
  std::string padding_;  // "SAME" / "VALID"
  bool channels_first_ = false;
  bool max_;
};

class MaxPooling2D : public Pooling2D {
 public:
  MaxPooling2D(IntPair pool_size, IntPair strides, Pooling2DOptions options = {});
};

class AveragePooling2D : public Pooling2D {
 public:
  AveragePooling2D(IntPair pool_size, IntPair strides, Pooling2DOptions options = {});
};

Tensor max_pooling2d(const Tensor& inputs, IntPair pool_size, IntPair strides,
                     const Pooling2DOptions& options = {});
Tensor average_pooling2d(const Tensor& inputs, IntPair pool_size, IntPair strides,
                         const Pooling2DOptions& options = {});

}  // namespace kiln::layers
