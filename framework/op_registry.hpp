#pragma once
// One record per op type: shape function, kernels per dtype, gradient (or "not differentiable").
// Op families register their records explicitly from register_all_ops(); nothing registers itself
// from a static initialiser.
#include <algorithm>
#include <any>
#include <array>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/array.hpp"
#include "framework/attr_codec.hpp"
#include "framework/errors.hpp"
#include "framework/graph.hpp"
#include "framework/tensor_view.hpp"

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
  /// Appends an input: its dtype, static shape and, for a constant, its value.
  void add_input(DType dtype, Shape shape, const Array* constant_value = nullptr) {
    dtypes.push_back(dtype);
    shapes.push_back(std::move(shape));
    constant_values.push_back(constant_value);
  }
};

namespace detail {
/// Run-time state a kernel may touch: variable storage, per-op random generators, output buffers.
class RunState {
 public:
  virtual ~RunState() = default;
  /// The storage behind a ref input, which the kernel writes. The executor holds the variable's
  /// lock while the kernel runs.
  virtual Array& variable_storage(const Node* variable_node) = 0;
  /// The value of that variable before the kernel: on the run's first write to it, the value the
  /// run found (kept for a failed run to put back, and never written: the storage is then another
  /// buffer of the same dtype and shape, contents unspecified, or empty when the variable was);
  /// on a later write, the storage itself.
  virtual const Array& variable_before(const Node* variable_node) = 0;
  /// The op's generator; `hold` keeps it locked until the kernel ends (one session's runs on
  /// several threads draw from one generator per op).
  virtual std::mt19937_64& rng(const Node* node, std::unique_lock<std::mutex>& hold) = 0;
  /// A buffer for output `output` of the running op, of `elements` values of `dtype`, that no one
  /// else holds (the one the memory plan gave that output, or a value of an earlier run or of an
  /// op whose readers finished), or an empty Array when the run has none to give.
  virtual Array take_buffer(int output, DType dtype, std::size_t elements) = 0;
};
}  // namespace detail

/// What a kernel sees while it runs: its inputs (views owned by the executor), its outputs to set,
/// the storage of its ref inputs and its random generator. Not thread-safe: one per running op.
class KernelContext {
 public:
  /// donors (optional): per input, the executor's Array the kernel may take over as an output
  /// buffer (forward_input_or_allocate), or null.
  KernelContext(const detail::Node& node, detail::RunState& state, const Array* const* inputs, int num_inputs,
                Array* outputs, Array* const* donors = nullptr)
      : node_(node), state_(state), inputs_(inputs), num_inputs_(num_inputs), outputs_(outputs), donors_(donors) {}
  const detail::Node& node() const { return node_; }
  const std::string& op_name() const { return node_.name; }
  int num_inputs() const { return num_inputs_; }
  /// False for a dead input of Merge (OpDef::dead_inputs) and for ref inputs (which are never read
  /// as values).
  bool has_input(int i) const { return inputs_[i] != nullptr; }
  const Array& input(int i) const { return *inputs_[i]; }
  /// Input i's elements (the kernel was chosen for its dtype).
  template <class T>
  TensorView<const T> input_as(int i) const {
    return input(i).view<T>();
  }
  /// Output i as an array of T with the given dimensions, in a buffer the executor hands out
  /// (reused between runs and between values whose lifetimes do not overlap: a steady-state run
  /// allocates nothing). The contents are unspecified: the kernel writes every element. The
  /// dimensions must describe a size check_array_size accepts.
  template <class T, class D>
  TensorView<T> allocate_output(int i, const D& dims) {
    std::size_t n = 1;
    for (const auto d : dims) n *= static_cast<std::size_t>(d);
    Array& out = outputs_[i];
    out = state_.take_buffer(i, dtype_of<T>(), n);
    if (out.empty()) out = Array(xt::xarray<T>::from_shape(dims));
    return out.writable<T>(dims);
  }
  template <class T>
  TensorView<T> allocate_output(int i, std::initializer_list<std::size_t> dims) {
    return allocate_output<T, std::initializer_list<std::size_t>>(i, dims);
  }
  /// Output i with the dtype and dimensions of input j (the common elementwise case).
  template <class T>
  TensorView<T> allocate_output_like(int i, int j) {
    return allocate_output<T>(i, input_as<T>(j).shape());
  }
  /// Output i in input j's buffer when the executor allows it (this op is the last reader of that
  /// value and nothing else holds its buffer), else as allocate_output_like(i, j). For elementwise
  /// kernels, which read element k of input j before they write element k of the output. Views
  /// of input j taken before stay valid; input(j) itself is empty afterwards when forwarded.
  template <class T>
  TensorView<T> forward_input_or_allocate(int j, int i) {
    Array* donor = donors_ ? donors_[j] : nullptr;
    if (donor && !donor->empty() && donor->dtype() == dtype_of<T>()) {
      Array& out = outputs_[i] = std::move(*donor);
      return out.writable<T>(out.view<T>().shape());  // as it is: its dims are the input's
    }
    return allocate_output_like<T>(i, j);
  }
  void set_output(int i, Array value) { outputs_[i] = std::move(value); }
  /// The session storage of the variable behind ref input i (Assign and friends), to write every
  /// element of: its contents are the variable's value only when variable_before(i) is the same
  /// Array; read that for the value before this op, through a pointer taken after mutable_as on
  /// this storage (which may replace the buffer that same Array held).
  Array& variable_ref(int i) { return state_.variable_storage(node_.inputs[static_cast<std::size_t>(i)].node); }
  const Array& variable_before(int i) {
    return state_.variable_before(node_.inputs[static_cast<std::size_t>(i)].node);
  }
  std::mt19937_64& rng() { return state_.rng(&node_, rng_lock_); }
  const Shape& output_shape(int i) const { return node_.output_shapes[static_cast<std::size_t>(i)]; }

 private:
  const detail::Node& node_;
  detail::RunState& state_;
  const Array* const* inputs_;
  int num_inputs_;
  Array* outputs_;
  Array* const* donors_;
  std::unique_lock<std::mutex> rng_lock_;
};

/// A kernel prepared for one op: built once when a plan is compiled (its attributes parsed into
/// typed values and enums, the dtype chosen, geometry worked out where the static shapes allow),
/// then compute() on every run. One object serves concurrent runs: compute() must not modify it.
/// Errors thrown by compute() get the op's name, type and input shapes added by the executor.
class OpKernel {
 public:
  virtual ~OpKernel() = default;
  virtual void compute(KernelContext& ctx) const = 0;
};

/// Makes the kernel of one node (of the dtype the factory was registered for).
using KernelFactory = std::function<std::unique_ptr<OpKernel>(const detail::Node& node)>;

using ShapeFn = std::function<std::vector<TensorSpec>(const InferenceContext&)>;
using OptionalTensors = std::vector<std::optional<Tensor>>;
/// Gradient: given the op and the gradient of each output (nullopt only for ops that accept
/// missing output gradients), the gradient of each input (nullopt: none).
using GradFn = std::function<OptionalTensors(const Operation& op, const OptionalTensors& dy)>;

struct OpDef {
  std::string type;
  ShapeFn shape_fn;
  /// Per dtype: how to make the kernel (kernels_for / prepared_kernels); empty: unsupported.
  std::array<KernelFactory, kNumDTypes> kernels{};
  /// Whose dtype selects the kernel: an input index, or -1 for output 0.
  int dispatch_input = 0;
  GradFn gradient;
  bool not_differentiable = false;
  /// Inputs that refer to a variable's storage (Assign's target): never switched, never read.
  std::vector<int> ref_inputs;
  bool is_ref_input(std::size_t i) const {
    return std::find(ref_inputs.begin(), ref_inputs.end(), static_cast<int>(i)) != ref_inputs.end();
  }
  /// Switch: called even when only some outputs received gradients.
  bool accepts_missing_output_grads = false;
  /// Variable-like op whose value the session keeps (VariableV2).
  bool is_variable = false;
  bool is_placeholder = false;
  /// Communicates with other processes (AllReduce, ...): the executor runs these ops one at a time
  /// in plan order, so every process issues them in the same order.
  bool is_collective = false;
  /// Elementwise with NumPy broadcasting of its two inputs against each other: the plan may give it
  /// a BroadcastTo's input instead of its result (framework/simplify.hpp).
  bool broadcasts_inputs = false;
  /// Output 0 may take over the buffer of an input of its shape and dtype (the first such input;
  /// forward_input_or_allocate): the memory plan puts the output in that input's buffer.
  bool forwards_input = false;
  /// An output may be an input's buffer itself (Identity, Switch, Merge, ...): the memory plan keeps
  /// the input's buffer until the readers of the outputs finished too.
  bool passes_inputs_through = false;
  /// Which dead data inputs make the op dead (a dead control input always does): any (most ops),
  /// all (Merge), or both of some pair 2k, 2k + 1 (_CondGradAddN, whose pairs are Merges'). Other
  /// than with `any`, the kernel sees a dead input as missing (has_input); an op leaves an output
  /// dead by not setting it (Switch).
  enum class DeadInputs { any, all, both_of_a_pair };
  DeadInputs dead_inputs = DeadInputs::any;
  /// Writes and reads the op's attribute struct (framework/attr_codec.hpp); empty when the op is
  /// built without attributes (write_graph cannot write an op with attributes and no codec).
  AttrCodec attr_codec{};
};

namespace detail {
/// The node's attributes as A, for a kernel's constructor (read once, when the kernel is
/// prepared). InternalError when the node holds another type.
template <class A>
const A& node_attrs(const Node& node) {
  if (const A* a = std::any_cast<A>(&node.attrs)) return *a;
  throw InternalError("kernel of '" + node.name + "' read attributes of the wrong type");
}

template <class F>
class FunctionKernel final : public OpKernel {
 public:
  explicit FunctionKernel(F f) : f_(std::move(f)) {}
  void compute(KernelContext& ctx) const override { f_(ctx); }

 private:
  F f_;
};

// A function kernel with its attributes: a copy of the node's, taken when it is prepared.
template <class A, class F>
class AttrFunctionKernel final : public OpKernel {
 public:
  AttrFunctionKernel(F f, A attrs) : f_(std::move(f)), attrs_(std::move(attrs)) {}
  void compute(KernelContext& ctx) const override { f_(ctx, attrs_); }

 private:
  F f_;
  A attrs_;
};
}  // namespace detail

/// The per-dtype kernel table from a generic lambda `[]<class T>(KernelContext&)`.
template <class... Ts, class F>
std::array<KernelFactory, kNumDTypes> kernels_for(F f) {
  std::array<KernelFactory, kNumDTypes> k{};
  ((k[static_cast<std::size_t>(dtype_of<Ts>())] =
        [f](const detail::Node&) -> std::unique_ptr<OpKernel> {
          auto call = [f](KernelContext& c) { f.template operator()<Ts>(c); };
          return std::make_unique<detail::FunctionKernel<decltype(call)>>(call);
        }),
   ...);
  return k;
}

/// The same from `[]<class T>(KernelContext&, const A& attrs)`: the kernel holds the node's
/// attributes, typed, from the moment it is prepared (no per-run lookup or cast).
template <class A, class... Ts, class F>
std::array<KernelFactory, kNumDTypes> kernels_with(F f) {
  std::array<KernelFactory, kNumDTypes> k{};
  ((k[static_cast<std::size_t>(dtype_of<Ts>())] =
        [f](const detail::Node& node) -> std::unique_ptr<OpKernel> {
          auto call = [f](KernelContext& c, const A& a) { f.template operator()<Ts>(c, a); };
          return std::make_unique<detail::AttrFunctionKernel<A, decltype(call)>>(call, detail::node_attrs<A>(node));
        }),
   ...);
  return k;
}

/// The per-dtype kernel table of a prepared kernel: K<T> is an OpKernel constructed from the node.
template <template <class> class K, class... Ts>
std::array<KernelFactory, kNumDTypes> prepared_kernels() {
  std::array<KernelFactory, kNumDTypes> k{};
  ((k[static_cast<std::size_t>(dtype_of<Ts>())] = [](const detail::Node& node) -> std::unique_ptr<OpKernel> {
     return std::make_unique<K<Ts>>(node);
   }),
   ...);
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

namespace detail {
/// The dtype whose kernel runs a node: its OpDef::dispatch_input's dtype, or its first output's.
DType kernel_dtype(const Node& node);
/// The kernel of `def` for kernel_dtype(node), prepared for the node: def is the node's op, or a
/// fused op that runs in its place (framework/simplify.hpp). TypeError when that dtype has none.
std::unique_ptr<OpKernel> prepare_kernel(const OpDef& def, const Node& node);
}  // namespace detail

/// Builds an op in the default graph (or the inputs' graph): resolves the name under the current
/// name scope, adds control dependencies and cond-branch plumbing, infers output dtypes and shapes.
/// Errors from the shape function are rethrown with the op's name, type and input shapes.
Operation build_op(const std::string& type, const std::vector<Tensor>& inputs, std::any attrs = {},
                   const std::string& name = "");

}  // namespace kiln
