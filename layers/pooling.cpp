// MaxPooling2D and AveragePooling2D (TF 1.8's tf.layers pooling.py): argument checks, then one
// MaxPool or AvgPool op.
#include "layers/pooling.hpp"

#include "framework/errors.hpp"
#include "framework/nn_conv.hpp"
#include "layers/core.hpp"  // detail::normalize_padding, detail::is_channels_first

namespace kiln::layers {

using detail::at;
using detail::expect_ndim;
using detail::expect_positive;

Pooling2D::Pooling2D(IntPair pool_size, IntPair strides, Pooling2DOptions options,
                     std::string base_name, bool max)
    : Layer(options.name, std::move(base_name), true, Reuse::inherit, false),
      pool_size_(pool_size),
      strides_(strides),
      opts_(std::move(options)),
      max_(max) {
  const std::string layer = display_name();
  expect_positive(pool_size_, "pool_size", layer);
  expect_positive(strides_, "strides", layer);
  padding_ = detail::normalize_padding(opts_.padding, layer);
  channels_first_ = detail::is_channels_first(opts_.data_format, layer);
}

void Pooling2D::build(const Shape&) {}

Tensor Pooling2D::operator()(const Tensor& inputs) {
  if (!inputs.valid()) throw ValueError("pooling got a null Tensor (layer '" + display_name() + "')");
  const Shape& s = inputs.shape();
  const std::string where = at(display_name(), s);
  expect_ndim(s, 4, display_name());
  if (!is_floating(inputs.dtype()))
    throw TypeError(std::string("pooling needs a float32 or float64 input, got ") +
                    dtype_name(inputs.dtype()) + where);
  const int h = channels_first_ ? 2 : 1, w = h + 1;
  if (padding_ == "VALID") {
    const auto fits = [&](std::int64_t in, std::int64_t k, const char* dim) {
      if (in >= 0 && k > in)
        throw ValueError("the pool's " + std::string(dim) + " " + std::to_string(k) +
                         " exceeds the input's " + dim + " " + std::to_string(in) +
                         " with padding \"valid\"" + where);
    };
    fits(s[h], pool_size_.h, "height");
    fits(s[w], pool_size_.w, "width");
  }
  const std::string format = channels_first_ ? "NCHW" : "NHWC";
  return call_in_scope(s, [&] {
    const std::vector<std::int64_t> k{pool_size_.h, pool_size_.w}, st{strides_.h, strides_.w};
    return max_ ? nn::max_pool(inputs, k, st, padding_, format)
                : nn::avg_pool(inputs, k, st, padding_, format);
  });
}

MaxPooling2D::MaxPooling2D(IntPair pool_size, IntPair strides, Pooling2DOptions options)
    : Pooling2D(pool_size, strides, std::move(options), "max_pooling2d", true) {}

AveragePooling2D::AveragePooling2D(IntPair pool_size, IntPair strides, Pooling2DOptions options)
    : Pooling2D(pool_size, strides, std::move(options), "average_pooling2d", false) {}

Tensor max_pooling2d(const Tensor& inputs, IntPair pool_size, IntPair strides,
                     const Pooling2DOptions& options) {
  MaxPooling2D layer(pool_size, strides, options);
  return layer(inputs);
}

Tensor average_pooling2d(const Tensor& inputs, IntPair pool_size, IntPair strides,
                         const Pooling2DOptions& options) {
  AveragePooling2D layer(pool_size, strides, options);
  return layer(inputs);
}

}  // namespace kiln::layers
