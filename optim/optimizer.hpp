#pragma once
// train::Optimizer: the base of every optimizer (TF1's tf.train.Optimizer), and the global step.
//
//   Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits);
//   Variable step = train::get_or_create_global_step();
//   Operation train_op;
//   {
//     control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));   // batch norm's updates
//     train_op = train::AdamOptimizer(1e-3).minimize(loss, {.global_step = step});
//   }
//   sess.run(train_op, feeds);
//
// minimize(loss) = compute_gradients(loss) + apply_gradients(pairs). apply_gradients builds, in this
// order (TF1's apply_gradients):
//   1. the slots of every variable that has a gradient (`create_slots`), outside any
//      control-dependency context and cond branch, at the root name scope (TF's init_scope), so
//      that global_variables_initializer() never depends on a training step;
//   2. under a name scope named after the optimizer ("Adam", "Adam_1", ...): per variable, in the
//      name scope "update_<var op name>", the dense update (`apply_dense`), then, when the variable
//      has a constraint, `assign(v, constraint(v))` under a control dependency on that update;
//   3. `finish(update_ops)`: a group of all updates (Adam also advances beta1_power/beta2_power there);
//   4. with a global step, `assign_add(global_step, 1)` under a control dependency on (3): it is
//      incremented once per run, after every update. The returned op is added to TRAIN_OP.
// Ordering guarantee (explicit in kiln, implicit in TF1's executor): every update op also waits for
// all the gradients of the call (and, in minimize, for the loss), so no gradient and no fetched loss
// of the same run ever reads a variable that has already been updated.
//
// The UPDATE_OPS guard (kiln's addition, it never changes TF's semantics): when apply_gradients or
// minimize builds a train op that does not depend on every op of the UPDATE_OPS collection (batch
// normalization's moving-statistics updates), it prints a warning to stderr naming the train op and
// the layers whose updates are missing, once per offending train op (a second train op built without
// the dependency, e.g. through apply_gradients, warns again). `missing_update_ops(train_op)` gives
// the same check as a function; `set_update_ops_warning(false)` or `MinimizeOptions::warn_missing_update_ops = false` silences it.
//
// Writing an optimizer (TF1's _create_slots / _prepare / _apply_dense / _finish split): derive from
// Optimizer, create slots in `create_slots`, build the per-variable update from ordinary ops in
// `apply_dense`. Constraints, regularizers (they are part of the loss), the global step, the TRAIN_OP
// collection and the UPDATE_OPS guard come from the base. See examples/custom_optimizer.cpp.
//
//   class SignSGD : public train::Optimizer {
//    public:
//     explicit SignSGD(train::Hyper lr) : Optimizer("SignSGD"), lr_(std::move(lr)) {}
//    protected:
//     Operation apply_dense(const Tensor& g, const Variable& v) override {
//       return assign_sub(v, hyper(lr_, v.dtype()) * sign(g)).op();
//     }
//    private:
//     train::Hyper lr_;
//   };
//
// Errors (ValueError, TF's wording): "No variables to optimize." (no var_list and no trainable
// variables); "No gradients provided for any variable, check your graph for ops that do not support
// gradients, between variables [...] and loss ..." (minimize); "No gradients provided for any
// variable: [...]." (apply_gradients); "No variables provided." (empty grads_and_vars);
// TypeError for a loss or variable that is not float32/float64.
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "framework/graph.hpp"
#include "framework/initializers.hpp"

namespace kiln::train {

/// A hyperparameter (learning rate, momentum, ...): a number or a scalar float tensor (a
/// placeholder, a schedule's output, a variable). Converted to the dtype of each variable.
class Hyper {
 public:
  Hyper(double value) : v_(value) {}           // NOLINT: implicit, like Python numbers
  Hyper(const Tensor& value) : v_(value) {}     // NOLINT
  Hyper(const Variable& value) : v_(value.value()) {}  // NOLINT
  bool is_tensor() const { return std::holds_alternative<Tensor>(v_); }
  /// The tensor, or empty for a number.
  std::optional<Tensor> tensor() const {
    if (const Tensor* t = std::get_if<Tensor>(&v_)) return *t;
    return std::nullopt;
  }
  /// The number; ValueError when it is a tensor.
  double value() const;
  /// A scalar tensor of `dtype` in the default graph: a constant, or the tensor (cast when its
  /// dtype differs). ValueError for a tensor that is not a scalar.
  Tensor as_tensor(DType dtype, const std::string& name = "") const;

 private:
  std::variant<double, Tensor> v_;
};

/// One (gradient, variable) pair; the gradient is empty when the loss does not depend on the variable.
using GradAndVar = std::pair<std::optional<Tensor>, Variable>;
using GradsAndVars = std::vector<GradAndVar>;

struct MinimizeOptions {
  std::optional<Variable> global_step;  // incremented once per run, after all updates
  std::vector<Variable> var_list;       // empty: TRAINABLE_VARIABLES
  std::string name;                     // empty: the optimizer's name
  bool warn_missing_update_ops = true;  // the UPDATE_OPS guard's stderr warning
};

class Optimizer {
 public:
  /// `name` names the ops ("Adam/update_w/...") and the slots ("w/Adam:0").
  explicit Optimizer(std::string name);
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = default;
  Optimizer& operator=(const Optimizer&) = default;

  /// Gradients of `loss` (summed over its elements when it is not a scalar) with respect to
  /// `var_list` (empty: TRAINABLE_VARIABLES), in var_list order; a gradient is empty when the loss
  /// does not depend on the variable. ValueError "No variables to optimize." when there are none.
  GradsAndVars compute_gradients(const Tensor& loss, const std::vector<Variable>& var_list = {}) const;

  /// The training op: updates every variable of a pair with a gradient (pairs without one are
  /// skipped), applies constraints, increments `global_step` once, and adds itself to TRAIN_OP.
  /// Runs the UPDATE_OPS guard. `name` empty: the optimizer's name (made unique).
  Operation apply_gradients(const GradsAndVars& grads_and_vars, std::optional<Variable> global_step = {},
                            const std::string& name = "");

  /// compute_gradients + apply_gradients; ValueError naming the variables and the loss when no
  /// variable has a gradient.
  Operation minimize(const Tensor& loss, const MinimizeOptions& options = {});

  /// The slot `slot_name` ("m", "v", "momentum", "rms", "mg", "accumulator") of `var`, or empty.
  std::optional<Variable> get_slot(const Variable& var, const std::string& slot_name) const;
  /// Names of the slots created so far, sorted.
  std::vector<std::string> get_slot_names() const;
  /// Every variable the optimizer created (slots, then non-slot variables such as beta1_power).
  std::vector<Variable> variables() const;
  const std::string& name() const { return name_; }

 protected:
  // ---- the prototyping interface (TF1's _create_slots / _prepare / _apply_dense / _finish)
  /// Creates the slots of `var_list` (the variables with a gradient), called by apply_gradients
  /// outside any control-dependency context. Must be idempotent: use the slot helpers below,
  /// which return an existing slot.
  virtual void create_slots(const std::vector<Variable>& var_list);
  /// Called once per apply_gradients, in the optimizer's name scope, before the updates.
  virtual void prepare();
  /// The update of one variable from its gradient, built from ordinary ops (assign, assign_sub, ...).
  /// Returns the op that completes the update.
  virtual Operation apply_dense(const Tensor& grad, const Variable& var) = 0;
  /// The op grouping all updates (`name` is the optimizer's name scope, e.g. "Adam"). Override to
  /// add work after the updates (Adam's beta powers); create it under control_dependencies(update_ops).
  virtual Operation finish(const std::vector<Operation>& update_ops, const std::string& name);

  // ---- helpers for derived classes
  /// A scalar tensor of `dtype` holding a hyperparameter.
  static Tensor hyper(const Hyper& h, DType dtype);
  /// The slot `slot_name` of `var`, created when absent as a non-trainable variable of var's shape
  /// and dtype named "<var op name>/<optimizer name>" (made unique: "w/Adam", "w/Adam_1"),
  /// initialised to zeros / to `value` / by `init`. Callable only from create_slots (or any code
  /// that is outside control dependencies).
  Variable zeros_slot(const Variable& var, const std::string& slot_name);
  Variable constant_slot(const Variable& var, double value, const std::string& slot_name);
  Variable slot_with_initializer(const Variable& var, const Initializer& init, const std::string& slot_name);
  /// The existing slot; InternalError when create_slots did not make it.
  Variable slot(const Variable& var, const std::string& slot_name) const;
  /// A non-trainable scalar variable shared by all variables of this optimizer in the current
  /// graph (TF's _create_non_slot_variable), e.g. Adam's "beta1_power"; returns the existing one.
  Variable create_non_slot_variable(const Hyper& initial_value, const std::string& var_name, DType dtype);
  /// The non-slot variable of the current graph; InternalError when absent.
  Variable non_slot_variable(const std::string& var_name) const;

 private:
  Operation apply_gradients_impl(const GradsAndVars& grads_and_vars, const std::optional<Variable>& global_step,
                                 const std::string& name, const Tensor* loss, bool warn);

  std::string name_;
  // slot name -> primary variable -> slot variable
  std::map<std::string, std::map<const detail::VariableInfo*, Variable>> slots_;
  std::vector<Variable> slot_order_;
  std::map<std::pair<const Graph*, std::string>, Variable> non_slot_;
  std::vector<Variable> non_slot_order_;
};

// ---- global step
/// The global step variable of the default graph (the GLOBAL_STEP collection, else a variable named
/// "global_step:0"), or empty. ValueError when the collection holds more than one.
std::optional<Variable> get_global_step();
/// A new int64 scalar variable "global_step" (zeros, not trainable, in GLOBAL_VARIABLES and
/// GLOBAL_STEP). ValueError "\"global_step\" already exists." when there is one.
Variable create_global_step();
Variable get_or_create_global_step();

// ---- the UPDATE_OPS guard
/// The items of UPDATE_OPS (in collection order) that `train_op` does not depend on through data or
/// control edges: the updates a run of `train_op` would skip.
std::vector<GraphElement> missing_update_ops(const Operation& train_op);
/// The layer names of those items: each op name without its last component
/// ("block1/batch_normalization/AssignMovingAvg" -> "block1/batch_normalization"), deduplicated.
std::vector<std::string> missing_update_layers(const Operation& train_op);
/// Turns the stderr warning on or off for the whole process (on by default). When on, every train op
/// built without a dependency on all of UPDATE_OPS warns once, as it is built. Thread-safe.
void set_update_ops_warning(bool enabled);
bool update_ops_warning_enabled();

}  // namespace kiln::train
