#include "layers/layer.hpp"

#include <algorithm>

#include "framework/errors.hpp"

namespace kiln::layers {

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

void Layer::add_update(const GraphElement& op) {
  if (std::find(updates_.begin(), updates_.end(), op) == updates_.end()) updates_.push_back(op);
  get_default_graph().add_to_collection_unique(GraphKeys::UPDATE_OPS, op);
}

void Layer::add_loss(const Tensor& loss) { losses_.push_back(loss); }

Tensor Layer::call_in_scope(const Shape& input_shape, const std::function<Tensor()>& f) {
  if (!built_) {
    // TF1's Layer._set_scope: an exact scope for functional names and for reuse, else a default
    // name made unique within the enclosing scope.
    const std::string& requested = name_.empty() ? base_name_ : name_;
    const bool exact = (name_is_scope_ && !name_.empty()) || reuse_ != Reuse::inherit;
    variable_scope vs(exact ? requested : std::string(), {.reuse = reuse_, .default_name = requested});
    const std::string scope_name = vs.name();
    const std::string name_scope = vs.original_name_scope();
    const std::string saved_name = name_;
    scope_name_ = scope_name;
    name_ = scope_name.substr(scope_name.rfind('/') + 1);
    try {
      build(input_shape);
    } catch (...) {
      // Unbuilt again: the next call opens a new scope.
      variables_.clear();
      losses_.clear();
      scope_name_.clear();
      name_ = saved_name;
      throw;
    }
    name_scope_ = name_scope;
    built_ = true;
    return f();
  }
  // Later calls re-enter the captured scope, reusing its variables, and its name scope.
  variable_scope vs(scope_name_, {.reuse = Reuse::reuse, .auxiliary_name_scope = false, .absolute = true});
  name_scope ns(name_scope_);
  return f();
}

}  // namespace kiln::layers
