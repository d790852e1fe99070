// fold_batch_norms (contract in graph_util.hpp).
//
// Derivation. An inference-mode batch normalization is affine per channel c:
//   y = (x - mean) * a + offset = x * a + shift,  a = scale / sqrt(variance + epsilon),
//   shift = offset - mean * a.
// When x = conv(u, w) + bias (conv linear in w, output channel c = the last axis of w), then
//   y = conv(u, w * a) + (bias * a + shift),
// since scaling the output channel c of a convolution or a matrix product scales its filter (or
// column) c. So w'[..., c] = w[..., c] * a[c] and b'[c] = shift[c] + bias[c] * a[c]
// = offset[c] + (bias[c] - mean[c]) * a[c]. All of it in double, rounded once at the end.
//
// The rewrite: find the batch norms and their fold targets on the input graph, then copy the ops
// reachable backwards from the graph's sinks (ordered_closure), building the replacement where a
// batch norm's output op was.
#include <cmath>
#include <unordered_map>

#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>

#include "framework/array.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/graph_util.hpp"
#include "framework/graph_util_detail.hpp"
#include "framework/nn_ops.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops.hpp"
#include "framework/ops/batch_norm_ops.hpp"
#include "framework/ops/conv_ops.hpp"
#include "framework/ops/formats.hpp"
#include "framework/ops/nn_ops.hpp"

namespace kiln::graph_util {

namespace {

using kiln::detail::Node;
using kiln::detail::TensorRef;
using xd = xt::xarray<double>;

bool is(const TensorRef& r, const char* type) { return r.node->def->type == type; }

// A recognised batch normalization y = x * a + shift, its parameters constant tensors.
struct BatchNorm {
  Node* out = nullptr;  // FusedBatchNorm, or the composed form's final Add (or Mul)
  Node* inner = nullptr;  // kiln's composed form with an offset: its (x - mean) * inv Mul
  TensorRef x;
  std::optional<TensorRef> scale, offset, epsilon;  // epsilon: the composed form's tensor
  TensorRef mean, variance;
  double fused_epsilon = 0;
  int fused_channel_axis = -1;  // the fused op's channel axis (rank 4); -1 for the composed form
};

// The Conv2D or MatMul (with its BiasAdd) whose output channel a batch norm can absorb.
struct FoldTarget {
  Node* kernel_op = nullptr;
  std::optional<TensorRef> bias;
  int channel_axis = 0;  // of the kernel op's output
  bool transpose_b = false;
  std::string bias_format;  // data format of the new BiasAdd
};

class Folder {
 public:
  explicit Folder(const Graph& g) : g_(g), session_(const_cast<Graph&>(g)) {
    for (int i = 0; i < g.num_nodes(); ++i) {
      const Node* n = g.node(i);
      for (const auto& r : n->inputs) ++data_uses_[r];
      for (const Node* c : n->control_inputs) ++control_uses_[c];
    }
  }

  std::unique_ptr<Graph> run();

 private:
  bool is_constant(const Node* n);
  bool constant_input(const TensorRef& r) { return is_constant(r.node); }
  xd value(const TensorRef& r) { return session_.run(Tensor(r)).to_double(); }
  int uses(const TensorRef& r) const {
    auto it = data_uses_.find(r);
    return it == data_uses_.end() ? 0 : it->second;
  }
  bool used_once(const Node* n) const {
    auto c = control_uses_.find(n);
    return uses({const_cast<Node*>(n), 0}) == 1 && (c == control_uses_.end() || c->second == 0);
  }
  std::optional<BatchNorm> match(Node* n);
  std::optional<FoldTarget> fold_target(const TensorRef& x);

  const Graph& g_;
  Session session_;
  std::unordered_map<TensorRef, int, detail::RefHash> data_uses_;
  std::unordered_map<const Node*, int> control_uses_;
  std::unordered_map<const Node*, bool> constant_;
};

bool Folder::is_constant(const Node* n) {
  if (auto it = constant_.find(n); it != constant_.end()) return it->second;
  bool c = n->def->type == "Const";
  if (!c && !n->inputs.empty() && !n->def->is_placeholder && !n->def->is_variable && !n->seed) {
    c = true;
    for (const auto& r : n->inputs) c = c && is_constant(r.node);
  }
  constant_[n] = c;
  return c;
}

// The fused op in inference mode; nn::batch_normalization's (x - mean) * inv [+ offset]; or TF's
// x * inv + (offset - mean * inv) | -(mean * inv); with inv = rsqrt(variance + epsilon) [* scale].
std::optional<BatchNorm> Folder::match(Node* n) {
  BatchNorm bn;
  bn.out = n;
  // inv = rsqrt(variance + epsilon) [* scale]
  const auto match_inv = [&](const TensorRef& inv) {
    TensorRef rs = inv;
    if (is(inv, "Mul")) {
      rs = inv.node->inputs[0];
      bn.scale = inv.node->inputs[1];
    }
    if (!is(rs, "Rsqrt") || !is(rs.node->inputs[0], "Add")) return false;
    bn.variance = rs.node->inputs[0].node->inputs[0];
    bn.epsilon = rs.node->inputs[0].node->inputs[1];
    return true;
  };
  // (x - mean) * inv
  const auto match_centered = [&](const TensorRef& prod) {
    if (!is(prod, "Mul") || !is(prod.node->inputs[0], "Sub")) return false;
    const Node* sub = prod.node->inputs[0].node;
    bn.x = sub->inputs[0];
    bn.mean = sub->inputs[1];
    return match_inv(prod.node->inputs[1]);
  };
  const std::string& type = n->def->type;
  if (type == "FusedBatchNorm") {
    const auto& a = std::any_cast<const kiln::detail::FusedBatchNormAttrs&>(n->attrs);
    if (a.is_training) return std::nullopt;
    for (int k = 1; k < 5; ++k)
      if (uses({n, k}) > 0) return std::nullopt;
    bn.x = n->inputs[0];
    bn.scale = n->inputs[1];
    bn.offset = n->inputs[2];
    bn.mean = n->inputs[3];
    bn.variance = n->inputs[4];
    bn.fused_epsilon = a.epsilon;
    bn.fused_channel_axis = kiln::detail::channel_axis(kiln::detail::parse_data_format(a.data_format), 4);
  } else if (type == "Mul" && match_centered({n, 0})) {
  } else if (type == "Add" && match_centered(n->inputs[0])) {
    bn.offset = n->inputs[1];
    bn.inner = n->inputs[0].node;
  } else if (type == "Add") {
    bn = BatchNorm{};
    bn.out = n;
    const TensorRef xm = n->inputs[0], rest = n->inputs[1];
    if (!is(xm, "Mul")) return std::nullopt;
    const TensorRef inv = xm.node->inputs[1];
    TensorRef mm;
    if (is(rest, "Sub")) {
      bn.offset = rest.node->inputs[0];
      mm = rest.node->inputs[1];
    } else if (is(rest, "Neg")) {
      mm = rest.node->inputs[0];
    } else {
      return std::nullopt;
    }
    if (!is(mm, "Mul") || !(mm.node->inputs[1] == inv)) return std::nullopt;
    bn.mean = mm.node->inputs[0];
    if (!match_inv(inv)) return std::nullopt;
    bn.x = xm.node->inputs[0];
  } else {
    return std::nullopt;
  }
  for (const auto& r : {bn.scale, bn.offset, bn.epsilon, std::optional<TensorRef>(bn.mean),
                        std::optional<TensorRef>(bn.variance)})
    if (r && !constant_input(*r)) return std::nullopt;
  if (constant_input(bn.x)) return std::nullopt;
  return bn;
}

std::optional<FoldTarget> Folder::fold_target(const TensorRef& x) {
  FoldTarget t;
  TensorRef k = x;
  if (is(x, "BiasAdd")) {
    if (!used_once(x.node) || !constant_input(x.node->inputs[1])) return std::nullopt;
    t.bias = x.node->inputs[1];
    k = x.node->inputs[0];
  }
  if (!(is(k, "Conv2D") || is(k, "MatMul")) || !used_once(k.node) || !constant_input(k.node->inputs[1]))
    return std::nullopt;
  t.kernel_op = k.node;
  if (is(k, "Conv2D")) {
    const auto& a = std::any_cast<const kiln::detail::Conv2DAttrs&>(k.node->attrs);
    t.channel_axis = kiln::detail::channel_axis(kiln::detail::parse_data_format(a.data_format), 4);
    t.bias_format = a.data_format;
  } else if (is(k, "MatMul")) {
    t.channel_axis = 1;
    t.transpose_b = std::any_cast<const MatMulOptions&>(k.node->attrs).transpose_b;
    t.bias_format = "NHWC";
  }
  if (t.bias) {
    const auto& f = std::any_cast<const kiln::detail::BiasAddAttrs&>(x.node->attrs).data_format;
    if (kiln::detail::channel_axis(kiln::detail::parse_data_format(f), x.node->output_shapes[0].rank()) != t.channel_axis)
      return std::nullopt;
  }
  return t;
}

// The values of a (broadcast) per-element array along one axis of a rank-r tensor: the vector of
// size C when the array varies along `axis` only (or not at all); empty otherwise.
std::optional<std::vector<double>> along_axis(const xd& v, int rank, int axis, std::int64_t channels) {
  const auto& s = v.shape();
  if (static_cast<int>(s.size()) > rank) return std::nullopt;
  const int shift = rank - static_cast<int>(s.size());
  for (int d = 0; d < static_cast<int>(s.size()); ++d)
    if (s[static_cast<std::size_t>(d)] != 1 && d + shift != axis) return std::nullopt;
  if (v.size() != 1 && static_cast<std::int64_t>(v.size()) != channels) return std::nullopt;
  std::vector<double> out(static_cast<std::size_t>(channels));
  for (std::size_t c = 0; c < out.size(); ++c) out[c] = v.size() == 1 ? v.data()[0] : v.data()[c];
  return out;
}

Array cast_to(DType t, const xd& v) {
  return visit_dtype(t, [&]<class T>() -> Array {
    if constexpr (std::is_floating_point_v<T>) return Array(xt::xarray<T>(xt::cast<T>(v)));
    throw TypeError(std::string("fold_batch_norms: a ") + dtype_name(t) + " batch norm cannot be folded");
  });
}

std::unique_ptr<Graph> Folder::run() {
  for (int i = 0; i < g_.num_nodes(); ++i)
    if (g_.node(i)->def->is_variable)
      throw ValueError("fold_batch_norms: the graph holds the variable '" + g_.node(i)->name +
                       "'; freeze it first (convert_variables_to_constants)");
  struct Rewrite {
    BatchNorm bn;
    std::optional<FoldTarget> target;
    xd a, shift;  // broadcastable against x
  };
  std::unordered_map<const Node*, Rewrite> rewrites;
  for (int i = 0; i < g_.num_nodes(); ++i) {
    Node* n = g_.node(i);
    auto bn = match(n);
    if (!bn) continue;
    Rewrite rw{*bn, std::nullopt, {}, {}};
    const xd eps = bn->epsilon ? value(*bn->epsilon) : xd(bn->fused_epsilon);
    rw.a = 1.0 / xt::sqrt(value(bn->variance) + eps);
    if (bn->scale) rw.a = rw.a * value(*bn->scale);
    rw.shift = -(value(bn->mean) * rw.a);
    if (bn->offset) rw.shift = rw.shift + value(*bn->offset);
    if (bn->fused_channel_axis == 1) {  // [C] along axis 1 of NCHW
      rw.a.reshape(std::vector<std::size_t>{rw.a.size(), 1, 1});
      rw.shift.reshape(std::vector<std::size_t>{rw.shift.size(), 1, 1});
    }
    rw.target = fold_target(bn->x);
    if (rw.target) {
      const Shape& ks = rw.target->kernel_op->output_shapes[0];
      const int rank = ks.rank();
      const std::int64_t channels = ks[rw.target->channel_axis];
      if (channels < 0 || !along_axis(rw.a, rank, rw.target->channel_axis, channels) ||
          !along_axis(rw.shift, rank, rw.target->channel_axis, channels))
        rw.target.reset();
    }
    rewrites.emplace(n, std::move(rw));
  }
  // (x - mean) * inv + offset also matched as its inner (x - mean) * inv: keep the whole one.
  for (auto it = rewrites.begin(); it != rewrites.end(); ++it)
    if (it->second.bn.inner) rewrites.erase(it->second.bn.inner);

  // Copy what the sinks need; a rewritten batch norm needs its x (or its kernel's input) only.
  std::vector<Node*> sinks;
  for (int i = 0; i < g_.num_nodes(); ++i) {
    Node* n = g_.node(i);
    bool used = control_uses_.count(n) && control_uses_.at(n) > 0;
    for (int k = 0; k < static_cast<int>(n->output_dtypes.size()) && !used; ++k) used = uses({n, k}) > 0;
    if (!used) sinks.push_back(n);
  }
  const auto order = kiln::detail::ordered_closure(g_, sinks, [&](Node* n) {
    std::vector<Node*> preds;
    const Node* src = n;
    if (auto it = rewrites.find(n); it != rewrites.end()) {
      if (!it->second.target) return std::vector<Node*>{it->second.bn.x.node};
      src = it->second.target->kernel_op;
      preds.push_back(src->inputs[0].node);
    } else {
      for (const auto& r : n->inputs) preds.push_back(r.node);
    }
    preds.insert(preds.end(), src->control_inputs.begin(), src->control_inputs.end());
    return preds;
  });

  auto result = std::make_unique<Graph>();
  auto guard = result->as_default();
  std::unordered_map<TensorRef, Tensor, detail::RefHash> copy;
  std::unordered_map<const Node*, Operation> copy_op_of;
  const auto controls_of = [&](const Node* n) {
    std::vector<Operation> c;
    for (const Node* s : n->control_inputs) c.push_back(copy_op_of.at(s));
    return c;
  };
  for (Node* n : order) {
    auto it = rewrites.find(n);
    if (it == rewrites.end()) {
      std::vector<Tensor> inputs;
      for (const auto& r : n->inputs) inputs.push_back(copy.at(r));
      const Operation op = detail::copy_op(*result, *n, inputs, controls_of(n));
      for (int k = 0; k < op.num_outputs(); ++k) copy[{n, k}] = op.output(k);
      copy_op_of[n] = op;
      continue;
    }
    const Rewrite& rw = it->second;
    Tensor y;
    if (rw.target) {
      const FoldTarget& t = *rw.target;
      const Node* k = t.kernel_op;
      const Shape& ks = k->output_shapes[0];
      const std::int64_t channels = ks[t.channel_axis];
      const auto a = *along_axis(rw.a, ks.rank(), t.channel_axis, channels);
      const auto shift = *along_axis(rw.shift, ks.rank(), t.channel_axis, channels);
      const TensorRef w_ref = k->inputs[1];
      xd w = value(w_ref);
      xd av = xt::adapt(a, {a.size()});
      if (t.transpose_b) av.reshape(std::vector<std::size_t>{a.size(), 1});  // MatMul with w [C, k]: scale its rows
      w = w * av;                                      // otherwise the last axis is the channel
      xd b = xt::adapt(shift, {shift.size()});
      if (t.bias) b = b + value(*t.bias) * xt::adapt(a, {a.size()});
      const DType dt = Tensor(w_ref).dtype();
      const Tensor w_new = constant(cast_to(dt, w), k->name + "/folded_kernel");
      const Tensor b_new = constant(cast_to(dt, b), n->name + "/folded_bias");
      const Operation kop = detail::copy_op(*result, *k, {copy.at(k->inputs[0]), w_new}, controls_of(k));
      y = nn::bias_add(kop.output(0), b_new, t.bias_format, n->name);
    } else {
      const Tensor x = copy.at(rw.bn.x);
      const Tensor a = constant(cast_to(x.dtype(), rw.a), n->name + "/scale");
      const Tensor shift = constant(cast_to(x.dtype(), rw.shift), n->name + "/shift");
      y = add(multiply(x, a, n->name + "/mul"), shift, n->name);
    }
    detail::check_name(y.op(), n->name);
    copy[{n, 0}] = y;
    copy_op_of[n] = y.op();
  }
  return result;
}

}  // namespace

std::unique_ptr<Graph> fold_batch_norms(const Graph& graph) { return Folder(graph).run(); }

}  // namespace kiln::graph_util
