#pragma once
// One record per op type: shape function, kernels per dtype, gradient (or "not differentiable").
// Op families register their records explicitly from register_all_ops(); nothing registers itself
// from a static initialiser.
#include <any>
#include <array>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/graph.hpp"

namespace kiln {

struct TensorSpec {
  DType dtype;
  Shape shape;
};

/// What a shape function sees: the inputs' dtypes and static shapes, and the typed attributes.
/// Shape functions throw short ValueError/TypeError messages; the builder adds the op context.
struct InferenceContext {
  std::vector<DType> dtypes;
  std::vector<Shape> shapes;
  const std::any* attrs_ = nullptr;
  /// Constant inputs known at build time (nullptr when not a Const op), e.g. for reshape targets.
  std::vector<const Array*> constant_values;
  template <class A>
  const A& attrs() const {
    if (const A* a = std::any_cast<A>(attrs_)) return *a;
    throw InternalError("shape function read attributes of the wrong type");
  }
  int num_inputs() const { return static_cast<int>(dtypes.size()); }
};

namespace detail {
/// Run-time state a kernel may touch: variable storage and per-op random generators.
class RunState {
 public:
  virtual ~RunState() = default;
  virtual Array& variable_storage(const Node* variable_node) = 0;
  virtual std::mt19937_64& rng(const Node* node) = 0;
};
}  // namespace detail

class KernelContext {
 public:
  KernelContext(const detail::Node& node, detail::RunState& state) : node_(node), state_(state) {}
  const detail::Node& node() const { return node_; }
  const std::string& op_name() const { return node_.name; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  const Array& input(int i) const { return *inputs_[static_cast<std::size_t>(i)]; }
  template <class T>
  const xt::xarray<T>& input_as(int i) const {
    return input(i).as<T>();
  }
  template <class A>
  const A& attrs() const {
    if (const A* a = std::any_cast<A>(&node_.attrs)) return *a;
    throw InternalError("kernel of '" + node_.name + "' read attributes of the wrong type");
  }
  void set_output(int i, Array value) { outputs_[static_cast<std::size_t>(i)] = std::move(value); }
  /// The session storage of the variable behind ref input i (Assign and friends).
  Array& variable_ref(int i) { return state_.variable_storage(node_.inputs[static_cast<std::size_t>(i)].node); }
  std::mt19937_64& rng() { return state_.rng(&node_); }
  const Shape& output_shape(int i) const { return node_.output_shapes[static_cast<std::size_t>(i)]; }

  // executor side
  std::vector<const Array*> inputs_;
  std::vector<Array> outputs_;

 private:
  const detail::Node& node_;
  detail::RunState& state_;
};

using ShapeFn = std::function<std::vector<TensorSpec>(const InferenceContext&)>;
using Kernel = std::function<void(KernelContext&)>;
using OptionalTensors = std::vector<std::optional<Tensor>>;
/// Gradient: given the op and the gradient of each output (nullopt only for ops that accept
/// missing output gradients), the gradient of each input (nullopt: none).
using GradFn = std::function<OptionalTensors(const Operation& op, const OptionalTensors& dy)>;

struct OpDef {
  std::string type;
  ShapeFn shape_fn;
  std::array<Kernel, kNumDTypes> kernels{};
  /// Whose dtype selects the kernel: an input index, or -1 for output 0.
  int dispatch_input = 0;
  GradFn gradient;
  bool not_differentiable = false;
  /// Inputs that refer to a variable's storage (Assign's target): never switched, never read.
  std::vector<int> ref_inputs;
  /// Switch: called even when only some outputs received gradients.
  bool accepts_missing_output_grads = false;
  /// Variable-like op whose value the session keeps (VariableV2).
  bool is_variable = false;
  bool is_placeholder = false;
  /// Talks to the other ranks (distributed/collective_ops.cpp): executors run collective ops one at
  /// a time, in plan order, so that every rank issues them in the same order.
  bool is_collective = false;
};

/// Builds the per-dtype kernel table from a generic lambda `[]<class T>(KernelContext&)`.
template <class... Ts, class F>
std::array<Kernel, kNumDTypes> kernels_for(F f) {
  std::array<Kernel, kNumDTypes> k{};
  ((k[static_cast<std::size_t>(dtype_of<Ts>())] = [f](KernelContext& c) { f.template operator()<Ts>(c); }), ...);
  return k;
}
#define KILN_FLOAT_TYPES float, double
#define KILN_NUMERIC_TYPES float, double, std::int32_t, std::int64_t
#define KILN_ALL_TYPES float, double, std::int32_t, std::int64_t, bool

class OpRegistry {
 public:
  /// Throws InternalError on a duplicate type.
  void add(OpDef def);
  /// nullptr when absent.
  const OpDef* find(const std::string& type) const;
  /// Throws NotFoundError when absent.
  const OpDef& get(const std::string& type) const;
  std::vector<const OpDef*> all() const;
  /// Fills the gradient slot of a registered op (used where the gradient lives apart from the op).
  void set_gradient(const std::string& type, GradFn fn);

 private:
  std::unordered_map<std::string, std::unique_ptr<OpDef>> defs_;
  std::vector<std::string> order_;
};

/// The process-wide registry, filled on first use by register_all_ops().
OpRegistry& op_registry();

/// Builds an op in the default graph (or the inputs' graph): resolves the name under the current
/// name scope, adds control dependencies and cond-branch plumbing, infers output dtypes and shapes.
/// Errors from the shape function are rethrown with the op's name, type and input shapes.
Operation build_op(const std::string& type, const std::vector<Tensor>& inputs, std::any attrs = {},
                   const std::string& name = "");

}  // namespace kiln
