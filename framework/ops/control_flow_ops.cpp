// Control flow: NoOp, group, and TF's Switch/Merge with dead-value propagation, from which cond is
// built. The executor (executor.cpp) marks every output of an op dead when one of its data or
// control inputs is dead, except Merge (OpDef::dead_inputs), which is dead only when all its data
// inputs are. A Switch leaves its untaken output unset, and the executor marks it dead.
#include <array>

#include "framework/kernels/elementwise.hpp"
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

// _CondGradAddN: AddN(Merge(p0, q0), Merge(p1, q1), ...) of Merges that have a ZerosLike(z) among
// their inputs (the gradient of a value that both branches of a cond read: switch_grad's zeros for
// the branch that did not use it), run without the zeros. Made only by the plan, in the AddN's
// place (framework/simplify.hpp), and the kernel is prepared from that AddN: inputs 2k and 2k + 1
// are Merge k's two inputs, each ZerosLike replaced by its input z, read only for whether it is
// live and its shape. Term k is what Merge k gives: the first live of its two inputs, zeros when
// that is a z; a term whose two are both dead makes the sum dead, as the AddN of a dead Merge
// (OpDef::DeadInputs::both_of_a_pair: the executor does not run it then).
// The sum: the live values added in order as AddN adds them, then + 0 once when a term was zeros
// (adding zeros anywhere in the sum changes nothing but a -0 result, which becomes +0, and a
// signalling NaN, which becomes quiet).
template <class T>
class CondGradAddNKernel final : public OpKernel {
 public:
  explicit CondGradAddNKernel(const detail::Node& add_n) {
    for (const detail::TensorRef& m : add_n.inputs) {
      if (m.node->def->type != "Merge" || m.node->inputs.size() != 2)
        throw InternalError("_CondGradAddN made for '" + add_n.name + "', whose inputs are not all two-input Merges");
      for (const detail::TensorRef& in : m.node->inputs) zeros_.push_back(in.node->def->type == "ZerosLike");
    }
  }
  void compute(KernelContext& c) const override {
    const int terms = c.num_inputs() / 2;
    // Term k's input: the first live of its two (one is: the executor runs the op only then).
    const auto term = [&](int k) { return c.has_input(2 * k) ? 2 * k : 2 * k + 1; };
    const auto is_zeros = [&](int i) { return zeros_[static_cast<std::size_t>(i)] != 0; };
    int first = -1, zeros = -1, values = 0;  // the first value term's input, a zeros term's
    for (int k = 0; k < terms; ++k) {
      const int i = term(k);
      if (is_zeros(i)) {
        zeros = i;
      } else {
        values += 1;
        if (first < 0) first = i;
      }
    }
    for (int k = 1; k < terms; ++k)  // AddN's check, on the Merges' values
      if (c.input_as<T>(term(k)).shape() != c.input_as<T>(term(0)).shape())
        detail::throw_add_n_shapes(c, c.input(term(0)), c.input(term(k)));
    if (values == 0) {
      auto out = c.allocate_output_like<T>(0, zeros);
      std::fill(out.begin(), out.end(), T(0));
      return;
    }
    const Array& v = c.input(first);
    const T* v0 = v.view<T>().data();
    const std::size_t n = v.view<T>().size();
    const auto plus_zero = [](auto a) { return a + T(0); };
    if (values == 1 && zeros >= 0) {  // the cond's case: one branch's gradient + 0
      if (!kernels::any_changed_by_adding_zero(v0, n)) {  // the value itself
        c.set_output(0, v);
        return;
      }
      kernels::map_unary(v0, c.forward_input_or_allocate<T>(first, 0).data(), n, plus_zero);
      return;
    }
    T* acc = c.forward_input_or_allocate<T>(first, 0).data();
    if (acc != v0) std::copy(v0, v0 + n, acc);
    for (int k = 0; k < terms; ++k)
      if (const int i = term(k); i != first && !is_zeros(i))
        kernels::map_binary(acc, 1, c.input_as<T>(i).data(), 1, acc, n, [](auto a, auto b) { return a + b; });
    if (zeros >= 0) kernels::map_unary(acc, acc, n, plus_zero);
  }

 private:
  std::vector<char> zeros_;  // per input: the input of a ZerosLike (the term's zeros)
};

std::vector<TensorSpec> cond_grad_add_n_shape(const InferenceContext& c) {
  if (c.num_inputs() < 2 || c.num_inputs() % 2)
    throw ValueError("_CondGradAddN needs two inputs per term, got " + std::to_string(c.num_inputs()));
  return detail::add_n_shape(c);
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
         .dead_inputs = OpDef::DeadInputs::all,
         .attr_codec = attr_codec<MergeAttrs>([](auto& io, auto& a) { io(a.pred); })});
  r.add(detail::not_differentiable({.type = "_CondGradAddN",
                                    .shape_fn = cond_grad_add_n_shape,
                                    .kernels = prepared_kernels<CondGradAddNKernel, KILN_NUMERIC_TYPES>(),
                                    .forwards_input = true,
                                    .passes_inputs_through = true,
                                    .dead_inputs = OpDef::DeadInputs::both_of_a_pair}));
}

}  // namespace kiln
