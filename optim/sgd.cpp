#include "optim/sgd.hpp"

#include "framework/ops.hpp"
#include "framework/ops/training_ops.hpp"

namespace kiln::train {

GradientDescentOptimizer::GradientDescentOptimizer(Hyper learning_rate, const std::string& name)
    : Optimizer(name), learning_rate_(std::move(learning_rate)) {}

Operation GradientDescentOptimizer::apply_dense(const Tensor& grad, const Variable& var) {
  const Tensor lr = hyper(learning_rate_, var.dtype());
  return apply_gradient_descent(var, lr, grad, "ApplyGradientDescent").op();
}

}  // namespace kiln::train
