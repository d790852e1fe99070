#pragma once
// The layer base (TF1's tf.layers.Layer): a layer creates its variables on its first call, under its
// own variable scope, and can be called again to share them.
//
// - Naming (TF1's Layer._set_scope): the variable scope is opened on the first call.
//   * A functional form (`layers::dense(x, ..., {.name = "fc"})`, constructed with
//     name_is_scope = true) uses its name as the scope itself: a second functional call with the
//     same name and no reuse fails on its first variable ("Variable fc/kernel already exists,
//     disallowed. ...").
//   * With `reuse` (Reuse::reuse or Reuse::auto_reuse), the scope is exactly the name (or the base
//     name when unnamed), so the variables of an existing layer of that name are reused (TF's
//     "does not exist" error otherwise).
//   * Otherwise the name (or, unnamed, the base name such as `batch_normalization`) is a default
//     name made unique within the enclosing variable scope: `dense`, `dense_1`, ... (zero-based;
//     counters restart when that scope is re-entered, so re-entering a scope with reuse rebuilds
//     the same names). Two layer objects constructed with the same name thus get `bn`, `bn_1`.
//   Op names are made unique separately (a reusing call's ops go to `bn_1/...` and read `bn/...`
//   variables); later calls of one object re-enter its first call's name scope.
// - `reuse` is the scope's reuse flag while the layer creates its variables.
// - `trainable = false` makes every variable of the layer non-trainable.
// - Each call appends its update ops (e.g. batch norm's moving averages) to `updates()` and to
//   GraphKeys::UPDATE_OPS; regularizer losses of variables created by the layer go to `losses()`
//   (and to REGULARIZATION_LOSSES) once, when the variable is created.
// Subclasses implement build() (create variables with add_variable) and call the ops from their
// call operator through call_in_scope(). Layers hold no math of their own: they compose ops.
#include <functional>
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "framework/variable.hpp"

namespace kiln::layers {

class Layer {
 public:
  /// `name` empty: unnamed (base_name made unique). name_is_scope: see "Naming" above.
  Layer(std::string name, std::string base_name, bool trainable, Reuse reuse, bool name_is_scope = false);
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;
  Layer(Layer&&) = default;
  Layer& operator=(Layer&&) = default;

  /// The layer's name (its scope's last component), known after the first call.
  const std::string& name() const { return name_; }
  /// Full variable scope, e.g. "block1/batch_normalization", known after the first call.
  const std::string& scope_name() const { return scope_name_; }
  bool built() const { return built_; }
  bool trainable() const { return trainable_; }
  Reuse reuse() const { return reuse_; }
  const std::vector<GraphElement>& updates() const { return updates_; }
  const std::vector<Tensor>& losses() const { return losses_; }
  const std::vector<Variable>& variables() const { return variables_; }
  std::vector<Variable> trainable_variables() const;
  std::vector<Variable> non_trainable_variables() const;

 protected:
  /// Creates the layer's variables; runs once, inside the layer's variable scope.
  virtual void build(const Shape& input_shape) = 0;
  /// get_variable under the layer's scope, honouring the layer's trainable flag; records the
  /// variable and, when newly created with a regularizer, its loss.
  Variable add_variable(const std::string& name, const Shape& shape, VariableOptions options);
  /// Appends to updates() and to UPDATE_OPS (no duplicates).
  void add_update(const GraphElement& op);
  void add_loss(const Tensor& loss);
  /// Enters the layer's scopes (building on the first call, inside the new variable scope and
  /// name scope) and returns f()'s result. If build() throws, the layer stays unbuilt.
  Tensor call_in_scope(const Shape& input_shape, const std::function<Tensor()>& f);
  /// The layer's name for error messages before and after the first call.
  std::string display_name() const;

 private:
  std::string name_;
  std::string base_name_;
  std::string scope_name_;
  std::string name_scope_;
  bool trainable_;
  Reuse reuse_;
  bool name_is_scope_;
  bool built_ = false;
  std::vector<GraphElement> updates_;
  std::vector<Tensor> losses_;
  std::vector<Variable> variables_;
};

}  // namespace kiln::layers
