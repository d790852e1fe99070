#pragma once
// train::AdagradOptimizer (TF1's tf.train.AdagradOptimizer, Duchi et al. 2011).
//
//   Operation train_op = train::AdagradOptimizer(0.1).minimize(loss);
//
// Slot "accumulator" (initialised to initial_accumulator_value; variable "<var>/Adagrad:0"). Update
// of each variable v with gradient g (TF1's ApplyAdagrad; no epsilon, the initial value keeps the
// denominator positive):
//   accum <- accum + g^2
//   v     <- v - lr * g / sqrt(accum)      (computed as lr * g * rsqrt(accum), like TF's kernel)
// ValueError when initial_accumulator_value <= 0.
#include <string>

#include "optim/optimizer.hpp"

namespace kiln::train {

class AdagradOptimizer : public Optimizer {
 public:
  explicit AdagradOptimizer(Hyper learning_rate, double initial_accumulator_value = 0.1,
                            const std::string& name = "Adagrad");

 protected:
  void create_slots(const std::vector<Variable>& var_list) override;
  Operation apply_dense(const Tensor& grad, const Variable& var) override;

 private:
  Hyper learning_rate_;
  double initial_accumulator_value_;
};

}  // namespace kiln::train
