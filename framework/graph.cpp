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
namespace {
// TF: _VALID_OP_NAME_REGEX = [A-Za-z0-9.][A-Za-z0-9_.\-/>]*, _VALID_SCOPE_NAME_REGEX = [A-Za-z0-9_.\-/>]*.
bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-' || c == '/' || c == '>';
}
bool is_name_start(char c) { return is_name_char(c) && c != '_' && c != '-' && c != '/' && c != '>'; }
constexpr const char* kAllowed =
    " (allowed: letters, digits and . _ - / >, not starting with _ - / or >; TF's rule)";
}  // namespace

bool is_valid_node_name(std::string_view name) {
  return !name.empty() && is_name_start(name[0]) && std::all_of(name.begin(), name.end(), is_name_char);
}
bool is_valid_scope_name(std::string_view name, bool at_root) {
  if (at_root) return is_valid_node_name(name);
  return std::all_of(name.begin(), name.end(), is_name_char);
}
void check_node_name(const std::string& name, const std::string& what) {
  if (!is_valid_node_name(name)) throw ValueError(what + "'" + name + "' is not a valid node name" + kAllowed);
}
void check_scope_name(const std::string& name, bool at_root) {
  if (!is_valid_scope_name(name, at_root)) throw ValueError("'" + name + "' is not a valid scope name" + kAllowed);
}

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

void Graph::set_name_count(const std::string& name, int count) {
  auto it = names_in_use_.find(name);
  if (open_checkpoints_ > 0)
    name_journal_.push_back({name, it == names_in_use_.end() ? std::nullopt : std::optional<int>(it->second)});
  if (it == names_in_use_.end()) names_in_use_.emplace(name, count);
  else it->second = count;
}

std::string Graph::unique_name(const std::string& base, bool mark_used) {
  std::string name = name_scope_ + base;
  detail::check_node_name(name);
  auto it = names_in_use_.find(name);
  if (it == names_in_use_.end()) {
    if (mark_used) set_name_count(name, 1);
    return name;
  }
  int i = it->second;
  while (names_in_use_.count(name + "_" + std::to_string(i))) ++i;
  const std::string unique = name + "_" + std::to_string(i);
  if (mark_used) {
    set_name_count(name, i + 1);
    set_name_count(unique, 1);
  }
  return unique;
}

detail::Node* Graph::add_node(std::unique_ptr<detail::Node> node) {
  node->graph = this;
  node->id = static_cast<int>(nodes_.size());
  if (by_name_.count(node->name))
    throw InternalError("duplicate op name '" + node->name + "'");
  detail::check_node_name(node->name);
  by_name_[node->name] = node.get();
  if (!names_in_use_.count(node->name)) set_name_count(node->name, 1);
  nodes_.push_back(std::move(node));
  return nodes_.back().get();
}

// ---------------------------------------------------------------- GraphCheckpoint

GraphCheckpoint::GraphCheckpoint(Graph& graph)
    : g_(&graph),
      nodes_(graph.nodes_.size()),
      variables_(graph.variables_.size()),
      cond_contexts_(graph.cond_contexts_.size()),
      journal_(graph.name_journal_.size()),
      var_scope_counts_(graph.var_scope_counts_),
      seed_(graph.seed_) {
  for (auto& kv : graph.collections_) collection_sizes_.push_back(kv.second.size());
  ++graph.open_checkpoints_;
}

GraphCheckpoint::~GraphCheckpoint() {
  if (!committed_) rollback();
}

void GraphCheckpoint::commit() {
  if (committed_) return;
  committed_ = true;
  if (--g_->open_checkpoints_ == 0) g_->name_journal_.clear();
}

void GraphCheckpoint::rollback() noexcept {
  Graph& g = *g_;
  // Newer nodes have ids >= nodes_; drop every reference the older part of the graph holds to them.
  const auto is_new = [&](const detail::Node* n) { return n->graph == &g && n->id >= static_cast<int>(nodes_); };
  const auto is_new_variable = [&](const detail::VariableInfo* v) {
    for (std::size_t i = variables_; i < g.variables_.size(); ++i)
      if (g.variables_[i].get() == v) return true;
    return false;
  };
  for (std::size_t i = 0; i < nodes_; ++i) {
    auto& c = g.nodes_[i]->control_inputs;
    c.erase(std::remove_if(c.begin(), c.end(), is_new), c.end());
  }
  g.bump_structure_version();  // cached plans may hold the control edges just removed
  for (std::size_t i = 0; i < cond_contexts_; ++i) {
    auto& sw = g.cond_contexts_[i]->switched;
    sw.erase(std::remove_if(sw.begin(), sw.end(), [&](const auto& p) { return is_new(p.second.node); }), sw.end());
  }
  // Collections only grow (appends, new keys at the end): truncating restores them.
  g.collections_.resize(collection_sizes_.size());
  for (std::size_t i = 0; i < collection_sizes_.size(); ++i)
    if (auto& items = g.collections_[i].second; items.size() > collection_sizes_[i])
      items.erase(items.begin() + static_cast<std::ptrdiff_t>(collection_sizes_[i]), items.end());
  for (auto it = g.var_store_.begin(); it != g.var_store_.end();)
    it = is_new_variable(it->second) ? g.var_store_.erase(it) : std::next(it);
  for (std::size_t i = nodes_; i < g.nodes_.size(); ++i) g.by_name_.erase(g.nodes_[i]->name);
  // Names: undo the journal, newest first.
  while (g.name_journal_.size() > journal_) {
    auto& u = g.name_journal_.back();
    if (u.previous) g.names_in_use_[u.name] = *u.previous;
    else g.names_in_use_.erase(u.name);
    g.name_journal_.pop_back();
  }
  g.variables_.resize(variables_);
  g.cond_contexts_.resize(cond_contexts_);
  g.nodes_.resize(nodes_);
  g.var_scope_counts_ = std::move(var_scope_counts_);
  g.seed_ = seed_;
  committed_ = true;
  if (--g.open_checkpoints_ == 0) g.name_journal_.clear();
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
  for (auto& it : items) ops.push_back(it.op().node());  // a null item: ValueError
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (ops[i]->graph == g_) continue;
    std::string msg = "control_dependencies: '" + items[i].name() +
                      "' is not an element of the default graph, where the ops built under it go";
    for (std::size_t j = 0; j < items.size(); ++j)
      if (ops[j]->graph == g_) {
        msg += " (unlike '" + items[j].name() + "')";
        break;
      }
    throw ValueError(msg + "; build the dependency in the same graph");
  }
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
  // A name ending in "/" is a full scope name, so the root's rule applies to it.
  if (!name.empty()) detail::check_scope_name(name, g_->name_scope_.empty() || name.back() == '/');
  if (name.empty()) prefix_ = "";
  else if (name.back() == '/') prefix_ = name;
  else prefix_ = g_->unique_name(name) + "/";
  g_->name_scope_ = prefix_;
}
name_scope::~name_scope() { g_->name_scope_ = saved_; }

}  // namespace kiln
