#include "framework/op_registry.hpp"

#include <algorithm>
#include <mutex>

#include "framework/ops.hpp"
#include "framework/ops/register.hpp"

namespace kiln {

void OpRegistry::add(OpDef def) {
  if (defs_.count(def.type)) throw InternalError("op type '" + def.type + "' registered twice");
  order_.push_back(def.type);
  auto type = def.type;
  defs_[type] = std::make_unique<OpDef>(std::move(def));
}

const OpDef* OpRegistry::find(const std::string& type) const {
  auto it = defs_.find(type);
  return it == defs_.end() ? nullptr : it->second.get();
}

const OpDef& OpRegistry::get(const std::string& type) const {
  if (const OpDef* d = find(type)) return *d;
  throw NotFoundError("Op type '" + type + "' is not registered");
}

std::vector<const OpDef*> OpRegistry::all() const {
  std::vector<const OpDef*> r;
  for (auto& t : order_) r.push_back(defs_.at(t).get());
  return r;
}

void OpRegistry::set_gradient(const std::string& type, GradFn fn) {
  auto it = defs_.find(type);
  if (it == defs_.end()) throw NotFoundError("Op type '" + type + "' is not registered");
  it->second->gradient = std::move(fn);
}

namespace detail {

DType kernel_dtype(const Node& node) {
  const int d = node.def->dispatch_input;
  if (d >= 0 && d < static_cast<int>(node.inputs.size())) {
    const TensorRef& in = node.inputs[static_cast<std::size_t>(d)];
    return in.node->output_dtypes[static_cast<std::size_t>(in.index)];
  }
  return node.output_dtypes.empty() ? float32 : node.output_dtypes[0];
}

std::unique_ptr<OpKernel> prepare_kernel(const OpDef& def, const Node& node) {
  const DType t = kernel_dtype(node);
  const KernelFactory& make = def.kernels[static_cast<std::size_t>(t)];
  if (!make)
    throw TypeError(std::string("Value of dtype ") + dtype_name(t) + " is not supported by '" + node.name +
                    "' (op: '" + def.type + "')");
  return make(node);
}

}  // namespace detail

OpRegistry& op_registry() {
  static OpRegistry registry;
  static std::once_flag once;
  std::call_once(once, [] { register_all_ops(registry); });
  return registry;
}

// ---------------------------------------------------------------- the op builder

namespace {

std::string shapes_text(const std::vector<Tensor>& inputs) {
  std::string s;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (i) s += ", ";
    s += inputs[i].shape().to_string();
  }
  return s;
}

// Shape functions throw short messages; the op context is added here.
[[noreturn]] void rethrow_with_context(const std::string& name, const std::string& type,
                                       const std::vector<Tensor>& inputs) {
  detail::rethrow_with_context(" for '" + name + "' (op: '" + type + "') with input shapes: " + shapes_text(inputs) + ".",
                               /*as_build_error=*/true);
}

// Inside a cond branch, a tensor from outside reaches the branch through Switch(x, pred)[branch],
// so that everything consuming it is dead when the branch is not taken (TF's CondContext.AddValue).
Tensor enter_branch(Graph& g, detail::CondContext* ctx, const Tensor& x) {
  for (auto& [ext, sw] : ctx->switched)
    if (ext == x.ref()) return Tensor(sw);
  // Build the Switch in the enclosing context, outside any control-dependency frame.
  auto saved_stack = std::move(g.cond_stack_);
  g.cond_stack_.assign(saved_stack.begin(), saved_stack.end() - 1);
  Tensor out;
  {
    control_dependencies none(nullptr);
    auto [f, t] = switch_(x, Tensor(ctx->pred));
    out = ctx->branch ? t : f;
  }
  g.cond_stack_ = std::move(saved_stack);
  ctx->switched.emplace_back(x.ref(), out.ref());
  return out;
}

}  // namespace

Operation build_op(const std::string& type, const std::vector<Tensor>& given_inputs, std::any attrs,
                   const std::string& name) {
  const OpDef& def = op_registry().get(type);
  Graph& g = given_inputs.empty() ? get_default_graph() : given_inputs[0].graph();
  for (auto& in : given_inputs) {
    if (!in.valid()) throw ValueError("Op '" + type + "' was given a null Tensor as input");
    if (&in.graph() != &g)
      throw ValueError("Tensor '" + in.name() + "' must be from the same graph as '" +
                       given_inputs[0].name() + "' (op type " + type + ")");
  }
  auto node = std::make_unique<detail::Node>();
  node->name = g.unique_name(name.empty() ? type : name, false);
  node->def = &def;
  node->attrs = std::move(attrs);

  std::vector<Tensor> inputs = given_inputs;
  detail::CondContext* ctx = g.cond_stack_.empty() ? nullptr : g.cond_stack_.back();
  if (ctx) {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (!def.is_ref_input(i) && !ctx->contains(inputs[i].op().node())) inputs[i] = enter_branch(g, ctx, inputs[i]);
    }
    node->cond_ctx = ctx;
  }

  InferenceContext ic;
  ic.attrs_ = &node->attrs;
  for (auto& in : inputs) {
    const auto* src = in.op().node();
    ic.add_input(in.dtype(), in.shape(), src->def->type == "Const" ? std::any_cast<Array>(&src->attrs) : nullptr);
  }
  std::vector<TensorSpec> specs;
  try {
    specs = def.shape_fn(ic);
  } catch (const Error&) {
    rethrow_with_context(node->name, type, given_inputs);
  }
  for (auto& s : specs) {
    node->output_dtypes.push_back(s.dtype);
    node->output_shapes.push_back(s.shape);
  }
  for (auto& in : inputs) node->inputs.push_back(in.ref());
  const DType dispatch = detail::kernel_dtype(*node);
  if (!def.kernels[static_cast<std::size_t>(dispatch)])
    throw TypeError(std::string("Value of dtype ") + dtype_name(dispatch) + " is not supported by '" +
                    node->name + "' (op: '" + type + "') with input shapes: " + shapes_text(given_inputs) + ".");

  for (auto* c : g.current_control_inputs()) {
    const bool is_data_input = std::any_of(node->inputs.begin(), node->inputs.end(),
                                           [&](const detail::TensorRef& r) { return r.node == c; });
    if (!is_data_input) node->control_inputs.push_back(c);
  }
  if (ctx && node->inputs.empty()) node->control_inputs.push_back(ctx->pivot);
  node->name = g.unique_name(name.empty() ? type : name, true);
  return Operation(g.add_node(std::move(node)));
}

}  // namespace kiln
