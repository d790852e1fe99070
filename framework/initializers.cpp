#include "framework/initializers.hpp"

#include <cmath>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/ops.hpp"

namespace kiln::initializers {

Initializer zeros() {
  return [](const Shape& s, DType t) { return kiln::zeros(s, t); };
}
Initializer ones() {
  return [](const Shape& s, DType t) { return kiln::ones(s, t); };
}
Initializer constant(double value) {
  return [value](const Shape& s, DType t) { return kiln::fill(s, value, t); };
}
Initializer constant(const Array& value) {
  if (value.empty()) throw ValueError("initializers::constant: the value is an empty Array");
  return [value](const Shape& s, DType t) {
    if (value.shape().rank() == 0) return kiln::fill(s, value.to_double()(), t);
    if (value.shape() != s)
      throw ValueError("the constant initializer's value has shape " + value.shape().to_string() +
                       ", the requested shape is " + s.to_string());
    const Tensor c = kiln::constant(value, "Const");
    return c.dtype() == t ? c : kiln::cast(c, t);
  };
}
Initializer random_normal(double mean, double stddev, Seed seed) {
  return [=](const Shape& s, DType t) { return kiln::random_normal(s, mean, stddev, t, seed); };
}
Initializer truncated_normal(double mean, double stddev, Seed seed) {
  return [=](const Shape& s, DType t) { return kiln::truncated_normal(s, mean, stddev, t, seed); };
}
Initializer random_uniform(double minval, double maxval, Seed seed) {
  return [=](const Shape& s, DType t) { return kiln::random_uniform(s, minval, maxval, t, seed); };
}

Initializer variance_scaling(double scale, const std::string& mode, const std::string& distribution,
                             Seed seed) {
  if (scale <= 0) throw ValueError("variance_scaling: `scale` must be positive, got " + std::to_string(scale));
  if (mode != "fan_in" && mode != "fan_out" && mode != "fan_avg")
    throw ValueError("variance_scaling: invalid `mode` argument: " + mode);
  if (distribution != "truncated_normal" && distribution != "untruncated_normal" && distribution != "normal" &&
      distribution != "uniform")
    throw ValueError("variance_scaling: invalid `distribution` argument: " + distribution);
  return [=](const Shape& shape, DType t) {
    const auto& d = shape.dims();
    double fan_in = 1, fan_out = 1;
    if (d.size() == 1) {
      fan_in = fan_out = static_cast<double>(d[0]);
    } else if (d.size() >= 2) {
      double receptive = 1;
      for (std::size_t i = 0; i + 2 < d.size(); ++i) receptive *= static_cast<double>(d[i]);
      fan_in = static_cast<double>(d[d.size() - 2]) * receptive;
      fan_out = static_cast<double>(d[d.size() - 1]) * receptive;
    }
    const double fan = mode == "fan_in" ? fan_in : mode == "fan_out" ? fan_out : (fan_in + fan_out) / 2;
    const double s = scale / std::max(1.0, fan);
    if (distribution == "uniform") {
      const double limit = std::sqrt(3.0 * s);
      return kiln::random_uniform(shape, -limit, limit, t, seed);
    }
    if (distribution == "untruncated_normal") return kiln::random_normal(shape, 0.0, std::sqrt(s), t, seed);
    // Stddev of a unit normal truncated to [-2, 2] is 0.87962566103423978.
    return kiln::truncated_normal(shape, 0.0, std::sqrt(s) / 0.87962566103423978, t, seed);
  };
}
Initializer glorot_uniform(Seed seed) { return variance_scaling(1.0, "fan_avg", "uniform", seed); }
Initializer glorot_normal(Seed seed) { return variance_scaling(1.0, "fan_avg", "truncated_normal", seed); }
Initializer he_normal(Seed seed) { return variance_scaling(2.0, "fan_in", "truncated_normal", seed); }

}  // namespace kiln::initializers
