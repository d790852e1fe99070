#pragma once
// Data-parallel training, Horovod's shape: every rank builds the same graph, feeds its own slice of
// the global batch, and averages the gradients with all-reduce before applying them.
//
//   distributed::init();
//   ... build the model (batch norm with .synchronized = true) ...
//   distributed::DistributedOptimizer opt(train::AdamOptimizer(1e-3));
//   { control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS)); train_op = opt.minimize(loss); }
//   Session sess;
//   sess.run(global_variables_initializer());
//   distributed::broadcast_variables(sess, 0);   // every rank starts from rank 0's values
//
// compute_gradients: the wrapped optimizer's gradients, averaged over ranks. The gradients are
// fused: per dtype, flattened and concatenated into buffers of at most `fusion_bytes` (one
// AllReduce mean each, then sliced and reshaped back), so a step issues a few large collectives
// instead of one per variable. With one process the average is the gradient itself (bit for bit).
// apply_gradients: the wrapped optimizer's (the gradients are taken as already averaged).
// minimize = compute_gradients + apply_gradients; the averaged gradients depend on the loss, so no
// update reads a variable before the loss of the same run (the base optimizer's guarantee).
//
// broadcast_variables(sess, root): assigns root's value of every GLOBAL_VARIABLES variable of the
// session's graph on every rank (fused like the gradients), for after initialization (or a restore
// on rank 0). broadcast_global_variables(root) is the op it runs (TF Horovod's name).
//
// Errors: those of the wrapped optimizer; InvalidArgumentError/CollectiveTimeoutError at run time
// from the collectives (communicator.hpp); FailedPreconditionError for an uninitialized variable.
#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "framework/session.hpp"
#include "optim/optimizer.hpp"

namespace kiln::distributed {

struct DistributedOptimizerOptions {
  std::size_t fusion_bytes = 64u << 20;  // largest fused buffer (Horovod's default threshold)
};

class DistributedOptimizer {
 public:
  /// Takes a copy of `optimizer` (e.g. a temporary train::AdamOptimizer(1e-3)).
  template <class O>
    requires std::derived_from<O, train::Optimizer>
  explicit DistributedOptimizer(O optimizer, DistributedOptimizerOptions options = {})
      : DistributedOptimizer(std::shared_ptr<train::Optimizer>(std::make_shared<O>(std::move(optimizer))), options) {}
  /// Shares `optimizer` (ValueError when null).
  explicit DistributedOptimizer(std::shared_ptr<train::Optimizer> optimizer, DistributedOptimizerOptions options = {});

  train::GradsAndVars compute_gradients(const Tensor& loss, const std::vector<Variable>& var_list = {}) const;
  Operation apply_gradients(const train::GradsAndVars& grads_and_vars, std::optional<Variable> global_step = {},
                            const std::string& name = "");
  Operation minimize(const Tensor& loss, const train::MinimizeOptions& options = {});

  train::Optimizer& optimizer() const { return *inner_; }
  std::optional<Variable> get_slot(const Variable& var, const std::string& slot_name) const {
    return inner_->get_slot(var, slot_name);
  }
  std::vector<Variable> variables() const { return inner_->variables(); }
  const std::string& name() const { return inner_->name(); }

 private:
  train::GradsAndVars average(const train::GradsAndVars& grads_and_vars, const Tensor* loss) const;
  std::shared_ptr<train::Optimizer> inner_;
  DistributedOptimizerOptions options_;
};

/// An op that assigns root's value to every GLOBAL_VARIABLES variable of the default graph.
Operation broadcast_global_variables(int root = 0);
/// Builds broadcast_global_variables(root) in the session's graph and runs it.
void broadcast_variables(Session& sess, int root = 0);

}  // namespace kiln::distributed
