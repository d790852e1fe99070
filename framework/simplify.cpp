#include "framework/simplify.hpp"

#include <algorithm>
#include <array>
#include <optional>

#include "framework/array.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"

namespace kiln::detail {

namespace {
const Shape& shape_of(const TensorRef& t) { return t.node->output_shapes[static_cast<std::size_t>(t.index)]; }
DType dtype_of(const TensorRef& t) { return t.node->output_dtypes[static_cast<std::size_t>(t.index)]; }
bool same_static_shape(const TensorRef& a, const TensorRef& b) {
  return shape_of(a).is_fully_defined() && shape_of(b).is_fully_defined() && shape_of(a) == shape_of(b);
}
bool is(const Node& n, const char* type) { return n.def->type == type; }
}  // namespace

Simplifier::Simplifier(const Graph& graph, const std::vector<bool>& cut, const std::vector<bool>& fed,
                       const std::vector<TensorRef>& fetched,
                       const std::vector<const Node*>& targets)
    : cut_(cut),
      fed_(fed),
      resolved_(static_cast<std::size_t>(graph.num_nodes())),
      fused_(static_cast<std::size_t>(graph.num_nodes()), nullptr),
      attributes_(static_cast<std::size_t>(graph.num_nodes()), nullptr),
      liveness_only_(static_cast<std::size_t>(graph.num_nodes())),
      done_(static_cast<std::size_t>(graph.num_nodes()), 0) {
  const std::vector<char> needed =
      reachable_backward(graph, targets, true, [&](const Node* v) { return static_cast<bool>(cut_[static_cast<std::size_t>(v->id)]); });
  readers_ = reader_counts(graph, &needed);
  for (const TensorRef& t : fetched)
    if (t.node) ++readers_[static_cast<std::size_t>(t.node->id)];
  absorbing_.assign(static_cast<std::size_t>(graph.num_nodes()), 0);
  for (int id = 0; id < graph.num_nodes(); ++id) {
    const Node& v = *graph.node(id);
    const auto k = static_cast<std::size_t>(id);
    // The readers that can take over a product with a broadcast factor (the fifth rule).
    if (needed[k] && (is(v, "SumToShape") || (is(v, "AddN") && v.inputs.size() == 2)))
      for (const TensorRef& in : v.inputs) ++absorbing_[static_cast<std::size_t>(in.node->id)];
    // Shape functions read constants' values (a Reshape's target); a fed constant can make the
    // static shapes built from it wrong, and the rules rely on them.
    if (cut_[k] && is(v, "Const")) static_shapes_hold_ = false;
  }
}

// A value may replace another only when it is computed in the same cond branch and nothing but
// data inputs, and control inputs the reader waits for too, decide whether (and when) it runs:
// the reader then runs after everything src would have (gradients built under TF1's
// control_dependencies(UPDATE_OPS) all wait for the update ops).
bool Simplifier::looks_through(const Node& src, const Node& reader) const {
  const auto& waits = reader.control_inputs;
  return !fed_[static_cast<std::size_t>(src.id)] && src.cond_ctx == reader.cond_ctx &&
         std::all_of(src.control_inputs.begin(), src.control_inputs.end(),
                     [&](const Node* c) { return std::find(waits.begin(), waits.end(), c) != waits.end(); });
}

// A value `reader` may read in place of the one it was given: computed in the same cond branch, and
// not a variable (whose value the reader would then see at its own time, perhaps after an assign
// the bypassed op was ordered before).
bool Simplifier::readable_instead(const TensorRef& t, const Node& reader) const {
  return t.node->cond_ctx == reader.cond_ctx && !t.node->def->is_variable;
}

// A constant whose every element is 1, through ops that only move or repeat elements; their other
// inputs (shapes, axes) must be constants nobody feeds, and the shape known at build time.
bool Simplifier::is_constant(const TensorRef& t) const {
  return is(*t.node, "Const") && !fed_[static_cast<std::size_t>(t.node->id)];
}

bool Simplifier::all_ones(const TensorRef& t, const Node& reader) const {
  const Node& n = *t.node;
  if (!looks_through(n, reader) || !shape_of(t).is_fully_defined()) return false;
  if (is(n, "Const")) {
    const auto* value = std::any_cast<Array>(&n.attrs);
    if (!value || value->dtype() == boolean) return false;
    const auto d = value->to_double();
    return std::all_of(d.begin(), d.end(), [](double v) { return v == 1.0; });
  }
  if (is(n, "Reshape") || is(n, "BroadcastTo") || is(n, "ExpandDims") || is(n, "Identity") || is(n, "Squeeze")) {
    for (std::size_t k = 1; k < n.inputs.size(); ++k)
      if (!is_constant(n.inputs[k])) return false;
    return all_ones(n.inputs[0], n);
  }
  return false;
}

const std::vector<TensorRef>& Simplifier::inputs_of(const Node& op) {
  const auto id = static_cast<std::size_t>(op.id);
  if (done_[id] == 1) return resolved_[id];
  if (done_[id] == 2) return op.inputs;  // on a dependency cycle (reported by the ordering)
  done_[id] = 2;
  std::vector<TensorRef> ins = op.inputs;
  for (std::size_t k = 0; k < ins.size() && static_shapes_hold_; ++k) {
    if (op.def->is_ref_input(k)) continue;
    TensorRef& in = ins[k];
    for (bool changed = true; changed;) {
      changed = false;
      const Node& src = *in.node;
      if (!looks_through(src, op)) break;
      // BroadcastTo(x, const shape) read by a broadcasting binary op whose other operand (as the run
      // reads it: never both made smaller) has the broadcast shape already: the op reads x.
      // x's shape known at build time (BroadcastTo's shape function then checked that it
      // broadcasts to the target), the target a constant nobody feeds.
      if (op.def->broadcasts_inputs && ins.size() == 2 && is(src, "BroadcastTo") && is_constant(src.inputs[1]) &&
          shape_of(src.inputs[0]).is_fully_defined() && readable_instead(src.inputs[0], op) &&
          same_static_shape(ins[1 - k], in)) {
        in = src.inputs[0];
        changed = true;
        continue;
      }
      const TensorRef product = without_ones(in, op);
      changed = !(product == in);
      in = product;
    }
  }
  if (is(op, "SumToShape") && static_shapes_hold_) fuse_product(op, ins);
  if (is(op, "AddN") && static_shapes_hold_) fuse_cond_gradients(op, ins);
  if (is(op, "AddN") && static_shapes_hold_ && !fused_[id]) fuse_moments_grad(op, ins);
  if (is(op, "ReluGrad") && static_shapes_hold_) fuse_max_pool_grad(op, ins);
  resolved_[id] = std::move(ins);
  done_[id] = 1;
  return resolved_[id];
}

// a * ones (either order) with a of the product's shape: a.
TensorRef Simplifier::without_ones(const TensorRef& t, const Node& reader) {
  const Node& src = *t.node;
  if (!is(src, "Mul") || !looks_through(src, reader)) return t;
  const std::vector<TensorRef>& m = inputs_of(src);
  for (std::size_t j = 0; j < 2; ++j)
    if (readable_instead(m[j], reader) && dtype_of(m[j]) == dtype_of(t) && same_static_shape(m[j], t) &&
        all_ones(m[1 - j], src))
      return m[j];
  return t;
}

// `t`, an output of a `type` op that only `reader` reads (no other op, control input or fetch),
// whose work `reader` may take over.
bool Simplifier::fusable(const TensorRef& t, const Node& reader, const char* type) const {
  return is(*t.node, type) && looks_through(*t.node, reader) && readers_[static_cast<std::size_t>(t.node->id)] == 1;
}

// `t` = Mul(a, s) (either order), every reader of which is a SumToShape or a two-input AddN (each
// may take the product over; no other op, control input or fetch needs it stored), a of the
// product's static shape, s of another (fully defined; the Mul's shape function checked that it
// broadcasts): {a, s}, else nothing. The fifth rule's product.
std::optional<std::array<TensorRef, 2>> Simplifier::scaled_product(const TensorRef& t, const Node& reader) {
  const Node& mul = *t.node;
  const auto id = static_cast<std::size_t>(mul.id);
  if (!is(mul, "Mul") || !looks_through(mul, reader) || absorbing_[id] != readers_[id]) return std::nullopt;
  const std::vector<TensorRef>& m = inputs_of(mul);
  for (std::size_t k = 0; k < 2; ++k)
    if (readable_instead(m[k], reader) && readable_instead(m[1 - k], reader) && same_static_shape(m[k], t) &&
        shape_of(m[1 - k]).is_fully_defined() && !(shape_of(m[1 - k]) == shape_of(t)))
      return std::array<TensorRef, 2>{m[k], m[1 - k]};
  return std::nullopt;
}

// Whether the registered op `type` has a kernel for t's dtype.
bool Simplifier::has_kernel(const char* type, const TensorRef& t) {
  return static_cast<bool>(op_registry().get(type).kernels[static_cast<std::size_t>(dtype_of(t))]);
}

// SumToShape(Mul(a, b), shape) -> _SumOfProducts(a, b, shape) (the third rule), or with a
// broadcast factor -> _SumOfScaledValues(a, s, shape) (the fifth). `ins`: the SumToShape's inputs
// as the run reads them.
void Simplifier::fuse_product(const Node& op, std::vector<TensorRef>& ins) {
  const TensorRef p = ins[0];
  const Node& mul = *p.node;
  const Shape& out = op.output_shapes[0];
  if (!is(mul, "Mul") || !out.is_fully_defined() || !shape_of(p).is_fully_defined() ||
      out.num_elements() >= shape_of(p).num_elements())
    return;
  if (const auto f = scaled_product(p, op); f && has_kernel("_SumOfScaledValues", p)) {
    ins = {(*f)[0], (*f)[1], ins[1]};
    fused_[static_cast<std::size_t>(op.id)] = &op_registry().get("_SumOfScaledValues");
    return;
  }
  if (!fusable(p, op, "Mul") || !has_kernel("_SumOfProducts", p)) return;
  const std::vector<TensorRef>& m = inputs_of(mul);
  for (const TensorRef& factor : m)
    if (!readable_instead(factor, op) || !same_static_shape(factor, p)) return;
  // A factor x - mean (a Sub only this Mul reads, x of the product's shape, the mean broadcast to
  // it, shapes known): _SumOfCenteredProducts(x, mean, other factor, shape).
  for (std::size_t k = 0; k < 2; ++k) {
    if (!fusable(m[k], mul, "Sub")) continue;
    const std::vector<TensorRef>& d = inputs_of(*m[k].node);
    if (!readable_instead(d[0], op) || !readable_instead(d[1], op) || !same_static_shape(d[0], p) ||
        !shape_of(d[1]).is_fully_defined() || broadcast_shapes(shape_of(d[1]), shape_of(p)) != shape_of(p))
      continue;
    ins = {d[0], d[1], m[1 - k], ins[1]};
    fused_[static_cast<std::size_t>(op.id)] = &op_registry().get("_SumOfCenteredProducts");
    return;
  }
  ins = {m[0], m[1], ins[1]};
  fused_[static_cast<std::size_t>(op.id)] = &op_registry().get("_SumOfProducts");
}

// AddN(MomentsGrad(x, mean, dmean, dvar), a), either order -> _MomentsGradAdd(a, x, mean, dmean,
// dvar) (the fourth rule), or with a = Mul(b, s), s per channel -> _MomentsGradAddScaled(b, s, x,
// mean, dmean, dvar) (the fifth). `ins`: the AddN's inputs as the run reads them.
void Simplifier::fuse_moments_grad(const Node& op, std::vector<TensorRef>& ins) {
  if (ins.size() != 2) return;
  for (std::size_t k = 0; k < 2; ++k) {
    const TensorRef g = ins[k], addend = ins[1 - k];
    if (!fusable(g, op, "MomentsGrad") || !same_static_shape(g, addend)) continue;
    const std::vector<TensorRef>& m = inputs_of(*g.node);
    if (!std::all_of(m.begin(), m.end(), [&](const TensorRef& t) { return readable_instead(t, op); })) continue;
    ins.assign(1, addend);
    ins.insert(ins.end(), m.begin(), m.end());
    fused_[static_cast<std::size_t>(op.id)] = &op_registry().get("_MomentsGradAdd");
    attributes_[static_cast<std::size_t>(op.id)] = g.node;
    if (const auto f = scaled_product(addend, op)) {
      // The scale must be one value per channel of x: what the fused op's shape function checks.
      std::vector<TensorRef> scaled{(*f)[0], (*f)[1]};
      scaled.insert(scaled.end(), m.begin(), m.end());
      const OpDef& def = op_registry().get("_MomentsGradAddScaled");
      InferenceContext c{.attrs_ = &g.node->attrs};
      for (const TensorRef& t : scaled) c.add_input(dtype_of(t), shape_of(t));
      try {
        def.shape_fn(c);
        ins = std::move(scaled);
        fused_[static_cast<std::size_t>(op.id)] = &def;
      } catch (const Error&) {
      }
    }
    return;
  }
}

// ReluGrad(MaxPoolGrad(x, y, dy, argmax), f) -> _MaxPoolGradRelu(x, y, dy, argmax, f) with the
// MaxPoolGrad's attributes (the sixth rule), f being x (then of its shape whatever the batch) or
// of the same static shape. `ins`: the ReluGrad's inputs as the run reads them.
void Simplifier::fuse_max_pool_grad(const Node& op, std::vector<TensorRef>& ins) {
  const TensorRef g = ins[0];
  if (!fusable(g, op, "MaxPoolGrad") || !has_kernel("_MaxPoolGradRelu", g)) return;
  const std::vector<TensorRef>& m = inputs_of(*g.node);
  if (!(ins[1] == m[0]) && !same_static_shape(g, ins[1])) return;
  if (!std::all_of(m.begin(), m.end(), [&](const TensorRef& t) { return readable_instead(t, op); })) return;
  std::vector<TensorRef> fused = m;
  fused.push_back(ins[1]);
  ins = std::move(fused);
  fused_[static_cast<std::size_t>(op.id)] = &op_registry().get("_MaxPoolGradRelu");
  attributes_[static_cast<std::size_t>(op.id)] = g.node;
}

// AddN(Merge(p0, q0), Merge(p1, q1), ...) whose Merges only it reads, each with a ZerosLike(z)
// among its inputs (any number in all) -> _CondGradAddN(p0, q0, p1, q1, ...) with each ZerosLike
// replaced by its input z (the seventh rule). The fused kernel finds the ZerosLike positions in the
// graph's Merges, as here. `ins`: the AddN's inputs as the run reads them.
void Simplifier::fuse_cond_gradients(const Node& op, std::vector<TensorRef>& ins) {
  if (!has_kernel("_CondGradAddN", ins[0])) return;
  std::vector<TensorRef> fused;
  std::vector<char> liveness_only;
  bool zeros = false;
  for (std::size_t k = 0; k < ins.size(); ++k) {
    const TensorRef m = ins[k];
    if (!(m == op.inputs[k]) || m.index != 0 || !fusable(m, op, "Merge") || m.node->inputs.size() != 2) return;
    const std::vector<TensorRef>& pq = inputs_of(*m.node);
    for (std::size_t j = 0; j < 2; ++j) {
      TensorRef t = pq[j];
      const bool z = is(*m.node->inputs[j].node, "ZerosLike");  // then pq[j] is the graph's input too
      if (z) {
        if (!fusable(t, op, "ZerosLike")) return;
        t = inputs_of(*t.node)[0];
        zeros = true;
      }
      if (!readable_instead(t, op)) return;
      fused.push_back(t);
      liveness_only.push_back(z);
    }
  }
  if (!zeros) return;
  ins = std::move(fused);
  liveness_only_[static_cast<std::size_t>(op.id)] = std::move(liveness_only);
  fused_[static_cast<std::size_t>(op.id)] = &op_registry().get("_CondGradAddN");
}

const OpDef& Simplifier::runs(const Node& op) {
  inputs_of(op);
  const OpDef* fused = fused_[static_cast<std::size_t>(op.id)];
  return fused ? *fused : *op.def;
}

const Node& Simplifier::attributes(const Node& op) {
  inputs_of(op);
  const Node* from = attributes_[static_cast<std::size_t>(op.id)];
  return from ? *from : op;
}

TensorRef Simplifier::fetched(TensorRef t) {
  if (!static_shapes_hold_) return t;
  const Node& reader = *t.node;
  // A fetch waits for nothing: never past an op with control inputs (they would not run).
  while (t.node->control_inputs.empty()) {
    const TensorRef next = without_ones(t, reader);
    if (next == t) break;
    t = next;
  }
  return t;
}

std::vector<Node*> Simplifier::predecessors(Node& op) {
  std::vector<Node*> preds;
  if (cut_[static_cast<std::size_t>(op.id)]) return preds;
  for (const TensorRef& in : inputs_of(op)) preds.push_back(in.node);
  preds.insert(preds.end(), op.control_inputs.begin(), op.control_inputs.end());
  return preds;
}

}  // namespace kiln::detail
