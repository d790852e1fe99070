#include "optim/rmsprop.hpp"

#include "framework/ops.hpp"

namespace kiln::train {

RMSPropOptimizer::RMSPropOptimizer(Hyper learning_rate, const RMSPropOptions& options)
    : Optimizer(options.name), learning_rate_(std::move(learning_rate)), options_(options) {}

void RMSPropOptimizer::create_slots(const std::vector<Variable>& var_list) {
  for (auto& v : var_list) {
    constant_slot(v, 1.0, "rms");
    if (options_.centered) zeros_slot(v, "mg");
    zeros_slot(v, "momentum");
  }
}

Operation RMSPropOptimizer::apply_dense(const Tensor& grad, const Variable& var) {
  const DType dt = var.dtype();
  const Tensor lr = hyper(learning_rate_, dt);
  const Tensor decay = hyper(options_.decay, dt);
  const Tensor momentum = hyper(options_.momentum, dt);
  const Tensor epsilon = hyper(options_.epsilon, dt);
  const Variable ms = slot(var, "rms");
  const Variable mom = slot(var, "momentum");
  const Tensor ms_t = assign(ms, ms.value() * decay + square(grad) * (1.0 - decay));
  Tensor denom = ms_t + epsilon;
  if (options_.centered) {
    const Variable mg = slot(var, "mg");
    const Tensor mg_t = assign(mg, mg.value() * decay + grad * (1.0 - decay));
    denom = ms_t - square(mg_t) + epsilon;
  }
  const Tensor mom_t = assign(mom, mom.value() * momentum + lr * grad / sqrt(denom));
  return assign_sub(var, mom_t, options_.centered ? "ApplyCenteredRMSProp" : "ApplyRMSProp").op();
}

}  // namespace kiln::train
