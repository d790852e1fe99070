#pragma once
// Fused, in-place optimizer updates (TF's training ops: ApplyGradientDescent, ApplyMomentum,
// ApplyAdam, ApplyRMSProp, ApplyCenteredRMSProp, ApplyAdagrad). One op updates a variable and its
// slots element by element in their storage, instead of a dozen composed ops per variable.
//
// Inputs: the variable and its slots (ref inputs: written in place, never read as values), the
// hyperparameters (scalars of the variable's dtype), the gradient (the variable's shape). Output:
// the variable's new value. Shape errors are ValueError when the op is built; an uninitialized
// variable or slot is FailedPreconditionError, a gradient of another shape InvalidArgumentError.
// Not differentiable. Floating types only.
#include <string>

#include "framework/graph.hpp"

namespace kiln {

/// var -= alpha * delta
Tensor apply_gradient_descent(const Variable& var, const Tensor& alpha, const Tensor& delta, const std::string& name = "");
/// accum = accum * momentum + grad; var -= lr * accum (Nesterov: var -= lr * grad + lr * momentum * accum)
Tensor apply_momentum(const Variable& var, const Variable& accum, const Tensor& lr, const Tensor& grad,
                      const Tensor& momentum, bool use_nesterov = false, const std::string& name = "");
/// m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2);
/// var -= lr sqrt(1 - beta2_power) / (1 - beta1_power) * m / (sqrt(v) + epsilon)
Tensor apply_adam(const Variable& var, const Variable& m, const Variable& v, const Tensor& beta1_power,
                  const Tensor& beta2_power, const Tensor& lr, const Tensor& beta1, const Tensor& beta2,
                  const Tensor& epsilon, const Tensor& grad, const std::string& name = "");
/// ms += (g^2 - ms)(1 - rho); mom = mom * momentum + lr g / sqrt(ms + epsilon); var -= mom
Tensor apply_rms_prop(const Variable& var, const Variable& ms, const Variable& mom, const Tensor& lr,
                      const Tensor& rho, const Tensor& momentum, const Tensor& epsilon, const Tensor& grad,
                      const std::string& name = "");
/// As apply_rms_prop with mg += (g - mg)(1 - rho) and the denominator ms - mg^2 + epsilon.
Tensor apply_centered_rms_prop(const Variable& var, const Variable& mg, const Variable& ms, const Variable& mom,
                               const Tensor& lr, const Tensor& rho, const Tensor& momentum, const Tensor& epsilon,
                               const Tensor& grad, const std::string& name = "");
/// accum += g^2; var -= lr g / sqrt(accum)
Tensor apply_adagrad(const Variable& var, const Variable& accum, const Tensor& lr, const Tensor& grad,
                     const std::string& name = "");

}  // namespace kiln
