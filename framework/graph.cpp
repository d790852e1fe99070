#include "framework/graph.hpp"

#include <algorithm>

#include "framework/errors.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops.hpp"

namespace kiln {

// ---------------------------------------------------------------- Operation / Tensor handles

detail::Node* Operation::node() const {
  if (!node_) throw ValueError("Operation is null (default-constructed)");
  return node_;
}
const std::string& Operation::name() const { return node()->name; }
const std::string& Operation::type() const { return node()->def->type; }
std::vector<Tensor> Operation::inputs() const {
  std::vector<Tensor> r;
  for (auto& in : node()->inputs) r.emplace_back(in);
  return r;
}
std::vector<Operation> Operation::control_inputs() const {
  std::vector<Operation> r;
  for (auto* n : node()->control_inputs) r.emplace_back(n);
  return r;
}
std::vector<Tensor> Operation::outputs() const {
  std::vector<Tensor> r;
  for (int i = 0; i < num_outputs(); ++i) r.emplace_back(node_, i);
  return r;
}
Tensor Operation::output(int i) const {
  if (i < 0 || i >= num_outputs())
    throw ValueError("Operation '" + name() + "' has " + std::to_string(num_outputs()) +
                     " outputs; output " + std::to_string(i) + " requested");
  return Tensor(node_, i);
}
int Operation::num_outputs() const { return static_cast<int>(node()->output_dtypes.size()); }
Graph& Operation::graph() const { return *node()->graph; }
void Operation::add_control_input(const Operation& op) const {
  if (op.node() == node()) throw ValueError("Operation '" + name() + "' cannot depend on itself");
  if (&op.graph() != &graph())
    throw ValueError("Operation '" + op.name() + "' is not in the graph of '" + name() + "'");
  auto& c = node()->control_inputs;
  if (std::find(c.begin(), c.end(), op.node()) == c.end()) {
    c.push_back(op.node());
    graph().bump_structure_version();
  }
}
void Operation::throw_bad_attrs() const {
  throw InternalError("attributes of '" + name() + "' read with the wrong type");
}

std::string Tensor::name() const {
  if (!ref_.node) throw ValueError("Tensor is null (default-constructed)");
  return ref_.node->name + ":" + std::to_string(ref_.index);
}
DType Tensor::dtype() const {
  if (!ref_.node) throw ValueError("Tensor is null (default-constructed)");
  return ref_.node->output_dtypes[static_cast<std::size_t>(ref_.index)];
}
const Shape& Tensor::shape() const {
  if (!ref_.node) throw ValueError("Tensor is null (default-constructed)");
  return ref_.node->output_shapes[static_cast<std::size_t>(ref_.index)];
}
Graph& Tensor::graph() const { return *op().node()->graph; }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b, "add"); }
Tensor operator-(const Tensor& a, const Tensor& b) { return subtract(a, b, "sub"); }
Tensor operator*(const Tensor& a, const Tensor& b) { return multiply(a, b, "mul"); }
Tensor operator/(const Tensor& a, const Tensor& b) { return divide(a, b, "truediv"); }
Tensor operator-(const Tensor& a) { return negative(a, "neg"); }
Tensor operator+(const Tensor& a, double b) { return a + scalar_like(b, a); }
Tensor operator-(const Tensor& a, double b) { return a - scalar_like(b, a); }
Tensor operator*(const Tensor& a, double b) { return a * scalar_like(b, a); }
Tensor operator/(const Tensor& a, double b) { return a / scalar_like(b, a); }
Tensor operator+(double a, const Tensor& b) { return scalar_like(a, b) + b; }
Tensor operator-(double a, const Tensor& b) { return scalar_like(a, b) - b; }
Tensor operator*(double a, const Tensor& b) { return scalar_like(a, b) * b; }
Tensor operator/(double a, const Tensor& b) { return scalar_like(a, b) / b; }

// ---------------------------------------------------------------- GraphElement

std::string GraphElement::name() const {
  return std::visit([](const auto& x) -> std::string { return x.name(); }, v_);
}
Operation GraphElement::op() const {
  if (auto* o = std::get_if<Operation>(&v_)) return *o;
  if (auto* t = std::get_if<Tensor>(&v_)) return t->op();
  return std::get<Variable>(v_).op();
}
Operation GraphElement::as_operation() const {
  if (auto* o = std::get_if<Operation>(&v_)) return *o;
  throw TypeError("Collection item '" + name() + "' is not an Operation");
}
Tensor GraphElement::as_tensor() const {
  if (auto* t = std::get_if<Tensor>(&v_)) return *t;
  if (auto* v = std::get_if<Variable>(&v_)) return v->value();
  throw TypeError("Collection item '" + name() + "' is an Operation, not a Tensor");
}
Variable GraphElement::as_variable() const {
  if (auto* v = std::get_if<Variable>(&v_)) return *v;
  throw TypeError("Collection item '" + name() + "' is not a Variable");
}

// ---------------------------------------------------------------- Graph

namespace {
std::vector<Graph*>& default_stack() {
  static thread_local std::vector<Graph*> s;
  return s;
}
std::unique_ptr<Graph>& global_graph() {
  static std::unique_ptr<Graph> g = std::make_unique<Graph>();
  return g;
}
}  // namespace

Graph::Graph() = default;
Graph::~Graph() = default;

Graph::DefaultGuard::DefaultGuard(Graph* g) : g_(g) { default_stack().push_back(g); }
Graph::DefaultGuard::~DefaultGuard() {
  auto& s = default_stack();
  auto it = std::find(s.rbegin(), s.rend(), g_);
  if (it != s.rend()) s.erase(std::next(it).base());
}

Graph& get_default_graph() {
  auto& s = default_stack();
  return s.empty() ? *global_graph() : *s.back();
}
void reset_default_graph() {
  if (!default_stack().empty())
    throw ValueError("reset_default_graph: not allowed inside a Graph::as_default() block");
  global_graph() = std::make_unique<Graph>();
}
void set_random_seed(std::int64_t seed) { get_default_graph().set_seed(seed); }

namespace detail {
std::pair<std::string, int> parse_tensor_name(const std::string& name) {
  const auto colon = name.rfind(':');
  if (colon == std::string::npos || colon + 1 == name.size())
    throw ValueError("The name '" + name +
                     "' looks like an (invalid) Operation name, not a Tensor. Tensor names must be "
                     "of the form \"<op_name>:<output_index>\".");
  const std::string idx = name.substr(colon + 1);
  if (!std::all_of(idx.begin(), idx.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw ValueError("The name '" + name + "' has a malformed output index");
  return {name.substr(0, colon), std::stoi(idx)};
}
}  // namespace detail

Operation Graph::get_operation_by_name(const std::string& name) const {
  if (name.find(':') != std::string::npos)
    throw ValueError("Name '" + name + "' appears to refer to a Tensor, not an Operation.");
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    throw NotFoundError("The name '" + name + "' refers to an Operation not in the graph.");
  return Operation(it->second);
}

Tensor Graph::get_tensor_by_name(const std::string& name) const {
  auto [op_name, index] = detail::parse_tensor_name(name);
  auto it = by_name_.find(op_name);
  if (it == by_name_.end())
    throw NotFoundError("The name '" + name + "' refers to a Tensor which does not exist. The operation, '" +
                        op_name + "', does not exist in the graph.");
  if (index >= static_cast<int>(it->second->output_dtypes.size()))
    throw NotFoundError("The name '" + name + "' refers to a Tensor which does not exist. The operation, '" +
                        op_name + "', exists but only has " +
                        std::to_string(it->second->output_dtypes.size()) + " outputs.");
  return Tensor(it->second, index);
}

std::vector<Operation> Graph::operations() const {
  std::vector<Operation> r;
  r.reserve(nodes_.size());
  for (auto& n : nodes_) r.emplace_back(n.get());
  return r;
}

std::vector<GraphElement> Graph::get_collection(const std::string& key, const std::string& scope) const {
  for (auto& [k, items] : collections_) {
    if (k != key) continue;
    if (scope.empty()) return items;
    std::vector<GraphElement> r;
    for (auto& it : items)
      if (it.name().rfind(scope, 0) == 0) r.push_back(it);
    return r;
  }
  return {};
}

void Graph::add_to_collection(const std::string& key, const GraphElement& item) {
  if (&item.op().graph() != this)
    throw ValueError("add_to_collection: '" + item.name() + "' belongs to another graph");
  for (auto& [k, items] : collections_)
    if (k == key) {
      items.push_back(item);
      return;
    }
  collections_.emplace_back(key, std::vector<GraphElement>{item});
}

void Graph::add_to_collection_unique(const std::string& key, const GraphElement& item) {
  for (auto& [k, items] : collections_)
    if (k == key && std::find(items.begin(), items.end(), item) != items.end()) return;
  add_to_collection(key, item);
}

std::vector<std::string> Graph::collection_keys() const {
  std::vector<std::string> r;
  for (auto& kv : collections_) r.push_back(kv.first);
  return r;
}

bool Graph::name_in_use(const std::string& full) const { return names_in_use_.count(full) > 0; }

std::string Graph::unique_name(const std::string& base, bool mark_used) {
  std::string name = name_scope_ + base;
  auto it = names_in_use_.find(name);
  if (it == names_in_use_.end()) {
    if (mark_used) names_in_use_[name] = 1;
    return name;
  }
  int i = it->second;
  while (names_in_use_.count(name + "_" + std::to_string(i))) ++i;
  const std::string unique = name + "_" + std::to_string(i);
  if (mark_used) {
    names_in_use_[name] = i + 1;
    names_in_use_[unique] = 1;
  }
  return unique;
}

detail::Node* Graph::add_node(std::unique_ptr<detail::Node> node) {
  node->graph = this;
  node->id = static_cast<int>(nodes_.size());
  if (by_name_.count(node->name))
    throw InternalError("duplicate op name '" + node->name + "'");
  by_name_[node->name] = node.get();
  names_in_use_.try_emplace(node->name, 1);
  nodes_.push_back(std::move(node));
  return nodes_.back().get();
}

std::vector<detail::Node*> Graph::current_control_inputs() const {
  std::vector<detail::Node*> r;
  for (std::size_t i = control_stack_.size(); i-- > 0;) {
    for (auto* n : control_stack_[i])
      if (std::find(r.begin(), r.end(), n) == r.end()) r.push_back(n);
    if (control_clear_[i]) break;
  }
  return r;
}

std::vector<GraphElement> get_collection(const std::string& key, const std::string& scope) {
  return get_default_graph().get_collection(key, scope);
}
void add_to_collection(const std::string& key, const GraphElement& item) {
  get_default_graph().add_to_collection(key, item);
}

// ---------------------------------------------------------------- contexts

control_dependencies::control_dependencies(const std::vector<GraphElement>& items)
    : g_(&get_default_graph()) {
  std::vector<detail::Node*> ops;
  for (auto& it : items) ops.push_back(it.op().node());
  g_->control_stack_.push_back(std::move(ops));
  g_->control_clear_.push_back(false);
}
control_dependencies::control_dependencies(std::nullptr_t) : g_(&get_default_graph()) {
  g_->control_stack_.emplace_back();
  g_->control_clear_.push_back(true);
}
control_dependencies::~control_dependencies() {
  g_->control_stack_.pop_back();
  g_->control_clear_.pop_back();
}

name_scope::name_scope(const std::string& name) : g_(&get_default_graph()), saved_(g_->name_scope_) {
  if (name.empty()) prefix_ = "";
  else if (name.back() == '/') prefix_ = name;
  else prefix_ = g_->unique_name(name) + "/";
  g_->name_scope_ = prefix_;
}
name_scope::~name_scope() { g_->name_scope_ = saved_; }

}  // namespace kiln
