#include "optim/schedules.hpp"

#include "framework/errors.hpp"
#include "framework/ops.hpp"

namespace kiln::train {

Tensor exponential_decay(const Hyper& learning_rate, const Tensor& global_step, double decay_steps,
                         double decay_rate, bool staircase, const std::string& name) {
  if (!global_step.valid()) throw ValueError("global_step is required for exponential_decay.");
  if (!(decay_steps > 0)) throw ValueError("exponential_decay: decay_steps must be positive");
  name_scope ns(name);
  const Tensor lr = learning_rate.is_tensor() ? learning_rate.as_tensor(learning_rate.tensor()->dtype())
                                              : learning_rate.as_tensor(float32, "learning_rate");
  const DType dt = lr.dtype();
  const Tensor step = global_step.dtype() == dt ? global_step : cast(global_step, dt);
  Tensor p = divide(step, scalar(decay_steps, dt), "p");
  if (staircase) {
    // floor(p) from ops that exist everywhere: truncation, minus one where it rounded up (p < 0).
    const Tensor t = cast(cast(p, int64), dt);
    p = subtract(t, cast(less(p, t), dt), "floor");
  }
  return multiply(lr, pow(scalar(decay_rate, dt), p), "value");
}

Tensor piecewise_constant(const Tensor& x, const std::vector<double>& boundaries, const std::vector<double>& values,
                          DType dtype, const std::string& name) {
  if (!x.valid()) throw ValueError("piecewise_constant: x is a null Tensor");
  if (values.size() != boundaries.size() + 1)
    throw ValueError("The length of boundaries should be 1 less than the length of values");
  for (std::size_t i = 1; i < boundaries.size(); ++i)
    if (!(boundaries[i - 1] < boundaries[i])) throw ValueError("piecewise_constant: boundaries must be increasing");
  if (x.shape().rank() > 0)
    throw ValueError("piecewise_constant: x ('" + x.name() + "') must be a scalar, has shape " + x.shape().to_string());
  name_scope ns(name);
  // Compared in float64 (exact for integer steps below 2^53), so fractional boundaries keep their meaning.
  const Tensor xd = x.dtype() == float64 ? x : cast(x, float64);
  Tensor result = scalar(values.back(), dtype);
  for (std::size_t i = boundaries.size(); i-- > 0;)
    result = where(less_equal(xd, scalar(boundaries[i], float64)), scalar(values[i], dtype), result);
  return identity(result, "value");
}

}  // namespace kiln::train
