#pragma once
// train::MomentumOptimizer (TF1's tf.train.MomentumOptimizer).
//
//   Operation train_op = train::MomentumOptimizer(0.01, 0.9, {.use_nesterov = true}).minimize(loss);
//
// Slot "momentum" (the accumulator, zeros; variable "<var>/Momentum:0"). Update of each variable v
// with gradient g (TF1's ApplyMomentum):
//   accum <- momentum * accum + g
//   v     <- v - lr * accum                              (use_nesterov = false)
//   v     <- v - lr * g - lr * momentum * accum          (use_nesterov = true; accum already updated)
#include <string>

#include "optim/optimizer.hpp"

namespace kiln::train {

struct MomentumOptions {
  bool use_nesterov = false;
  std::string name = "Momentum";
};

class MomentumOptimizer : public Optimizer {
 public:
  MomentumOptimizer(Hyper learning_rate, Hyper momentum, const MomentumOptions& options = {});

 protected:
  void create_slots(const std::vector<Variable>& var_list) override;
  Operation apply_dense(const Tensor& grad, const Variable& var) override;

 private:
  Hyper learning_rate_;
  Hyper momentum_;
  bool use_nesterov_;
};

}  // namespace kiln::train
