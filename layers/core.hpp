#pragma once
// layers::flatten / layers::Flatten and layers::dropout / layers::Dropout (TF1's tf.layers), and
// the argument checks the convolution and pooling layers share (IntPair is in layers/layer.hpp).
//
//   Tensor training = placeholder(boolean, {}, "training");
//   Tensor h = layers::flatten(x);                                    // [N, 7, 7, 64] -> [N, 3136]
//   h = layers::dropout(h, {.rate = 0.4, .training = training});      // cond on `training`
//
//   layers::Dropout drop({.rate = 0.5, .seed = 7});                   // an object: call it again
//   Tensor a = drop(h1, true), b = drop(h2, training);
//
// Flatten: [N, d1, d2, ...] -> [N, d1 * d2 * ...] (rank 1 gives [N, 1]); with data_format
// "channels_first" the channels go last first (Keras), so the flattened order is the same for
// both formats. Static dimensions are kept; with an unknown non-batch dimension the target shape
// is computed at run time. A scalar input: ValueError naming the layer.
//
// Dropout: training true keeps each element with probability 1 - rate scaled by 1 / (1 - rate)
// (nn::dropout, a new mask each run, seeded like random ops: `seed` and the graph seed); false
// returns `inputs` itself, unchanged (no op); a scalar boolean tensor decides at run time through
// cond (false: an Identity of inputs). A boolean constant tensor counts as its value. noise_shape
// as nn::dropout (-1: the input's dimension, TF's None), e.g. {-1, 1, 1, C} drops whole channels.
// Errors (naming the layer): rate outside [0, 1) or a non-float input: ValueError; a `training`
// tensor that is not boolean: TypeError, not a scalar: ValueError.
//
// Both layers have no variables; their ops go under the layer's name scope (`flatten/Reshape`,
// `dropout/dropout/...`).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "layers/batch_normalization.hpp"  // layers::Training
#include "layers/layer.hpp"

namespace kiln::layers {

/// tf.layers.flatten's keyword arguments.
struct FlattenOptions {
  std::string name;                           // empty: flatten, flatten_1, ...
  std::string data_format = "channels_last";  // or "channels_first"
};

class Flatten : public Layer {
 public:
  explicit Flatten(FlattenOptions options = {});
  Tensor operator()(const Tensor& inputs);

 protected:
  void build(const Shape& input_shape) override;

 private:
  FlattenOptions opts_;
};

Tensor flatten(const Tensor& inputs, const FlattenOptions& options = {});

/// tf.layers.dropout's keyword arguments, in TF's order.
struct DropoutOptions {
  double rate = 0.5;
  std::vector<std::int64_t> noise_shape;  // empty: the input's shape
  std::optional<std::int64_t> seed;
  Training training = false;  // used by the functional form; the class takes it per call
  std::string name;           // empty: dropout, dropout_1, ...
};

class Dropout : public Layer {
 public:
  explicit Dropout(DropoutOptions options = {});
  Tensor operator()(const Tensor& inputs, Training training = false);
  double rate() const { return opts_.rate; }

 protected:
  void build(const Shape& input_shape) override;

 private:
  DropoutOptions opts_;
};

Tensor dropout(const Tensor& inputs, const DropoutOptions& options = {});

namespace detail {
/// "SAME" / "VALID" from TF's layer spelling ("same", "valid", any case); ValueError naming the
/// layer otherwise.
std::string normalize_padding(const std::string& padding, const std::string& layer);
/// True for "channels_first", false for "channels_last"; ValueError naming the layer otherwise.
bool is_channels_first(const std::string& data_format, const std::string& layer);
/// Throws TypeError / ValueError naming the layer for a `training` tensor that is not a scalar
/// boolean.
void check_training(const Training& training, const std::string& layer);
}  // namespace detail

}  // namespace kiln::layers
