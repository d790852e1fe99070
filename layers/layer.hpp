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
// - All or nothing (kiln's promise): a call that throws, while building or later, leaves the graph
//   as it was before the call (a GraphCheckpoint, framework/graph.hpp: no new ops, names, variables,
//   variable-store entries or collection items; the name counters as before) and the layer as it
//   was (unbuilt again after a failed first call), so a corrected retry under the same name builds
//   the same names.
// Subclasses implement build() (create variables with add_variable) and call the ops from their
// call operator through call_in_scope(). Layers hold no math of their own: they compose ops.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "framework/variable.hpp"

namespace kiln::layers {

/// TF's int-or-tuple arguments (kernel_size, strides, dilation_rate, pool_size): `3` means (3, 3),
/// `{3, 2}` means height 3, width 2.
struct IntPair {
  IntPair(std::int64_t both) : h(both), w(both) {}  // NOLINT: implicit, like Python's int
  IntPair(std::int64_t height, std::int64_t width) : h(height), w(width) {}
  std::int64_t h;
  std::int64_t w;
  friend bool operator==(const IntPair&, const IntPair&) = default;
};

namespace detail {
/// " (layer '<layer>', input shape <shape>)": the tail of the layers' error messages.
std::string at(const std::string& layer, const Shape& input_shape);
/// ValueError "<what> must be >= 1, got (h, w) (layer '<layer>')" unless both are >= 1.
void expect_positive(const IntPair& p, const char* what, const std::string& layer);
/// ValueError "Input 0 of layer <layer> is incompatible with the layer: expected ndim=<ndim>, found
/// ..." + at(layer, s) (TF's input_spec message) unless s has rank ndim.
void expect_ndim(const Shape& s, int ndim, const std::string& layer);

/// The kernel / bias keyword arguments Dense and Conv2D share (TF's names), viewed from either
/// options struct (the view must not outlive it).
struct KernelBiasOptions {
  template <class Options>
  explicit KernelBiasOptions(const Options& o)
      : activation(o.activation),
        use_bias(o.use_bias),
        kernel_initializer(o.kernel_initializer),
        bias_initializer(o.bias_initializer),
        kernel_regularizer(o.kernel_regularizer),
        bias_regularizer(o.bias_regularizer),
        activity_regularizer(o.activity_regularizer),
        kernel_constraint(o.kernel_constraint),
        bias_constraint(o.bias_constraint) {}
  const TensorFn& activation;
  bool use_bias;
  const Initializer& kernel_initializer;
  const Initializer& bias_initializer;
  const TensorFn& kernel_regularizer;
  const TensorFn& bias_regularizer;
  const TensorFn& activity_regularizer;
  const TensorFn& kernel_constraint;
  const TensorFn& bias_constraint;
};
}  // namespace detail

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
  /// Dense's and Conv2D's variables: `kernel` of `kernel_shape` and, with use_bias, `bias`
  /// [kernel_shape's last dimension], of `dtype`, with the options' initializers, regularizers and
  /// constraints (kernel_initializer empty: the scope's, else glorot_uniform).
  void add_kernel_and_bias(const detail::KernelBiasOptions& o, const Shape& kernel_shape, DType dtype,
                           Variable& kernel, Variable& bias);
  /// y + bias (BiasAdd in `data_format`, when bias is valid), then the activation; the activity
  /// regularizer's loss of the result goes to losses() and REGULARIZATION_LOSSES.
  Tensor bias_activation(const detail::KernelBiasOptions& o, Tensor y, const Variable& bias,
                         const std::string& data_format = "NHWC");
  /// Appends to updates() and to UPDATE_OPS (no duplicates).
  void add_update(const GraphElement& op);
  void add_loss(const Tensor& loss);
  /// Enters the layer's scopes (building on the first call, inside the new variable scope and
  /// name scope) and returns f()'s result. All or nothing: if build() or f() throws, the graph is
  /// rolled back to before the call, updates() and losses() lose what the call added, and a failed
  /// first call leaves the layer unbuilt (forget_variables() is called).
  Tensor call_in_scope(const Shape& input_shape, const std::function<Tensor()>& f);
  /// Called when a first call fails and its variables are gone from the graph: a subclass resets
  /// the Variable handles its build() stored (to null Variables).
  virtual void forget_variables() {}
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
