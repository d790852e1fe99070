#include "framework/variable.hpp"

#include <algorithm>

#include "framework/errors.hpp"
#include "framework/ops.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops/state_ops.hpp"

namespace kiln {

namespace detail {
InitScope::InitScope()
    : g_(&get_default_graph()), cond_(std::move(g_->cond_stack_)), name_scope_(g_->name_scope_), clear_(nullptr) {
  g_->cond_stack_.clear();
  g_->name_scope_.clear();
}
InitScope::~InitScope() {
  g_->cond_stack_ = std::move(cond_);
  g_->name_scope_ = name_scope_;
}

Variable adopt_variable(const Operation& op, const Operation& initializer, const Tensor& initial_value,
                        bool trainable) {
  Graph& g = op.graph();
  auto info = std::make_unique<VariableInfo>();
  info->node = op.node();
  info->name = op.name() + ":0";
  info->trainable = trainable;
  info->initial_value = initial_value;
  info->initializer = initializer;
  op.node()->variable = info.get();
  g.variables_.push_back(std::move(info));
  return Variable(g.variables_.back().get());
}
}  // namespace detail

namespace {

Graph::VarScope current_scope(const Graph& g) {
  return g.var_scope_stack_.empty() ? Graph::VarScope{} : g.var_scope_stack_.back();
}

// Creates the VariableV2 op, its initializer and its collections. `op_name` is final (unique).
Variable create_variable(Graph& g, const std::string& op_name, const Shape& shape, DType dtype,
                         const std::function<Tensor()>& make_initial_value, bool trainable,
                         std::vector<std::string> collections, const TensorFn& constraint,
                         const TensorFn& regularizer) {
  GraphCheckpoint checkpoint(g);  // all or nothing: a failing initializer leaves no variable behind
  Operation op = build_op("VariableV2", {}, detail::VariableAttrs{shape, dtype}, op_name);
  Variable v = detail::adopt_variable(op, Operation(), Tensor(), trainable);
  v.info()->constraint = constraint;
  v.info()->regularizer = regularizer;

  {
    name_scope ns(op.name() + "/");
    Tensor init;
    try {
      name_scope ini("Initializer");
      init = make_initial_value();
    } catch (const ValueError& e) {
      throw ValueError("Initializer for variable " + op.name() + ": " + e.what());
    }
    if (init.dtype() != dtype)
      throw ValueError("Initializer for variable " + op.name() + " is of dtype " + dtype_name(init.dtype()) +
                       ", the variable is " + dtype_name(dtype));
    if (!init.shape().is_compatible_with(shape))
      throw ValueError("Initializer for variable " + op.name() + " has shape " + init.shape().to_string() +
                       ", the variable has shape " + shape.to_string());
    v.info()->initial_value = init;
    v.info()->initializer = assign(v, init, "Assign").op();
  }
  if (collections.empty()) collections.push_back(GraphKeys::GLOBAL_VARIABLES);
  if (trainable && std::find(collections.begin(), collections.end(), GraphKeys::TRAINABLE_VARIABLES) == collections.end())
    collections.push_back(GraphKeys::TRAINABLE_VARIABLES);
  for (auto& c : collections) g.add_to_collection(c, v);
  if (regularizer) {
    name_scope ns(op.name() + "/Regularizer/");
    Tensor loss = regularizer(v.value());
    g.add_to_collection(GraphKeys::REGULARIZATION_LOSSES, loss);
  }
  checkpoint.commit();
  return v;
}

}  // namespace

Variable::Variable(const Tensor& initial_value, const Options& options) {
  Graph& g = initial_value.graph();
  if (!initial_value.shape().is_fully_defined())
    throw ValueError("Variable '" + (options.name.empty() ? std::string("Variable") : options.name) +
                     "': the initial value's shape must be fully defined, but is " +
                     initial_value.shape().to_string());
  const std::string op_name = g.unique_name(options.name.empty() ? "Variable" : options.name, false);
  detail::InitScope init_scope;
  *this = create_variable(g, op_name, initial_value.shape(), initial_value.dtype(),
                          [&] { return identity(initial_value, "initial_value"); }, options.trainable,
                          options.collections, options.constraint, {});
}

Variable get_variable(const std::string& name, const Shape& shape, const VariableOptions& options) {
  Graph& g = get_default_graph();
  const auto scope = current_scope(g);
  const std::string full = scope.name.empty() ? name : scope.name + "/" + name;
  detail::check_node_name(full, "Variable name ");
  auto it = g.var_store_.find(full);
  if (it != g.var_store_.end()) {
    if (!scope.reuse && !scope.auto_reuse)
      throw ValueError("Variable " + full +
                       " already exists, disallowed. Did you mean to set reuse=true or reuse=auto_reuse in "
                       "VarScope? Originally defined as op '" + it->second->node->name + "'.");
    Variable v(it->second);
    if (!shape.is_compatible_with(v.shape()))
      throw ValueError("Trying to share variable " + full + ", but specified shape " + shape.to_string() +
                       " and found shape " + v.shape().to_string() + ".");
    if (options.dtype != v.dtype())
      throw ValueError(std::string("Trying to share variable ") + full + ", but specified dtype " +
                       dtype_name(options.dtype) + " and found dtype " + dtype_name(v.dtype()) + ".");
    return v;
  }
  if (scope.reuse && !scope.auto_reuse)
    throw ValueError("Variable " + full +
                     " does not exist, or was not created with get_variable(). Did you mean to set "
                     "reuse=auto_reuse in VarScope?");
  if (!shape.is_fully_defined())
    throw ValueError("Shape of a new variable (" + full + ") must be fully defined, but instead was " +
                     shape.to_string() + ".");
  Initializer init = options.initializer;
  if (!init) {
    for (auto s = g.var_scope_initializers_.rbegin(); !init && s != g.var_scope_initializers_.rend(); ++s) init = *s;
    if (!init) init = is_floating(options.dtype) ? initializers::glorot_uniform() : initializers::zeros();
  }
  detail::InitScope init_scope;
  Variable v = create_variable(g, full, shape, options.dtype, [&] { return init(shape, options.dtype); },
                               options.trainable, options.collections, options.constraint, options.regularizer);
  g.var_store_[full] = v.info();
  return v;
}

// ---------------------------------------------------------------- variable_scope

variable_scope::variable_scope(const std::string& name, const VariableScopeOptions& options)
    : g_(&get_default_graph()), saved_name_scope_(g_->name_scope_) {
  const auto parent = current_scope(*g_);
  std::string base = name;
  const bool at_root = parent.name.empty() || options.absolute;
  if (!base.empty()) detail::check_scope_name(base, at_root);
  else if (!options.default_name.empty()) detail::check_scope_name(options.default_name, at_root);
  if (base.empty()) {
    if (options.default_name.empty())
      throw ValueError("variable_scope: a name or a default_name is required");
    const std::string prefix = parent.name.empty() ? "" : parent.name + "/";
    base = options.default_name;
    if (g_->var_scope_counts_[prefix + base] > 0) {
      int idx = 1;
      while (g_->var_scope_counts_[prefix + options.default_name + "_" + std::to_string(idx)] > 0) ++idx;
      base = options.default_name + "_" + std::to_string(idx);
    }
  }
  name_ = parent.name.empty() || options.absolute ? base : parent.name + "/" + base;
  ++g_->var_scope_counts_[name_];
  Graph::VarScope s{name_, parent.reuse, parent.auto_reuse};
  if (options.reuse == Reuse::reuse) s.reuse = true;
  if (options.reuse == Reuse::auto_reuse) s.auto_reuse = true;
  g_->var_scope_stack_.push_back(s);
  g_->var_scope_initializers_.push_back(options.initializer);
  if (options.auxiliary_name_scope) {
    const auto slash = base.rfind('/');
    g_->name_scope_ = g_->unique_name(slash == std::string::npos ? base : base.substr(slash + 1)) + "/";
  }
  name_scope_ = g_->name_scope_;
}

variable_scope::~variable_scope() {
  g_->var_scope_stack_.pop_back();
  g_->var_scope_initializers_.pop_back();
  g_->name_scope_ = saved_name_scope_;
  const std::string prefix = name_ + "/";
  for (auto& [k, count] : g_->var_scope_counts_)
    if (k.rfind(prefix, 0) == 0) count = 0;
}

bool variable_scope::reuse() const { return current_variable_scope_reuse(); }

std::string current_variable_scope_name() { return current_scope(get_default_graph()).name; }
bool current_variable_scope_reuse() {
  const auto s = current_scope(get_default_graph());
  return s.reuse;
}

// ---------------------------------------------------------------- variable sets

namespace {
std::vector<Variable> variables_in(const std::string& key) {
  std::vector<Variable> r;
  for (auto& e : get_collection(key))
    if (e.is_variable()) r.push_back(e.as_variable());
  return r;
}
}  // namespace

std::vector<Variable> global_variables() { return variables_in(GraphKeys::GLOBAL_VARIABLES); }
std::vector<Variable> trainable_variables() { return variables_in(GraphKeys::TRAINABLE_VARIABLES); }

Operation variables_initializer(const std::vector<Variable>& vars, const std::string& name) {
  std::vector<GraphElement> inits;
  for (auto& v : vars) inits.push_back(v.initializer());
  return group(inits, name);
}
Operation global_variables_initializer() { return variables_initializer(global_variables(), "init"); }

// ---------------------------------------------------------------- Variable accessors

namespace {
detail::VariableInfo& checked(detail::VariableInfo* info) {
  if (!info) throw ValueError("Variable is null (default-constructed)");
  return *info;
}
}  // namespace
const std::string& Variable::name() const { return checked(info_).name; }
const std::string& Variable::op_name() const { return checked(info_).node->name; }
Operation Variable::op() const { return Operation(checked(info_).node); }
Tensor Variable::value() const { return Tensor(checked(info_).node, 0); }
Operation Variable::initializer() const { return checked(info_).initializer; }
Tensor Variable::initial_value() const { return checked(info_).initial_value; }
const TensorFn& Variable::constraint() const { return checked(info_).constraint; }
const TensorFn& Variable::regularizer() const { return checked(info_).regularizer; }
bool Variable::trainable() const { return checked(info_).trainable; }

}  // namespace kiln
