#pragma once
// train::GradientDescentOptimizer (TF1's tf.train.GradientDescentOptimizer).
//
//   Operation train_op = train::GradientDescentOptimizer(0.1).minimize(loss);
//
// Update of each variable v with gradient g (TF1's ApplyGradientDescent):
//   v <- v - lr * g
// No slots.
#include <string>

#include "optim/optimizer.hpp"

namespace kiln::train {

class GradientDescentOptimizer : public Optimizer {
 public:
  /// `learning_rate`: a number or a scalar float tensor.
  explicit GradientDescentOptimizer(Hyper learning_rate, const std::string& name = "GradientDescent");

 protected:
  Operation apply_dense(const Tensor& grad, const Variable& var) override;

 private:
  Hyper learning_rate_;
};

}  // namespace kiln::train
