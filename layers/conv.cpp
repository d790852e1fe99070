// Conv2D (TF 1.8's tf.layers convolutional.py Conv2D): argument checks, variables in build(), then
// one Conv2D op, BiasAdd and the activation. Only ops are composed here.
#include "layers/conv.hpp"

#include "framework/errors.hpp"
#include "framework/nn_conv.hpp"
#include "framework/ops.hpp"
#include "framework/variable.hpp"
#include "layers/core.hpp"  // detail::normalize_padding, detail::is_channels_first

namespace kiln::layers {

using detail::at;
using detail::expect_ndim;
using detail::expect_positive;

Conv2D::Conv2D(std::int64_t filters, IntPair kernel_size, Conv2DOptions options)
    : Conv2D(filters, kernel_size, std::move(options), false) {}

Conv2D::Conv2D(std::int64_t filters, IntPair kernel_size, Conv2DOptions options, bool functional)
    : Layer(options.name, "conv2d", options.trainable, options.reuse, functional),
      filters_(filters),
      kernel_size_(kernel_size),
      opts_(std::move(options)) {
  const std::string layer = display_name();
  if (filters_ < 1)
    throw ValueError("filters must be >= 1, got " + std::to_string(filters_) + " (layer '" +
                     layer + "')");
  expect_positive(kernel_size_, "kernel_size", layer);
  expect_positive(opts_.strides, "strides", layer);
  expect_positive(opts_.dilation_rate, "dilation_rate", layer);
  padding_ = detail::normalize_padding(opts_.padding, layer);
  channels_first_ = detail::is_channels_first(opts_.data_format, layer);
}

Tensor Conv2D::operator()(const Tensor& inputs) {
  if (!inputs.valid()) throw ValueError("Conv2D got a null Tensor (layer '" + display_name() + "')");
  const Shape& s = inputs.shape();
  const std::string where = at(display_name(), s);
  expect_ndim(s, 4, display_name());
  const int c = channels_first_ ? 1 : 3, h = channels_first_ ? 2 : 1, w = h + 1;
  if (s[c] < 0)
    throw ValueError("The channel dimension of the inputs should be defined. Found `None`" + where);
  if (!is_floating(inputs.dtype()))
    throw TypeError(std::string("Conv2D needs a float32 or float64 input, got ") +
                    dtype_name(inputs.dtype()) + where);
  if (padding_ == "VALID") {
    const auto fits = [&](std::int64_t in, std::int64_t k, std::int64_t d, const char* dim) {
      const std::int64_t e = (k - 1) * d + 1;
      if (in >= 0 && e > in)
        throw ValueError("the kernel's effective " + std::string(dim) + " " + std::to_string(e) +
                         " exceeds the input's " + dim + " " + std::to_string(in) +
                         " with padding \"valid\"" + where);
    };
    fits(s[h], kernel_size_.h, opts_.dilation_rate.h, "height");
    fits(s[w], kernel_size_.w, opts_.dilation_rate.w, "width");
  }
  if (built()) {
    if (s[c] != input_channels_)
      throw ValueError("Input 0 of layer " + display_name() +
                       " is incompatible with the layer: expected axis " + std::to_string(c) +
                       " of input shape to have value " + std::to_string(input_channels_) +
                       " but got shape " + s.to_string() + where);
    if (inputs.dtype() != dtype_)
      throw TypeError(std::string("Conv2D was built for ") + dtype_name(dtype_) + " inputs, got " +
                      dtype_name(inputs.dtype()) + where);
  } else {
    dtype_ = inputs.dtype();
  }
  return call_in_scope(s, [&] { return call(inputs); });
}

void Conv2D::build(const Shape& input_shape) {
  input_channels_ = input_shape[channels_first_ ? 1 : 3];
  add_kernel_and_bias(detail::KernelBiasOptions(opts_),
                      Shape{kernel_size_.h, kernel_size_.w, input_channels_, filters_}, dtype_, kernel_, bias_);
}

void Conv2D::forget_variables() { kernel_ = bias_ = Variable(); }

Tensor Conv2D::call(const Tensor& inputs) {
  const std::string format = channels_first_ ? "NCHW" : "NHWC";
  Tensor y = nn::conv2d(inputs, kernel_.value(), {opts_.strides.h, opts_.strides.w}, padding_,
                        {.data_format = format,
                         .dilations = {opts_.dilation_rate.h, opts_.dilation_rate.w}});
  return bias_activation(detail::KernelBiasOptions(opts_), y, bias_, format);
}

Tensor conv2d(const Tensor& inputs, std::int64_t filters, IntPair kernel_size,
              const Conv2DOptions& options) {
  Conv2D layer(filters, kernel_size, options, true);
  return layer(inputs);
}

}  // namespace kiln::layers
