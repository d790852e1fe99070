#pragma once
// train::AdamOptimizer (TF1's tf.train.AdamOptimizer, Kingma & Ba, "Adam", section 2 with the
// "epsilon hat" of the paper's last paragraph of section 2).
//
//   Operation train_op = train::AdamOptimizer(1e-3).minimize(loss);
//
// Slots "m" and "v" (zeros; variables "<var>/Adam:0" and "<var>/Adam_1:0"). Non-slot variables
// "beta1_power" and "beta2_power" (scalars initialised to beta1 and beta2, of the dtype of the
// variable with the smallest name, not trainable), shared by all variables of the optimizer in a
// graph. At step t = 1, 2, ... (beta1_power = beta1^t, beta2_power = beta2^t), for each variable v
// with gradient g (TF1's ApplyAdam):
//   lr_t <- lr * sqrt(1 - beta2^t) / (1 - beta1^t)
//   m    <- beta1 * m + (1 - beta1) * g
//   v_   <- beta2 * v_ + (1 - beta2) * g^2
//   v    <- v - lr_t * m / (sqrt(v_) + epsilon)
// then, after every variable's update (in `finish`):
//   beta1_power <- beta1_power * beta1;  beta2_power <- beta2_power * beta2
// Epsilon is added to sqrt(v_) as TF applies it (not to the bias-corrected v_), so TF's epsilon is
// the paper's "epsilon hat".
#include <string>

#include "optim/optimizer.hpp"

namespace kiln::train {

class AdamOptimizer : public Optimizer {
 public:
  explicit AdamOptimizer(Hyper learning_rate = 0.001, Hyper beta1 = 0.9, Hyper beta2 = 0.999,
                         Hyper epsilon = 1e-8, const std::string& name = "Adam");

 protected:
  void create_slots(const std::vector<Variable>& var_list) override;
  Operation apply_dense(const Tensor& grad, const Variable& var) override;
  Operation finish(const std::vector<Operation>& update_ops, const std::string& name) override;

 private:
  Hyper learning_rate_;
  Hyper beta1_;
  Hyper beta2_;
  Hyper epsilon_;
};

}  // namespace kiln::train
