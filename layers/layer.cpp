#include "layers/layer.hpp"

#include <algorithm>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops.hpp"

namespace kiln::layers {

namespace detail {
std::string at(const std::string& layer, const Shape& input_shape) {
  return " (layer '" + layer + "', input shape " + input_shape.to_string() + ")";
}

void expect_positive(const IntPair& p, const char* what, const std::string& layer) {
  if (p.h < 1 || p.w < 1)
    throw ValueError(std::string(what) + " must be >= 1, got (" + std::to_string(p.h) + ", " +
                     std::to_string(p.w) + ") (layer '" + layer + "')");
}

void expect_ndim(const Shape& s, int ndim, const std::string& layer) {
  if (s.rank() != ndim)
    throw ValueError(
        "Input 0 of layer " + layer +
        " is incompatible with the layer: expected ndim=" + std::to_string(ndim) + ", found " +
        (s.has_rank() ? "ndim=" + std::to_string(s.rank()) : "an undefined rank") + at(layer, s));
}

}  // namespace detail

Layer::Layer(std::string name, std::string base_name, bool trainable, Reuse reuse, bool name_is_scope)
    : name_(std::move(name)),
      base_name_(std::move(base_name)),
      trainable_(trainable),
      reuse_(reuse),
      name_is_scope_(name_is_scope) {}

std::vector<Variable> Layer::trainable_variables() const {
  std::vector<Variable> r;
  for (auto& v : variables_)
    if (v.trainable()) r.push_back(v);
  return r;
}

std::vector<Variable> Layer::non_trainable_variables() const {
  std::vector<Variable> r;
  for (auto& v : variables_)
    if (!v.trainable()) r.push_back(v);
  return r;
}

std::string Layer::display_name() const { return scope_name_.empty() ? (name_.empty() ? base_name_ : name_) : scope_name_; }

Variable Layer::add_variable(const std::string& name, const Shape& shape, VariableOptions options) {
  options.trainable = options.trainable && trainable_;
  auto& g = get_default_graph();
  const auto losses_before = g.get_collection(GraphKeys::REGULARIZATION_LOSSES).size();
  Variable v = get_variable(name, shape, options);
  const auto losses_after = g.get_collection(GraphKeys::REGULARIZATION_LOSSES);
  if (losses_after.size() > losses_before) losses_.push_back(losses_after.back().as_tensor());
  if (std::find(variables_.begin(), variables_.end(), v) == variables_.end()) variables_.push_back(v);
  return v;
}

void Layer::add_kernel_and_bias(const detail::KernelBiasOptions& o, const Shape& kernel_shape, DType dtype,
                                Variable& kernel, Variable& bias) {
  kernel = add_variable("kernel", kernel_shape,
                        {.dtype = dtype,
                         .initializer = o.kernel_initializer,
                         .regularizer = o.kernel_regularizer,
                         .trainable = true,
                         .constraint = o.kernel_constraint});
  if (o.use_bias)
    bias = add_variable("bias", Shape{kernel_shape[-1]},
                        {.dtype = dtype,
                         .initializer = o.bias_initializer,
                         .regularizer = o.bias_regularizer,
                         .trainable = true,
                         .constraint = o.bias_constraint});
}

Tensor Layer::bias_activation(const detail::KernelBiasOptions& o, Tensor y, const Variable& bias,
                              const std::string& data_format) {
  if (bias.valid()) y = nn::bias_add(y, bias.value(), data_format);
  if (o.activation) y = o.activation(y);
  if (o.activity_regularizer) {
    name_scope ns("ActivityRegularizer");
    const Tensor loss = o.activity_regularizer(y);
    add_loss(loss);
    add_to_collection(GraphKeys::REGULARIZATION_LOSSES, loss);
  }
  return y;
}

void Layer::add_update(const GraphElement& op) {
  if (std::find(updates_.begin(), updates_.end(), op) == updates_.end()) updates_.push_back(op);
  get_default_graph().add_to_collection_unique(GraphKeys::UPDATE_OPS, op);
}

void Layer::add_loss(const Tensor& loss) { losses_.push_back(loss); }

Tensor Layer::call_in_scope(const Shape& input_shape, const std::function<Tensor()>& f) {
  // All or nothing: the graph goes back to this checkpoint unless the call completes.
  GraphCheckpoint checkpoint(get_default_graph());
  const std::size_t updates = updates_.size(), losses = losses_.size();
  const bool was_built = built_;
  const std::string saved_name = name_;
  try {
    Tensor y;
    if (!built_) {
      // TF1's Layer._set_scope: an exact scope for functional names and for reuse, else a default
      // name made unique within the enclosing scope.
      const std::string& requested = name_.empty() ? base_name_ : name_;
      const bool exact = (name_is_scope_ && !name_.empty()) || reuse_ != Reuse::inherit;
      variable_scope vs(exact ? requested : std::string(), {.reuse = reuse_, .default_name = requested});
      scope_name_ = vs.name();
      name_ = scope_name_.substr(scope_name_.rfind('/') + 1);
      build(input_shape);
      name_scope_ = vs.original_name_scope();
      built_ = true;
      y = f();
    } else {
      // Later calls re-enter the captured scope, reusing its variables, and its name scope.
      variable_scope vs(scope_name_, {.reuse = Reuse::reuse, .auxiliary_name_scope = false, .absolute = true});
      name_scope ns(name_scope_);
      y = f();
    }
    checkpoint.commit();
    return y;
  } catch (...) {
    updates_.erase(updates_.begin() + static_cast<std::ptrdiff_t>(updates), updates_.end());
    losses_.erase(losses_.begin() + static_cast<std::ptrdiff_t>(losses), losses_.end());
    if (!was_built) {  // unbuilt again: the next call opens a new scope
      built_ = false;
      variables_.clear();
      scope_name_.clear();
      name_scope_.clear();
      name_ = saved_name;
      forget_variables();
    }
    throw;  // the checkpoint rolls the graph back as it goes
  }
}

}  // namespace kiln::layers
