#include "optim/adam.hpp"

#include <algorithm>

#include "framework/ops.hpp"
#include "framework/ops/training_ops.hpp"

namespace kiln::train {

AdamOptimizer::AdamOptimizer(Hyper learning_rate, Hyper beta1, Hyper beta2, Hyper epsilon, const std::string& name)
    : Optimizer(name),
      learning_rate_(std::move(learning_rate)),
      beta1_(std::move(beta1)),
      beta2_(std::move(beta2)),
      epsilon_(std::move(epsilon)) {}

void AdamOptimizer::create_slots(const std::vector<Variable>& var_list) {
  // TF: the beta powers take the dtype of (and are colocated with) the variable with the smallest name.
  const Variable first = *std::min_element(var_list.begin(), var_list.end(),
                                           [](const Variable& a, const Variable& b) { return a.name() < b.name(); });
  create_non_slot_variable(beta1_, "beta1_power", first.dtype());
  create_non_slot_variable(beta2_, "beta2_power", first.dtype());
  for (auto& v : var_list) {
    zeros_slot(v, "m");
    zeros_slot(v, "v");
  }
}

namespace {
Tensor as_dtype(const Tensor& t, DType dt) { return t.dtype() == dt ? t : cast(t, dt); }
}  // namespace

Operation AdamOptimizer::apply_dense(const Tensor& grad, const Variable& var) {
  const DType dt = var.dtype();
  const Tensor beta1_power = as_dtype(non_slot_variable("beta1_power").value(), dt);
  const Tensor beta2_power = as_dtype(non_slot_variable("beta2_power").value(), dt);
  const Tensor lr = hyper(learning_rate_, dt);
  const Tensor beta1 = hyper(beta1_, dt);
  const Tensor beta2 = hyper(beta2_, dt);
  const Tensor epsilon = hyper(epsilon_, dt);
  return apply_adam(var, slot(var, "m"), slot(var, "v"), beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
                    "ApplyAdam")
      .op();
}

Operation AdamOptimizer::finish(const std::vector<Operation>& update_ops, const std::string& name) {
  std::vector<Operation> all = update_ops;
  {
    control_dependencies after(std::vector<GraphElement>(update_ops.begin(), update_ops.end()));
    const Variable beta1_power = non_slot_variable("beta1_power");
    const Variable beta2_power = non_slot_variable("beta2_power");
    all.push_back(assign(beta1_power, beta1_power.value() * hyper(beta1_, beta1_power.dtype()), "update_beta1").op());
    all.push_back(assign(beta2_power, beta2_power.value() * hyper(beta2_, beta2_power.dtype()), "update_beta2").op());
  }
  return Optimizer::finish(all, name);
}

}  // namespace kiln::train
