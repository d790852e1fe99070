// Control flow: NoOp, group, and TF's Switch/Merge with dead-value propagation, from which cond is
// built. The executor (executor.cpp) marks every output of an op dead when one of its data or
// control inputs is dead, except Merge, which is dead only when all its data inputs are. A Switch
// leaves its untaken output unset, and the executor marks it dead.
#include <array>

#include "framework/ops/common.hpp"
#include "framework/variable.hpp"

namespace kiln {

namespace {

struct MergeAttrs {
  std::optional<detail::TensorRef> pred;  // set by cond: the gradient routes through Switch(pred)
};

std::vector<TensorSpec> switch_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  if (c.dtypes[1] != boolean)
    throw TypeError(std::string("Switch predicate must be bool, got ") + dtype_name(c.dtypes[1]));
  if (c.shapes[1].rank() > 0) throw ValueError("Switch predicate must be a scalar, got shape " + c.shapes[1].to_string());
  return {{c.dtypes[0], c.shapes[0]}, {c.dtypes[0], c.shapes[0]}};
}

std::vector<TensorSpec> merge_shape(const InferenceContext& c) {
  if (c.num_inputs() < 1) throw ValueError("Merge needs at least one input");
  detail::expect_same_dtype(c);
  Shape s = c.shapes[0];
  for (int i = 1; i < c.num_inputs(); ++i) {
    const Shape& o = c.shapes[static_cast<std::size_t>(i)];
    if (s.is_compatible_with(o)) s = s.merge_with(o);
    else if (s.rank() == o.rank()) s = Shape::unknown_of_rank(s.rank());
    else s = Shape::unknown();
  }
  return {{c.dtypes[0], s}, {int32, Shape{}}};
}

// d(Switch)/d(data): Merge of the two output gradients. A branch that produced no gradient gets
// zeros shaped like its Switch output, alive exactly when that branch is taken (TF's
// ZerosLikeOutsideLoop), so the Merge always has one live input.
OptionalTensors switch_grad(const Operation& op, const OptionalTensors& dy) {
  if (!dy[0] && !dy[1]) return {std::nullopt, std::nullopt};
  const Tensor f = dy[0] ? *dy[0] : zeros_like(op.output(0));
  const Tensor t = dy[1] ? *dy[1] : zeros_like(op.output(1));
  return {merge({f, t}).first, std::nullopt};
}

// d(Merge)/d(input i): the incoming gradient, routed by Switch(grad, pred) to the branch that ran.
OptionalTensors merge_grad(const Operation& op, const OptionalTensors& dy) {
  const auto& a = op.attrs<MergeAttrs>();
  if (!a.pred || op.inputs().size() != 2)
    throw LookupError("No gradient defined for operation '" + op.name() +
                      "' (op type: Merge): only the Merges built by cond are differentiable");
  auto [f, t] = switch_(*dy[0], Tensor(*a.pred));
  return {f, t};
}

std::vector<Tensor> run_branch(Graph& g, detail::CondContext* ctx, const std::function<std::vector<Tensor>()>& fn) {
  g.cond_stack_.push_back(ctx);
  std::vector<Tensor> results;
  try {
    results = fn();
    // A result computed outside the branch must still be dead when the branch is not taken.
    for (auto& r : results)
      if (!ctx->contains(r.op().node())) r = identity(r);
  } catch (...) {
    g.cond_stack_.pop_back();
    throw;
  }
  g.cond_stack_.pop_back();
  return results;
}

}  // namespace

Operation no_op(const std::string& name) { return build_op("NoOp", {}, {}, name); }

Operation group(const std::vector<GraphElement>& items, const std::string& name) {
  control_dependencies deps(items);
  return no_op(name.empty() ? "group_deps" : name);
}

std::pair<Tensor, Tensor> switch_(const Tensor& data, const Tensor& pred, const std::string& name) {
  Operation op = build_op("Switch", {data, pred}, {}, name);
  return {op.output(0), op.output(1)};
}

std::pair<Tensor, Tensor> merge(const std::vector<Tensor>& inputs, const std::string& name) {
  Operation op = build_op("Merge", inputs, MergeAttrs{}, name);
  return {op.output(0), op.output(1)};
}

std::vector<Tensor> cond(const Tensor& pred, const std::function<std::vector<Tensor>()>& true_fn,
                         const std::function<std::vector<Tensor>()>& false_fn, const std::string& name) {
  if (!pred.valid()) throw ValueError("cond: pred is a null Tensor");
  if (pred.dtype() != boolean)
    throw TypeError(std::string("cond: pred '") + pred.name() + "' must be a bool tensor, got " + dtype_name(pred.dtype()));
  if (pred.shape().rank() > 0)
    throw ValueError("cond: pred '" + pred.name() + "' must be a scalar, got shape " + pred.shape().to_string());
  Graph& g = pred.graph();
  name_scope ns(name.empty() ? "cond" : name);
  auto [pf, pt] = switch_(pred, pred);
  const Tensor pivot_t = identity(pt, "switch_t");
  const Tensor pivot_f = identity(pf, "switch_f");
  const detail::CondContext* parent = g.cond_stack_.empty() ? nullptr : g.cond_stack_.back();
  const auto make_ctx = [&](int branch, const Tensor& pivot) {
    auto ctx = std::make_unique<detail::CondContext>();
    ctx->parent = parent;
    ctx->pred = pred.ref();
    ctx->branch = branch;
    ctx->pivot = pivot.op().node();
    g.cond_contexts_.push_back(std::move(ctx));
    return g.cond_contexts_.back().get();
  };
  auto* ctx_t = make_ctx(1, pivot_t);
  auto* ctx_f = make_ctx(0, pivot_f);
  std::vector<Tensor> rt = run_branch(g, ctx_t, true_fn);
  std::vector<Tensor> rf = run_branch(g, ctx_f, false_fn);
  if (rt.size() != rf.size())
    throw ValueError("cond '" + ns.prefix() + "': true_fn returned " + std::to_string(rt.size()) +
                     " tensors and false_fn " + std::to_string(rf.size()));
  std::vector<Tensor> out;
  for (std::size_t i = 0; i < rt.size(); ++i) {
    if (rt[i].dtype() != rf[i].dtype())
      throw TypeError("cond '" + ns.prefix() + "': output " + std::to_string(i) + " is " + dtype_name(rt[i].dtype()) +
                      " in true_fn and " + dtype_name(rf[i].dtype()) + " in false_fn");
    Operation m = build_op("Merge", {rf[i], rt[i]}, MergeAttrs{pred.ref()}, "Merge");
    out.push_back(m.output(0));
  }
  return out;
}

Tensor cond(const Tensor& pred, const std::function<Tensor()>& true_fn, const std::function<Tensor()>& false_fn,
            const std::string& name) {
  return cond(
      pred, [&] { return std::vector<Tensor>{true_fn()}; }, [&] { return std::vector<Tensor>{false_fn()}; }, name)[0];
}

Operation cond(const Tensor& pred, const std::function<Operation()>& true_fn,
               const std::function<Operation()>& false_fn, const std::string& name) {
  // Each branch yields a constant that depends on the branch's op; the Merge is the result.
  const auto wrap = [](const std::function<Operation()>& fn) {
    return [&fn] {
      const Operation o = fn();
      control_dependencies deps({o});
      return std::vector<Tensor>{scalar(1.0, boolean, "done")};
    };
  };
  return cond(pred, wrap(true_fn), wrap(false_fn), name)[0].op();
}

void register_control_flow_ops(OpRegistry& r) {
  r.add({.type = "NoOp",
         .shape_fn = [](const InferenceContext&) { return std::vector<TensorSpec>{}; },
         .kernels = kernels_for<float>([]<class T>(KernelContext&) {}),
         .dispatch_input = -1,
         .not_differentiable = true});
  r.add({.type = "Switch",
         .shape_fn = switch_shape,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const bool p = c.input(1).scalar<bool>();
           c.set_output(p ? 1 : 0, c.input(0));
         }),
         .gradient = switch_grad,
         .accepts_missing_output_grads = true,
         .passes_inputs_through = true});
  r.add({.type = "Merge",
         .shape_fn = merge_shape,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           for (int i = 0; i < c.num_inputs(); ++i)
             if (c.has_input(i)) {
               c.set_output(0, c.input(i));
               c.allocate_output<std::int32_t>(1, std::array<std::size_t, 0>{})() = static_cast<std::int32_t>(i);
               return;
             }
         }),
         .gradient = merge_grad,
         .accepts_missing_output_grads = false,
         .passes_inputs_through = true,
         .attr_codec = attr_codec<MergeAttrs>([](auto& io, auto& a) { io(a.pred); })});
}

}  // namespace kiln
