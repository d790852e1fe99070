#pragma once
// get_variable and variable scopes (TF1 semantics).
//
//   { variable_scope vs("block1");
//     Variable w = get_variable("w", {784, 10});     // "block1/w:0"
//   }
//   { variable_scope vs("block1", {.reuse = Reuse::reuse});
//     Variable same = get_variable("w", {784, 10});  // the same variable
//   }
// Errors (ValueError, TF's wording): a variable that exists without reuse ("Variable block1/w
// already exists, disallowed. ..."), reuse of one that does not ("Variable block1/w does not
// exist, or was not created with get_variable(). ..."), a shape or dtype that differs on reuse,
// a new variable whose shape is not fully defined, a full variable name that is not a valid node
// name ("Variable name 'block1/w 1' is not a valid node name ..."), a scope name that is not a valid
// scope name (framework/graph.hpp gives TF's patterns).
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "framework/initializers.hpp"

namespace kiln {

struct VariableOptions {
  DType dtype = float32;
  Initializer initializer;  // empty: the scope's, else glorot_uniform (floats) / zeros
  TensorFn regularizer;     // its loss goes to REGULARIZATION_LOSSES once, at creation
  bool trainable = true;
  TensorFn constraint;      // applied by optimizers after the variable's update
  std::vector<std::string> collections;  // empty: GLOBAL_VARIABLES
};

Variable get_variable(const std::string& name, const Shape& shape, const VariableOptions& options = {});

struct VariableScopeOptions {
  Reuse reuse = Reuse::inherit;
  /// Used when the name is empty: made unique within the enclosing scope (name, name_1, ...).
  std::string default_name;
  Initializer initializer;
  /// Also open a name scope of the same name (TF's auxiliary_name_scope).
  bool auxiliary_name_scope = true;
  /// The name is a full scope name, not relative to the enclosing scope (re-entering a captured
  /// scope, as layers do on later calls).
  bool absolute = false;
};

/// RAII `with tf.variable_scope(name, reuse=...)`. Re-entering a name restarts its sub-scope
/// counters (so unnamed layers get the same names again).
class variable_scope {
 public:
  explicit variable_scope(const std::string& name, const VariableScopeOptions& options = {});
  ~variable_scope();
  variable_scope(const variable_scope&) = delete;
  variable_scope& operator=(const variable_scope&) = delete;
  /// Full scope name, e.g. "outer/block1".
  const std::string& name() const { return name_; }
  /// The name scope it opened ("outer/block1_1/"), or the enclosing one.
  const std::string& original_name_scope() const { return name_scope_; }
  bool reuse() const;

 private:
  Graph* g_;
  std::string name_;
  std::string name_scope_;
  std::string saved_name_scope_;
};

/// Name of the current variable scope ("" at the top).
std::string current_variable_scope_name();
bool current_variable_scope_reuse();

std::vector<Variable> global_variables();
std::vector<Variable> trainable_variables();
/// A NoOp "init" depending on every global variable's initializer.
Operation global_variables_initializer();
Operation variables_initializer(const std::vector<Variable>& vars, const std::string& name = "init");

namespace detail {
/// Saves and clears control dependencies and cond branches (TF's init_scope), and goes to the
/// root name scope; restores all on destruction.
class InitScope {
 public:
  InitScope();
  ~InitScope();
  InitScope(const InitScope&) = delete;
  InitScope& operator=(const InitScope&) = delete;

 private:
  Graph* g_;
  std::vector<CondContext*> cond_;
  std::string name_scope_;
  control_dependencies clear_;
};

/// Makes the VariableV2 op `op` (built without one, as a graph file is imported) a Variable of its
/// graph with the given initializer (an op assigning `initial_value` to it) and trainable flag; it
/// joins no collection and no variable scope's store. Rolled back with the op by a GraphCheckpoint.
Variable adopt_variable(const Operation& op, const Operation& initializer, const Tensor& initial_value,
                        bool trainable);
}  // namespace detail

}  // namespace kiln
