// Flatten and Dropout (TF 1.8's tf.layers core.py), and the argument helpers of the conv and
// pooling layers. Only ops are composed here.
#include "layers/core.hpp"

#include <algorithm>
#include <cctype>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/ops/common.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops.hpp"

namespace kiln::layers {

namespace detail {

std::string normalize_padding(const std::string& padding, const std::string& layer) {
  std::string p = padding;
  std::transform(p.begin(), p.end(), p.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (p == "same") return "SAME";
  if (p == "valid") return "VALID";
  throw ValueError("The `padding` argument must be one of \"valid\", \"same\". Received: \"" +
                   padding + "\" (layer '" + layer + "')");
}

bool is_channels_first(const std::string& data_format, const std::string& layer) {
  if (data_format == "channels_first") return true;
  if (data_format == "channels_last") return false;
  throw ValueError(
      "The `data_format` argument must be one of \"channels_first\", \"channels_last\". "
      "Received: \"" +
      data_format + "\" (layer '" + layer + "')");
}

void check_training(const Training& training, const std::string& layer) {
  if (!training.is_tensor()) return;
  const Tensor& p = training.tensor();
  if (!p.valid()) throw ValueError("`training` is a null Tensor (layer '" + layer + "')");
  if (p.dtype() != boolean)
    throw TypeError("`training` must be a bool or a scalar boolean tensor, got '" + p.name() +
                    "' of dtype " + dtype_name(p.dtype()) + " (layer '" + layer + "')");
  if (p.shape().rank() > 0)
    throw ValueError("`training` must be a scalar boolean tensor, got '" + p.name() +
                     "' of shape " + p.shape().to_string() + " (layer '" + layer + "')");
}

}  // namespace detail

using detail::at;

// ---------------------------------------------------------------- Flatten

Flatten::Flatten(FlattenOptions options)
    : Layer(options.name, "flatten", true, Reuse::inherit, false), opts_(std::move(options)) {
  detail::is_channels_first(opts_.data_format, display_name());
}

void Flatten::build(const Shape&) {}

Tensor Flatten::operator()(const Tensor& inputs) {
  if (!inputs.valid()) throw ValueError("Flatten got a null Tensor (layer '" + display_name() + "')");
  const Shape& s = inputs.shape();
  if (s.rank() == 0)
    throw ValueError("Flatten needs an input of rank >= 1 (a batch), got a scalar" +
                     at(display_name(), s));
  const bool cf = detail::is_channels_first(opts_.data_format, display_name());
  return call_in_scope(s, [&] {
    Tensor x = inputs;
    if (cf && s.rank() >= 3) {  // NC... -> N...C (Keras)
      std::vector<int> perm{0};
      for (int a = 2; a < s.rank(); ++a) perm.push_back(a);
      perm.push_back(1);
      x = transpose(x, perm);
    }
    if (s.has_rank()) {
      std::int64_t rest = 1;
      for (int a = 1; a < s.rank(); ++a) rest = s[a] < 0 || rest < 0 ? -1 : rest * s[a];
      if (rest > 0) return reshape(x, Shape{-1, rest});
    }
    // A non-batch dimension unknown until run time (or zero): [shape(x)[0], -1].
    return reshape(x, concat({slice(shape(x), {0}, {1}), kiln::detail::int32_vector({-1}, "Const")}, 0));
  });
}

Tensor flatten(const Tensor& inputs, const FlattenOptions& options) {
  Flatten layer(options);
  return layer(inputs);
}

// ---------------------------------------------------------------- Dropout

Dropout::Dropout(DropoutOptions options)
    : Layer(options.name, "dropout", true, Reuse::inherit, false), opts_(std::move(options)) {
  if (!(opts_.rate >= 0 && opts_.rate < 1))
    throw ValueError("rate must be in the range [0, 1), got " + std::to_string(opts_.rate) +
                     " (layer '" + display_name() + "')");
}

void Dropout::build(const Shape&) {}

Tensor Dropout::operator()(const Tensor& inputs, Training training) {
  if (!inputs.valid()) throw ValueError("Dropout got a null Tensor (layer '" + display_name() + "')");
  if (!is_floating(inputs.dtype()))
    throw ValueError(std::string("Dropout needs a floating point input since it is scaled, got ") +
                     dtype_name(inputs.dtype()) + at(display_name(), inputs.shape()));
  detail::check_training(training, display_name());
  const std::optional<bool> known = training.constant_value();
  return call_in_scope(inputs.shape(), [&] {
    const auto drop = [&] { return nn::dropout(inputs, opts_.rate, opts_.noise_shape, opts_.seed); };
    if (known) return *known ? drop() : inputs;
    return cond(training.tensor(), drop, [&] { return identity(inputs); });
  });
}

Tensor dropout(const Tensor& inputs, const DropoutOptions& options) {
  Dropout layer(options);
  return layer(inputs, options.training);
}

}  // namespace kiln::layers
