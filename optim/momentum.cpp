#include "optim/momentum.hpp"

#include "framework/ops.hpp"
#include "framework/ops/training_ops.hpp"

namespace kiln::train {

MomentumOptimizer::MomentumOptimizer(Hyper learning_rate, Hyper momentum, const MomentumOptions& options)
    : Optimizer(options.name),
      learning_rate_(std::move(learning_rate)),
      momentum_(std::move(momentum)),
      use_nesterov_(options.use_nesterov) {}

void MomentumOptimizer::create_slots(const std::vector<Variable>& var_list) {
  for (auto& v : var_list) zeros_slot(v, "momentum");
}

Operation MomentumOptimizer::apply_dense(const Tensor& grad, const Variable& var) {
  const DType dt = var.dtype();
  const Tensor lr = hyper(learning_rate_, dt);
  const Tensor momentum = hyper(momentum_, dt);
  const Variable accum = slot(var, "momentum");
  return apply_momentum(var, accum, lr, grad, momentum, use_nesterov_, "ApplyMomentum").op();
}

}  // namespace kiln::train
