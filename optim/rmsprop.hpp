#pragma once
// train::RMSPropOptimizer (TF1's tf.train.RMSPropOptimizer, Hinton's lecture 6e, with momentum and
// an optional centered variant).
//
//   Operation train_op = train::RMSPropOptimizer(1e-3, {.momentum = 0.9, .centered = true}).minimize(loss);
//
// Slots "rms" (ONES, like TF1), "mg" (zeros, centered only) and "momentum" (zeros); variables
// "<var>/RMSProp:0", "<var>/RMSProp_1:0", ... in that order. Update of each variable v with gradient
// g (TF1's ApplyRMSProp / ApplyCenteredRMSProp), decay = rho:
//   ms  <- decay * ms + (1 - decay) * g^2
//   mg  <- decay * mg + (1 - decay) * g                           (centered only)
//   den <- ms + epsilon                (plain)
//   den <- ms - mg^2 + epsilon         (centered: an estimate of the variance)
//   mom <- momentum * mom + lr * g / sqrt(den)
//   v   <- v - mom
// With momentum = 0 the "momentum" slot still exists and holds the last step.
#include <string>

#include "optim/optimizer.hpp"

namespace kiln::train {

struct RMSPropOptions {
  Hyper decay = 0.9;
  Hyper momentum = 0.0;
  Hyper epsilon = 1e-10;
  bool centered = false;
  std::string name = "RMSProp";
};

class RMSPropOptimizer : public Optimizer {
 public:
  explicit RMSPropOptimizer(Hyper learning_rate, const RMSPropOptions& options = {});

 protected:
  void create_slots(const std::vector<Variable>& var_list) override;
  Operation apply_dense(const Tensor& grad, const Variable& var) override;

 private:
  Hyper learning_rate_;
  RMSPropOptions options_;
};

}  // namespace kiln::train
