#include "optim/adagrad.hpp"

#include <sstream>

#include "framework/errors.hpp"
#include "framework/ops.hpp"
#include "framework/ops/training_ops.hpp"

namespace kiln::train {

AdagradOptimizer::AdagradOptimizer(Hyper learning_rate, double initial_accumulator_value, const std::string& name)
    : Optimizer(name), learning_rate_(std::move(learning_rate)), initial_accumulator_value_(initial_accumulator_value) {
  if (!(initial_accumulator_value > 0)) {
    std::ostringstream os;
    os << "initial_accumulator_value must be positive: " << initial_accumulator_value;
    throw ValueError(os.str());
  }
}

void AdagradOptimizer::create_slots(const std::vector<Variable>& var_list) {
  for (auto& v : var_list) constant_slot(v, initial_accumulator_value_, "accumulator");
}

Operation AdagradOptimizer::apply_dense(const Tensor& grad, const Variable& var) {
  const Tensor lr = hyper(learning_rate_, var.dtype());
  const Variable accum = slot(var, "accumulator");
  return apply_adagrad(var, accum, lr, grad, "ApplyAdagrad").op();
}

}  // namespace kiln::train
