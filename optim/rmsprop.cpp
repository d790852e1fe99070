#include "optim/rmsprop.hpp"

#include "framework/ops.hpp"
#include "framework/ops/training_ops.hpp"

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
  if (options_.centered)
    return apply_centered_rms_prop(var, slot(var, "mg"), ms, mom, lr, decay, momentum, epsilon, grad,
                                   "ApplyCenteredRMSProp")
        .op();
  return apply_rms_prop(var, ms, mom, lr, decay, momentum, epsilon, grad, "ApplyRMSProp").op();
}

}  // namespace kiln::train
