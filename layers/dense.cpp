// Dense (TF 1.8's tf.layers core.py Dense): argument checks and variables in build(), then MatMul
// (or tensordot's reshape / MatMul / reshape), BiasAdd and the activation. Only ops are composed.
#include "layers/dense.hpp"

#include <algorithm>

#include "framework/errors.hpp"
#include "framework/ops/common.hpp"
#include "framework/ops.hpp"
#include "framework/variable.hpp"

namespace kiln::layers {

using detail::at;

Dense::Dense(std::int64_t units, DenseOptions options) : Dense(units, std::move(options), false) {}

Dense::Dense(std::int64_t units, DenseOptions options, bool functional)
    : Layer(options.name, "dense", options.trainable, options.reuse, functional),
      units_(units),
      opts_(std::move(options)) {
  if (units_ < 1)
    throw ValueError("units must be >= 1, got " + std::to_string(units_) + " (layer '" +
                     display_name() + "')");
}

Tensor Dense::operator()(const Tensor& inputs) {
  if (!inputs.valid()) throw ValueError("Dense got a null Tensor (layer '" + display_name() + "')");
  const Shape& s = inputs.shape();
  const std::string where = at(display_name(), s);
  if (!s.has_rank())
    throw ValueError("Input 0 of layer " + display_name() +
                     " is incompatible with the layer: its rank is undefined, but the layer "
                     "requires a defined rank" +
                     where);
  if (s.rank() < 2)
    throw ValueError("Input 0 of layer " + display_name() +
                     " is incompatible with the layer: expected min_ndim=2, found ndim=" +
                     std::to_string(s.rank()) + where);
  const std::int64_t in = s[-1];
  if (in < 0)
    throw ValueError("The last dimension of the inputs to `Dense` should be defined. Found `None`" +
                     where);
  if (!is_floating(inputs.dtype()))
    throw TypeError(std::string("Dense needs a float32 or float64 input, got ") +
                    dtype_name(inputs.dtype()) + where);
  if (built()) {
    if (in != input_dim_)
      throw ValueError("Input 0 of layer " + display_name() +
                       " is incompatible with the layer: expected axis -1 of input shape to have "
                       "value " +
                       std::to_string(input_dim_) + " but got shape " + s.to_string() + where);
    if (inputs.dtype() != dtype_)
      throw TypeError(std::string("Dense was built for ") + dtype_name(dtype_) + " inputs, got " +
                      dtype_name(inputs.dtype()) + where);
  } else {
    dtype_ = inputs.dtype();
  }
  return call_in_scope(s, [&] { return call(inputs); });
}

void Dense::build(const Shape& input_shape) {
  input_dim_ = input_shape[-1];
  add_kernel_and_bias(detail::KernelBiasOptions(opts_), Shape{input_dim_, units_}, dtype_, kernel_, bias_);
}

void Dense::forget_variables() { kernel_ = bias_ = Variable(); }

Tensor Dense::call(const Tensor& inputs) {
  const Shape& s = inputs.shape();
  Tensor y;
  if (s.rank() == 2) {
    y = matmul(inputs, kernel_.value());
  } else {
    // TF's tensordot over the last axis: [..., in] -> [-1, in] . kernel -> [..., units].
    name_scope ns("Tensordot");
    const Tensor flat = matmul(reshape(inputs, Shape{-1, input_dim_}), kernel_.value());
    std::vector<std::int64_t> out(s.dims().begin(), s.dims().end() - 1);
    if (std::count(out.begin(), out.end(), -1) <= 1) {
      out.push_back(units_);
      y = reshape(flat, Shape(out));
    } else {
      y = reshape(flat, concat({slice(shape(inputs), {0}, {s.rank() - 1}),
                                kiln::detail::int32_vector({units_}, "units")},
                               0));
    }
  }
  return bias_activation(detail::KernelBiasOptions(opts_), y, bias_);
}

Tensor dense(const Tensor& inputs, std::int64_t units, const DenseOptions& options) {
  Dense layer(units, options, true);
  return layer(inputs);
}

}  // namespace kiln::layers
