#pragma once
// The define-then-run graph: Operation and Tensor handles, the Graph that owns operations, names,
// collections and the building contexts (name scopes, control dependencies, cond branches).
//
//   Graph g;
//   auto guard = g.as_default();
//   Tensor x = placeholder(float32, {-1, 3}, "x");   // op "x", tensor "x:0"
//   { name_scope ns("block"); Tensor y = x * 2.0; }  // op "block/mul"
//
// Names (TF's rules): a full op or variable name matches [A-Za-z0-9.][A-Za-z0-9_.\-/>]* (no spaces,
// no ':', no leading '_'), else ValueError "'<name>' is not a valid node name"; a name scope given
// at the root matches the same pattern, a nested one [A-Za-z0-9_.\-/>]*, else ValueError "'<name>' is
// not a valid scope name". The names kiln makes itself ("Initializer", "gradients/...", "_1"
// suffixes) always match.
#include <any>
#include <concepts>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "framework/types.hpp"

namespace kiln {

class Graph;
class Operation;
class Tensor;
class Variable;
struct OpDef;

namespace detail {
struct Node;
struct VariableInfo;
struct CondContext;

/// One output of a node.
struct TensorRef {
  Node* node = nullptr;
  int index = 0;
  friend bool operator==(const TensorRef&, const TensorRef&) = default;
};

struct Node {
  Graph* graph = nullptr;
  int id = 0;  // creation order, dense within the graph
  std::string name;
  const OpDef* def = nullptr;
  std::vector<TensorRef> inputs;
  std::vector<Node*> control_inputs;
  std::vector<DType> output_dtypes;
  std::vector<Shape> output_shapes;
  std::any attrs;                         // the op's typed attribute struct
  const CondContext* cond_ctx = nullptr;  // innermost cond branch it was built in
  VariableInfo* variable = nullptr;       // set for VariableV2 nodes
  std::optional<std::uint64_t> seed;      // resolved seed of a random op (empty: nondeterministic)
};
}  // namespace detail

/// A node of the graph. A default-constructed Operation is null.
class Operation {
 public:
  Operation() = default;
  explicit Operation(detail::Node* n) : node_(n) {}
  const std::string& name() const;
  const std::string& type() const;
  std::vector<Tensor> inputs() const;
  std::vector<Operation> control_inputs() const;
  std::vector<Tensor> outputs() const;
  Tensor output(int i) const;
  int num_outputs() const;
  Graph& graph() const;
  /// The op's typed attributes; throws InternalError on a type mismatch.
  template <class A>
  const A& attrs() const {
    if (const A* a = std::any_cast<A>(&node()->attrs)) return *a;
    throw_bad_attrs();
  }
  bool valid() const { return node_ != nullptr; }
  /// TF's op._add_control_input: this op will run after `op`. ValueError for a self-dependency or
  /// another graph. (Can create a cycle, which Session::run reports.)
  void add_control_input(const Operation& op) const;
  detail::Node* node() const;
  friend bool operator==(const Operation& a, const Operation& b) { return a.node_ == b.node_; }

 private:
  [[noreturn]] void throw_bad_attrs() const;
  detail::Node* node_ = nullptr;
};

/// A symbolic output of an operation. Arithmetic operators build ops in the default graph.
class Tensor {
 public:
  Tensor() = default;
  Tensor(detail::Node* n, int index) : ref_{n, index} {}
  explicit Tensor(detail::TensorRef r) : ref_(r) {}
  std::string name() const;  // "scope/op:0"
  Operation op() const { return Operation(ref_.node); }
  DType dtype() const;
  const Shape& shape() const;
  int value_index() const { return ref_.index; }
  Graph& graph() const;
  bool valid() const { return ref_.node != nullptr; }
  const detail::TensorRef& ref() const { return ref_; }
  friend bool operator==(const Tensor& a, const Tensor& b) { return a.ref_ == b.ref_; }

 private:
  detail::TensorRef ref_;
};

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

using TensorFn = std::function<Tensor(const Tensor&)>;

/// A variable: a VariableV2 op whose value lives in each Session. Converts to its value Tensor.
class Variable {
 public:
  Variable() = default;
  explicit Variable(detail::VariableInfo* info) : info_(info) {}
  struct Options {
    bool trainable = true;
    std::string name;  // empty: "Variable"
    std::vector<std::string> collections;  // empty: GLOBAL_VARIABLES (+ TRAINABLE_VARIABLES)
    TensorFn constraint;
  };
  /// TF1's tf.Variable(initial_value): created outside get_variable's reuse machinery; its name is
  /// made unique like an op name.
  Variable(const Tensor& initial_value, const Options& options);
  explicit Variable(const Tensor& initial_value) : Variable(initial_value, Options{}) {}

  const std::string& name() const;  // "scope/w:0"
  const std::string& op_name() const;  // "scope/w"
  Operation op() const;
  Tensor value() const;
  operator Tensor() const { return value(); }  // NOLINT
  Operation initializer() const;
  Tensor initial_value() const;
  const TensorFn& constraint() const;
  const TensorFn& regularizer() const;
  bool trainable() const;
  DType dtype() const { return value().dtype(); }
  const Shape& shape() const { return value().shape(); }
  Graph& graph() const { return op().graph(); }
  bool valid() const { return info_ != nullptr; }
  detail::VariableInfo* info() const { return info_; }
  friend bool operator==(const Variable& a, const Variable& b) { return a.info_ == b.info_; }

 private:
  detail::VariableInfo* info_ = nullptr;
};

namespace detail {
/// One branch of a cond: ops built while it is active are plumbed so that they are dead (never
/// run) when the branch is not taken.
struct CondContext {
  const CondContext* parent = nullptr;
  TensorRef pred;
  int branch = 0;          // 0: false, 1: true
  Node* pivot = nullptr;   // Identity of Switch(pred, pred)[branch]
  std::vector<std::pair<TensorRef, TensorRef>> switched;  // external tensor -> its Switch output
  bool contains(const Node* n) const {
    for (const CondContext* c = n->cond_ctx; c; c = c->parent)
      if (c == this) return true;
    return false;
  }
};

struct VariableInfo {
  Node* node = nullptr;
  std::string name;  // "scope/w:0"
  Tensor initial_value;
  Operation initializer;
  TensorFn constraint;
  TensorFn regularizer;
  bool trainable = true;
};
}  // namespace detail

/// An item of a collection or a fetch: an operation, a tensor or a variable.
class GraphElement {
 public:
  GraphElement(const Operation& o) : v_(o) {}  // NOLINT
  GraphElement(const Tensor& t) : v_(t) {}     // NOLINT
  GraphElement(const Variable& v) : v_(v) {}   // NOLINT
  std::string name() const;
  /// The operation: the op itself, a tensor's producer, a variable's VariableV2 op.
  Operation op() const;
  bool is_operation() const { return std::holds_alternative<Operation>(v_); }
  bool is_tensor() const { return std::holds_alternative<Tensor>(v_); }
  bool is_variable() const { return std::holds_alternative<Variable>(v_); }
  /// Throws TypeError when the element is of another kind.
  Operation as_operation() const;
  Tensor as_tensor() const;  // a variable gives its value
  Variable as_variable() const;
  friend bool operator==(const GraphElement&, const GraphElement&) = default;

 private:
  std::variant<Operation, Tensor, Variable> v_;
};

/// Collection keys, TF's names.
struct GraphKeys {
  static constexpr const char* GLOBAL_VARIABLES = "variables";
  static constexpr const char* TRAINABLE_VARIABLES = "trainable_variables";
  static constexpr const char* UPDATE_OPS = "update_ops";
  static constexpr const char* REGULARIZATION_LOSSES = "regularization_losses";
  static constexpr const char* LOSSES = "losses";
  static constexpr const char* TRAIN_OP = "train_op";
  static constexpr const char* GLOBAL_STEP = "global_step";
};

enum class Reuse { inherit, reuse, auto_reuse };

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// RAII: makes this graph the default until the guard is destroyed.
  class DefaultGuard {
   public:
    explicit DefaultGuard(Graph* g);
    ~DefaultGuard();
    DefaultGuard(const DefaultGuard&) = delete;
    DefaultGuard& operator=(const DefaultGuard&) = delete;

   private:
    Graph* g_;
  };
  [[nodiscard]] DefaultGuard as_default() { return DefaultGuard(this); }

  /// Throws NotFoundError for an absent op, ValueError for a malformed name.
  Operation get_operation_by_name(const std::string& name) const;
  /// "op:0"; throws NotFoundError / ValueError like TF.
  Tensor get_tensor_by_name(const std::string& name) const;
  /// All operations, in creation order.
  std::vector<Operation> operations() const;
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  detail::Node* node(int id) const { return nodes_[static_cast<std::size_t>(id)].get(); }

  /// A copy, in insertion order; with a scope, only items whose name starts with it.
  std::vector<GraphElement> get_collection(const std::string& key, const std::string& scope = "") const;
  void add_to_collection(const std::string& key, const GraphElement& item);
  /// Appends unless an equal item is already there.
  void add_to_collection_unique(const std::string& key, const GraphElement& item);
  std::vector<std::string> collection_keys() const;

  /// Graph-level random seed (TF1 semantics), empty when unset.
  std::optional<std::int64_t> seed() const { return seed_; }
  void set_seed(std::int64_t s) { seed_ = s; }

  /// Counts changes to existing ops (add_control_input): a Session recompiles cached plans when
  /// it changed. Adding new ops does not change it (no cached plan can reach a new op).
  std::uint64_t structure_version() const { return structure_version_; }
  void bump_structure_version() { ++structure_version_; }

  // ---- building state (used by the op builder, scopes and variables) ----
  /// A name made unique in this graph, under the current name scope ("scope/base_1").
  std::string unique_name(const std::string& base, bool mark_used = true);
  const std::string& name_scope_prefix() const { return name_scope_; }  // "a/b/" or ""
  detail::Node* add_node(std::unique_ptr<detail::Node> node);
  bool name_in_use(const std::string& full) const;

  std::vector<std::vector<detail::Node*>> control_stack_;  // nullopt frame = clear marker below
  std::vector<bool> control_clear_;
  std::vector<detail::CondContext*> cond_stack_;
  std::string name_scope_;
  // variable scopes
  struct VarScope {
    std::string name;  // "a/b" or ""
    bool reuse = false;
    bool auto_reuse = false;
  };
  std::vector<VarScope> var_scope_stack_;
  std::map<std::string, int> var_scope_counts_;
  std::vector<std::function<Tensor(const Shape&, DType)>> var_scope_initializers_;
  std::map<std::string, detail::VariableInfo*> var_store_;
  std::vector<std::unique_ptr<detail::VariableInfo>> variables_;
  std::vector<std::unique_ptr<detail::CondContext>> cond_contexts_;

  /// Control inputs every op built now receives.
  std::vector<detail::Node*> current_control_inputs() const;

 private:
  friend class GraphCheckpoint;
  // names_in_use_[name] = count, journaled while a GraphCheckpoint is open (previous count, or
  // empty when the name was absent) so that a rollback restores it.
  void set_name_count(const std::string& name, int count);
  struct NameUndo {
    std::string name;
    std::optional<int> previous;
  };
  std::vector<NameUndo> name_journal_;
  int open_checkpoints_ = 0;

  std::vector<std::unique_ptr<detail::Node>> nodes_;
  std::unordered_map<std::string, detail::Node*> by_name_;
  std::unordered_map<std::string, int> names_in_use_;
  std::vector<std::pair<std::string, std::vector<GraphElement>>> collections_;
  std::optional<std::int64_t> seed_;
  std::uint64_t structure_version_ = 0;
};

/// The graph ops are built in: the innermost `as_default()` graph, else a global one.
Graph& get_default_graph();
/// Replaces the global default graph (not allowed inside an `as_default()` block).
void reset_default_graph();
/// Graph-level seed of the default graph.
void set_random_seed(std::int64_t seed);

std::vector<GraphElement> get_collection(const std::string& key, const std::string& scope = "");
void add_to_collection(const std::string& key, const GraphElement& item);

/// RAII `with tf.control_dependencies(items)`: ops created in its lifetime get control inputs on
/// the items' operations. Nesting unions; `control_dependencies(nullptr)` clears. Items: a braced
/// list, a single Operation / Tensor / Variable, or any range of them (`std::vector<Operation>`,
/// `std::vector<Tensor>`, a get_collection result). An item of another graph than the default
/// graph (where the dependent ops are built): ValueError naming the item and an item of the
/// default graph (TF: "... is not an element of this graph"); a null item: ValueError.
class control_dependencies {
 public:
  explicit control_dependencies(const std::vector<GraphElement>& items);
  control_dependencies(std::initializer_list<GraphElement> items)
      : control_dependencies(std::vector<GraphElement>(items)) {}
  explicit control_dependencies(const GraphElement& item)
      : control_dependencies(std::vector<GraphElement>{item}) {}
  template <std::ranges::input_range R>
    requires std::convertible_to<std::ranges::range_reference_t<const R&>, GraphElement>
  explicit control_dependencies(const R& items)
      : control_dependencies(std::vector<GraphElement>(std::ranges::begin(items), std::ranges::end(items))) {}
  explicit control_dependencies(std::nullptr_t);
  ~control_dependencies();
  control_dependencies(const control_dependencies&) = delete;
  control_dependencies& operator=(const control_dependencies&) = delete;

 private:
  Graph* g_;
};

/// RAII `with tf.name_scope(name)`: op names get the prefix "name/" (made unique like TF).
/// A name ending in "/" re-enters that exact scope; "" resets to the root.
class name_scope {
 public:
  explicit name_scope(const std::string& name);
  ~name_scope();
  name_scope(const name_scope&) = delete;
  name_scope& operator=(const name_scope&) = delete;
  /// The scope's prefix, e.g. "block1_1/".
  const std::string& prefix() const { return prefix_; }

 private:
  Graph* g_;
  std::string saved_;
  std::string prefix_;
};

/// RAII all-or-nothing graph building: a checkpoint of everything `graph` holds. Unless commit()
/// is called, the destructor rolls the graph back to it: the operations created since are
/// destroyed (with their cond contexts, and control edges to them from older ops), the variables
/// created since leave the variable store and every collection, collections get back their items
/// and keys, and the names in use (with their uniquifying counters), the variable-scope counters
/// and the graph seed are as they were, so a retry builds the same names. Handles to destroyed
/// operations, tensors and variables must not be used. Checkpoints nest (rolled back or committed
/// innermost first); the contexts (name scope, variable scopes, control dependencies, cond
/// branches) are left to their own RAII guards, which are closed by then. Not thread-safe (nor is
/// building a graph). Used by the layers (layers/layer.hpp): building a layer is all or nothing.
class GraphCheckpoint {
 public:
  explicit GraphCheckpoint(Graph& graph);
  ~GraphCheckpoint();
  GraphCheckpoint(const GraphCheckpoint&) = delete;
  GraphCheckpoint& operator=(const GraphCheckpoint&) = delete;
  /// Keeps what was built; the destructor then does nothing.
  void commit();

 private:
  void rollback() noexcept;
  Graph* g_;
  bool committed_ = false;
  std::size_t nodes_, variables_, cond_contexts_, journal_;
  std::vector<std::size_t> collection_sizes_;
  std::map<std::string, int> var_scope_counts_;
  std::optional<std::int64_t> seed_;
};

namespace detail {
/// TF's name patterns (see the top of this header).
bool is_valid_node_name(std::string_view name);
bool is_valid_scope_name(std::string_view name, bool at_root);
/// ValueError "'<name>' is not a valid node name" (prefixed by `what`, e.g. "Variable name ").
void check_node_name(const std::string& name, const std::string& what = "");
/// ValueError "'<name>' is not a valid scope name".
void check_scope_name(const std::string& name, bool at_root);
/// Strips ":0" etc. Throws ValueError on malformed tensor names.
std::pair<std::string, int> parse_tensor_name(const std::string& name);
}  // namespace detail

}  // namespace kiln

// write_graphviz(graph, os[, options]): DOT pictures of a graph.
#include "framework/graphviz.hpp"
