#include "optim/optimizer.hpp"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <set>

#include "autodiff/gradients.hpp"
#include "framework/errors.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops.hpp"
#include "framework/variable.hpp"

namespace kiln::train {

// ---------------------------------------------------------------- Hyper

double Hyper::value() const {
  if (const double* d = std::get_if<double>(&v_)) return *d;
  throw ValueError("Hyperparameter is the tensor '" + std::get<Tensor>(v_).name() + "', not a number");
}

Tensor Hyper::as_tensor(DType dtype, const std::string& name) const {
  if (const double* d = std::get_if<double>(&v_)) return scalar(*d, dtype, name);
  const Tensor& t = std::get<Tensor>(v_);
  if (!t.valid()) throw ValueError("Hyperparameter is a null Tensor");
  if (t.shape().rank() > 0)
    throw ValueError("Hyperparameter tensor '" + t.name() + "' must be a scalar, but has shape " +
                     t.shape().to_string());
  if (!is_floating(t.dtype()))
    throw TypeError("Hyperparameter tensor '" + t.name() + "' has dtype " + dtype_name(t.dtype()) +
                    ", expected float32 or float64");
  return t.dtype() == dtype ? t : cast(t, dtype, name);
}

// ---------------------------------------------------------------- helpers

namespace {

std::string describe(const Variable& v) {
  return "<Variable '" + v.name() + "' shape=" + v.shape().to_string() + " dtype=" + dtype_name(v.dtype()) + ">";
}

std::string describe(const Tensor& t) {
  return "Tensor(\"" + t.name() + "\", shape=" + t.shape().to_string() + ", dtype=" + dtype_name(t.dtype()) + ")";
}

std::string variable_list(const GradsAndVars& gv) {
  std::string s = "[";
  for (std::size_t i = 0; i < gv.size(); ++i) s += (i ? ", " : "") + describe(gv[i].second);
  return s + "]";
}

void expect_float(DType t, const std::string& what) {
  if (!is_floating(t))
    throw TypeError(std::string("Invalid type ") + dtype_name(t) + " for " + what + ", expected: [float, double].");
}

// A variable named `base` (made unique) at the root name scope, outside control dependencies and
// cond branches, its initial value built under "<name>/Initializer/".
Variable make_hidden_variable(Graph& g, const std::string& base, const std::function<Tensor()>& initial_value,
                              std::vector<std::string> collections = {}) {
  auto as_default = g.as_default();
  detail::InitScope init_scope;
  const std::string full = g.unique_name(base, false);
  Tensor init;
  {
    name_scope ns(full + "/Initializer/");
    init = initial_value();
  }
  return Variable(init, {.trainable = false, .name = full, .collections = std::move(collections), .constraint = {}});
}

// The exact op name `full` (at the root name scope): TF's `name=scope` with a trailing slash.
Operation group_named(const std::vector<Operation>& ops, const std::string& full) {
  name_scope root("");
  std::vector<GraphElement> items(ops.begin(), ops.end());
  return group(items, full);
}

std::atomic<bool> g_warning_enabled{true};

}  // namespace

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(std::string name) : name_(std::move(name)) {
  if (name_.empty()) throw ValueError("Optimizer: the name must not be empty");
}
Optimizer::~Optimizer() = default;

void Optimizer::create_slots(const std::vector<Variable>&) {}
void Optimizer::prepare() {}

Operation Optimizer::finish(const std::vector<Operation>& update_ops, const std::string& name) {
  return group_named(update_ops, name);
}

Tensor Optimizer::hyper(const Hyper& h, DType dtype) { return h.as_tensor(dtype); }

GradsAndVars Optimizer::compute_gradients(const Tensor& loss, const std::vector<Variable>& var_list) const {
  if (!loss.valid()) throw ValueError("compute_gradients: the loss is a null Tensor");
  expect_float(loss.dtype(), "loss " + loss.name());
  std::vector<Variable> vars = var_list;
  if (vars.empty())
    for (auto& e : loss.graph().get_collection(GraphKeys::TRAINABLE_VARIABLES))
      if (e.is_variable()) vars.push_back(e.as_variable());
  if (vars.empty()) throw ValueError("No variables to optimize.");
  std::vector<Tensor> xs;
  for (auto& v : vars) {
    if (!v.valid()) throw ValueError("compute_gradients: var_list holds a null Variable");
    if (&v.graph() != &loss.graph())
      throw ValueError("compute_gradients: variable '" + v.name() + "' is not in the graph of loss '" + loss.name() + "'");
    xs.push_back(v.value());
  }
  auto grads = gradients(std::vector<Tensor>{loss}, xs);
  GradsAndVars r;
  for (std::size_t i = 0; i < vars.size(); ++i) {
    if (grads[i]) expect_float(vars[i].dtype(), "variable " + vars[i].name());
    r.emplace_back(grads[i], vars[i]);
  }
  return r;
}

Operation Optimizer::apply_gradients(const GradsAndVars& grads_and_vars, std::optional<Variable> global_step,
                                     const std::string& name) {
  return apply_gradients_impl(grads_and_vars, global_step, name, nullptr, true);
}

Operation Optimizer::minimize(const Tensor& loss, const MinimizeOptions& options) {
  GradsAndVars gv = compute_gradients(loss, options.var_list);
  if (std::none_of(gv.begin(), gv.end(), [](const GradAndVar& p) { return p.first.has_value(); }))
    throw ValueError("No gradients provided for any variable, check your graph for ops that do not support "
                     "gradients, between variables " + variable_list(gv) + " and loss " + describe(loss) + ".");
  return apply_gradients_impl(gv, options.global_step, options.name, &loss, options.warn_missing_update_ops);
}

Operation Optimizer::apply_gradients_impl(const GradsAndVars& grads_and_vars, const std::optional<Variable>& global_step,
                                          const std::string& name, const Tensor* loss, bool warn) {
  if (grads_and_vars.empty()) throw ValueError("No variables provided.");
  GradsAndVars with_grad;
  std::vector<Variable> var_list;
  for (auto& [g, v] : grads_and_vars) {
    if (!v.valid()) throw ValueError("apply_gradients: a (gradient, variable) pair holds a null Variable");
    if (!g) continue;
    if (!g->valid()) throw ValueError("apply_gradients: the gradient of variable '" + v.name() + "' is a null Tensor");
    expect_float(v.dtype(), "variable " + v.name());
    if (g->dtype() != v.dtype())
      throw TypeError("apply_gradients: gradient '" + g->name() + "' has dtype " + dtype_name(g->dtype()) +
                      " but variable '" + v.name() + "' has dtype " + dtype_name(v.dtype()));
    if (!g->shape().is_compatible_with(v.shape()))
      throw ValueError("apply_gradients: gradient '" + g->name() + "' has shape " + g->shape().to_string() +
                       " but variable '" + v.name() + "' has shape " + v.shape().to_string());
    with_grad.emplace_back(g, v);
    var_list.push_back(v);
  }
  if (with_grad.empty()) throw ValueError("No gradients provided for any variable: " + variable_list(grads_and_vars) + ".");
  Graph& graph = var_list.front().graph();
  for (auto& v : var_list)
    if (&v.graph() != &graph)
      throw ValueError("apply_gradients: variables '" + var_list.front().name() + "' and '" + v.name() +
                       "' belong to different graphs");
  if (global_step && !global_step->valid()) throw ValueError("apply_gradients: global_step is a null Variable");
  auto as_default = graph.as_default();

  {
    detail::InitScope init_scope;  // TF's `with ops.init_scope(): self._create_slots(var_list)`
    create_slots(var_list);
  }

  const std::string scope = graph.unique_name(name.empty() ? name_ : name, false);
  Operation train_op;
  {
    name_scope ns(scope + "/");
    prepare();
    std::vector<GraphElement> ready_items;
    for (auto& [g, v] : with_grad) ready_items.emplace_back(*g);
    if (loss) ready_items.emplace_back(*loss);
    const Operation ready = group(ready_items, "gradients_ready");

    std::vector<Operation> update_ops;
    {
      control_dependencies after_gradients({ready});
      for (auto& [g, v] : with_grad) {
        name_scope us("update_" + v.op_name());
        Operation op = apply_dense(*g, v);
        if (!op.valid())
          throw InternalError("Optimizer '" + name_ + "': apply_dense returned a null Operation for variable '" +
                              v.name() + "'");
        if (v.constraint()) {
          control_dependencies after_update({op});
          op = assign(v, v.constraint()(v.value()), "constraint").op();
        }
        update_ops.push_back(op);
      }
    }
    if (!global_step) {
      train_op = finish(update_ops, scope);
    } else {
      const Operation finished = finish(update_ops, scope + "/update");
      control_dependencies after_all({finished});
      const Tensor one = scalar(1.0, global_step->dtype(), "one");
      name_scope root("");
      train_op = assign_add(*global_step, one, scope).op();
    }
  }
  graph.add_to_collection_unique(GraphKeys::TRAIN_OP, train_op);

  if (warn && g_warning_enabled.load()) {
    const auto layers = missing_update_layers(train_op);
    if (!layers.empty()) {  // once per offending train op: each is built once, here
      const auto missing = missing_update_ops(train_op);
      std::string names;
      for (std::size_t i = 0; i < layers.size(); ++i) names += (i ? ", " : "") + layers[i];
      std::cerr << "kiln warning: the train op '" << train_op.name() << "' does not depend on " << missing.size()
                << " of the " << graph.get_collection(GraphKeys::UPDATE_OPS).size()
                << " ops in the UPDATE_OPS collection, so running it will not update them (layers: " << names
                << "). Batch normalization's moving statistics would stay at their initial values. Build the "
                   "train op inside `control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));`. "
                   "(train::set_update_ops_warning(false) silences it; "
                   "train::missing_update_ops(train_op) lists them.)\n";
    }
  }
  return train_op;
}

// ---------------------------------------------------------------- slots

Variable Optimizer::zeros_slot(const Variable& var, const std::string& slot_name) {
  return slot_with_initializer(var, initializers::zeros(), slot_name);
}

Variable Optimizer::constant_slot(const Variable& var, double value, const std::string& slot_name) {
  return slot_with_initializer(var, initializers::constant(value), slot_name);
}

Variable Optimizer::slot_with_initializer(const Variable& var, const Initializer& init, const std::string& slot_name) {
  if (!var.valid()) throw ValueError("Optimizer '" + name_ + "': slot '" + slot_name + "' requested for a null Variable");
  auto& named = slots_[slot_name];
  if (auto it = named.find(var.info()); it != named.end()) return it->second;
  const Shape shape = var.shape();
  const DType dtype = var.dtype();
  Variable s = make_hidden_variable(var.graph(), var.op_name() + "/" + name_, [&] { return init(shape, dtype); });
  named.emplace(var.info(), s);
  slot_order_.push_back(s);
  return s;
}

Variable Optimizer::slot(const Variable& var, const std::string& slot_name) const {
  if (auto s = get_slot(var, slot_name)) return *s;
  throw InternalError("Optimizer '" + name_ + "' has no slot '" + slot_name + "' for variable '" +
                      (var.valid() ? var.name() : std::string("<null>")) + "': create it in create_slots");
}

std::optional<Variable> Optimizer::get_slot(const Variable& var, const std::string& slot_name) const {
  auto it = slots_.find(slot_name);
  if (it == slots_.end() || !var.valid()) return std::nullopt;
  auto jt = it->second.find(var.info());
  if (jt == it->second.end()) return std::nullopt;
  return jt->second;
}

std::vector<std::string> Optimizer::get_slot_names() const {
  std::vector<std::string> r;
  for (auto& [k, v] : slots_) r.push_back(k);
  return r;
}

std::vector<Variable> Optimizer::variables() const {
  std::vector<Variable> r = slot_order_;
  r.insert(r.end(), non_slot_order_.begin(), non_slot_order_.end());
  return r;
}

Variable Optimizer::create_non_slot_variable(const Hyper& initial_value, const std::string& var_name, DType dtype) {
  Graph& g = get_default_graph();
  const auto key = std::make_pair(static_cast<const Graph*>(&g), var_name);
  if (auto it = non_slot_.find(key); it != non_slot_.end()) return it->second;
  Variable v = make_hidden_variable(g, var_name, [&] { return initial_value.as_tensor(dtype, "initial_value"); });
  non_slot_.emplace(key, v);
  non_slot_order_.push_back(v);
  return v;
}

Variable Optimizer::non_slot_variable(const std::string& var_name) const {
  auto it = non_slot_.find(std::make_pair(static_cast<const Graph*>(&get_default_graph()), var_name));
  if (it == non_slot_.end())
    throw InternalError("Optimizer '" + name_ + "' has no non-slot variable '" + var_name + "' in this graph");
  return it->second;
}

// ---------------------------------------------------------------- global step

std::optional<Variable> get_global_step() {
  Graph& g = get_default_graph();
  std::vector<Variable> found;
  for (auto& e : g.get_collection(GraphKeys::GLOBAL_STEP))
    if (e.is_variable()) found.push_back(e.as_variable());
  if (found.size() > 1) throw ValueError("Multiple variables in global_step collection.");
  if (found.size() == 1) return found.front();
  for (auto& e : g.get_collection(GraphKeys::GLOBAL_VARIABLES))
    if (e.is_variable() && e.as_variable().name() == "global_step:0") return e.as_variable();
  return std::nullopt;
}

Variable create_global_step() {
  if (get_global_step()) throw ValueError("\"global_step\" already exists.");
  Graph& g = get_default_graph();
  return make_hidden_variable(g, GraphKeys::GLOBAL_STEP, [] { return zeros({}, int64, "zeros"); },
                              {GraphKeys::GLOBAL_VARIABLES, GraphKeys::GLOBAL_STEP});
}

Variable get_or_create_global_step() {
  if (auto s = get_global_step()) return *s;
  return create_global_step();
}

// ---------------------------------------------------------------- UPDATE_OPS guard

std::vector<GraphElement> missing_update_ops(const Operation& train_op) {
  if (!train_op.valid()) throw ValueError("missing_update_ops: the train op is null");
  Graph& g = train_op.graph();
  const auto update_ops = g.get_collection(GraphKeys::UPDATE_OPS);
  if (update_ops.empty()) return {};
  const std::vector<char> seen = detail::reachable_backward(g, {train_op.node()}, /*follow_control=*/true);
  std::vector<GraphElement> missing;
  for (auto& item : update_ops)
    if (!seen[static_cast<std::size_t>(item.op().node()->id)]) missing.push_back(item);
  return missing;
}

namespace {
// The layer an update op belongs to: the scope of the variable it assigns (found by walking back
// from the update, through a gating cond if any, to an assign op), else the op's own scope.
std::string owner_layer(const Operation& update) {
  const Graph& g = update.graph();
  const auto assigns = [](const detail::Node* n) { return !n->def->ref_inputs.empty(); };
  const std::vector<char> reached = detail::reachable_backward(g, {update.node()}, /*follow_control=*/true, assigns);
  for (int id = 0; id < g.num_nodes(); ++id) {
    const detail::Node* n = g.node(id);
    if (!reached[static_cast<std::size_t>(id)] || !assigns(n)) continue;
    const std::string& var = n->inputs[static_cast<std::size_t>(n->def->ref_inputs[0])].node->name;
    return var.substr(0, var.rfind('/') == std::string::npos ? var.size() : var.rfind('/'));
  }
  const std::string& op = update.name();
  return op.substr(0, op.rfind('/') == std::string::npos ? op.size() : op.rfind('/'));
}
}  // namespace

std::vector<std::string> missing_update_layers(const Operation& train_op) {
  std::vector<std::string> layers;
  for (auto& item : missing_update_ops(train_op)) {
    std::string layer = owner_layer(item.op());
    if (std::find(layers.begin(), layers.end(), layer) == layers.end()) layers.push_back(std::move(layer));
  }
  return layers;
}

void set_update_ops_warning(bool enabled) { g_warning_enabled = enabled; }

bool update_ops_warning_enabled() { return g_warning_enabled.load(); }

}  // namespace kiln::train
