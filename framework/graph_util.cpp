// convert_variables_to_constants: three passes over the ops the outputs need.
//   1. forward, over graph_algorithms' execution order: which ops are dead once the bound
//      placeholders are false (a Switch with a known predicate kills its other output; an op with a
//      dead input or control input is dead; a Merge is dead when all its inputs are), and which
//      Switch/Merge ops are resolved (their live output aliases a tensor computed before them);
//   2. backward: the ops still needed, through the aliased inputs and the control edges that do
//      not come from known constants (ordered_closure);
//   3. forward: build them in a new graph, variables as constants.
#include "framework/graph_util.hpp"

#include <unordered_map>
#include <unordered_set>

#include "framework/array.hpp"
#include "framework/attr_codec.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/graph_util_detail.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops.hpp"

namespace kiln::graph_util {

namespace detail {

Operation copy_op(Graph& into, const kiln::detail::Node& n, const std::vector<Tensor>& inputs,
                  const std::vector<Operation>& controls) {
  std::any attrs = n.attrs;
  if (n.attrs.has_value() && n.def->attr_codec) {
    // Through the codec, so that attributes naming tensors (Merge's predicate) resolve in `into`.
    AttrWriter w;
    n.def->attr_codec.write(n.attrs, w);
    AttrReader r(w.bytes(), &into);
    attrs = n.def->attr_codec.read(r);
  }
  auto guard = into.as_default();
  const Operation op = build_op(n.def->type, inputs, std::move(attrs), n.name);
  check_name(op, n.name);
  op.node()->seed = n.seed;
  for (const Operation& c : controls) op.add_control_input(c);
  return op;
}

void check_name(const Operation& op, const std::string& name) {
  if (op.name() != name)
    throw InternalError("graph_util: the copy of op '" + name + "' was named '" + op.name() +
                        "' (the name is taken in the new graph)");
}

std::size_t RefHash::operator()(const kiln::detail::TensorRef& r) const {
  return std::hash<const void*>()(r.node) ^ (static_cast<std::size_t>(r.index) * 0x9E3779B97F4A7C15ull);
}

}  // namespace detail

namespace {

using kiln::detail::Node;
using kiln::detail::TensorRef;
using detail::RefHash;

Node* op_of_output(const Graph& g, const std::string& name) {
  if (name.find(':') != std::string::npos) return g.get_tensor_by_name(name).op().node();
  return g.get_operation_by_name(name).node();
}

struct Info {
  bool dead = false;
  bool resolved = false;  // a Switch or Merge replaced by the tensor its live output forwards
  int live_output = 0;
  int merge_index = 0;    // a resolved Merge: the index of its live input
  std::vector<char> out_dead;
};

}  // namespace

std::unique_ptr<Graph> convert_variables_to_constants(Session& sess, const Graph& graph,
                                                      const std::vector<std::string>& output_names,
                                                      const ConvertOptions& options) {
  const std::string where = "convert_variables_to_constants: ";
  if (&sess.graph() != &graph) throw ValueError(where + "the session runs another graph");
  if (output_names.empty()) throw ValueError(where + "no output names given");
  std::vector<Node*> targets;
  for (const auto& name : output_names) targets.push_back(op_of_output(graph, name));
  std::unordered_set<const Node*> bound;
  for (const auto& name : options.false_placeholders) {
    if (!graph.name_in_use(name)) continue;
    Operation op;
    try {
      op = graph.get_operation_by_name(name);
    } catch (const NotFoundError&) {
      continue;  // a name scope, not an op
    }
    const Tensor t = op.output(0);
    if (!op.node()->def->is_placeholder || t.dtype() != boolean || t.shape().rank() > 0)
      throw TypeError(where + "'" + name + "' is to be bound to false but is a " + op.type() + " of dtype " +
                      dtype_name(t.dtype()) + " and shape " + t.shape().to_string() +
                      ", not a scalar boolean placeholder");
    bound.insert(op.node());
  }

  // 1. Dead ops and resolved Switch/Merge ops.
  const auto order = kiln::detail::execution_order(graph, targets, std::vector<bool>(static_cast<std::size_t>(graph.num_nodes()), false));
  std::unordered_map<const Node*, Info> info;
  std::unordered_map<TensorRef, TensorRef, RefHash> alias;
  std::unordered_map<TensorRef, bool, RefHash> known;  // boolean values fixed by the bindings
  const auto resolve = [&](const TensorRef& r) {
    auto it = alias.find(r);
    return it == alias.end() ? r : it->second;
  };
  const auto is_dead = [&](const TensorRef& r) {
    const Info& i = info.at(r.node);
    return i.dead || i.out_dead[static_cast<std::size_t>(r.index)];
  };
  const auto known_of = [&](const TensorRef& r) -> std::optional<bool> {
    auto it = known.find(resolve(r));
    if (it == known.end()) return std::nullopt;
    return it->second;
  };
  for (Node* n : order) {
    Info& in = info[n];
    in.out_dead.assign(n->output_dtypes.size(), 0);
    const std::string& type = n->def->type;
    bool dead = false;
    for (Node* c : n->control_inputs) dead = dead || info.at(c).dead;
    if (type == "Merge") {
      std::vector<int> live;
      for (std::size_t i = 0; i < n->inputs.size(); ++i)
        if (!is_dead(n->inputs[i])) live.push_back(static_cast<int>(i));
      dead = dead || live.empty();
      if (!dead && live.size() == 1) {
        in.resolved = true;
        in.merge_index = live[0];
        alias[{n, 0}] = resolve(n->inputs[static_cast<std::size_t>(live[0])]);
      }
    } else {
      for (const auto& r : n->inputs) dead = dead || is_dead(r);
    }
    in.dead = dead;
    if (dead) continue;
    if (type == "Switch") {
      if (const auto p = known_of(n->inputs[1])) {
        in.resolved = true;
        in.live_output = *p ? 1 : 0;
        in.out_dead[*p ? 0 : 1] = 1;
        alias[{n, in.live_output}] = resolve(n->inputs[0]);
      }
    } else if (bound.count(n)) {
      known[{n, 0}] = false;
    } else if (type == "Const" && n->output_dtypes[0] == boolean) {
      const Array& a = std::any_cast<const Array&>(n->attrs);
      if (a.size() == 1) known[{n, 0}] = a.scalar<bool>();
    } else if (type == "Identity") {
      if (const auto k = known_of(n->inputs[0])) known[{n, 0}] = *k;
    }
  }
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (info.at(targets[i]).dead)
      throw ValueError(where + "the output '" + output_names[i] +
                       "' lies in a cond branch that is not taken when the bound placeholders are false");

  // 2. The ops still needed. A control edge from a constant (a cond pivot) orders nothing.
  const auto control_source = [&](Node* c) -> Node* {
    const Info& i = info.at(c);
    Node* s = i.resolved ? resolve({c, i.live_output}).node : c;
    const bool constant = s->def->type == "Const" || bound.count(s) || known.count({s, 0});
    return constant ? nullptr : s;
  };
  const auto needed = kiln::detail::ordered_closure(graph, targets, [&](Node* n) {
    std::vector<Node*> preds;
    const Info& i = info.at(n);
    if (i.resolved) {
      preds.push_back(resolve({n, i.live_output}).node);
      return preds;
    }
    for (const auto& r : n->inputs) preds.push_back(resolve(r).node);
    for (Node* c : n->control_inputs)
      if (Node* s = control_source(c)) preds.push_back(s);
    return preds;
  });

  // The session's values of the variables still needed, in one run.
  std::vector<GraphElement> fetches;
  std::vector<const Node*> variables;
  for (Node* n : needed)
    if (n->def->is_variable) {
      fetches.emplace_back(Variable(n->variable));
      variables.push_back(n);
    }
  const std::vector<Array> values = fetches.empty() ? std::vector<Array>{} : sess.run(fetches);
  std::unordered_map<const Node*, Array> value_of;
  for (std::size_t i = 0; i < variables.size(); ++i) value_of[variables[i]] = values[i];

  // 3. The new graph.
  auto result = std::make_unique<Graph>();
  auto guard = result->as_default();
  std::unordered_map<TensorRef, Tensor, RefHash> copy;
  std::unordered_map<const Node*, Operation> copy_op_of;
  const auto mapped = [&](const TensorRef& ref) -> Tensor {
    const TensorRef r = resolve(ref);
    if (auto it = copy.find(r); it != copy.end()) return it->second;
    const Info& i = info.at(r.node);
    if (i.resolved && r.node->def->type == "Merge" && r.index == 1) {  // a resolved Merge's value_index
      const Tensor t = constant(Array(static_cast<std::int32_t>(i.merge_index)), r.node->name + "/value_index");
      copy[r] = t;
      return t;
    }
    throw InternalError(where + "no copy of '" + Tensor(r).name() + "'");
  };
  const auto named_constant = [&](const Node* n, const Array& value) {
    const Tensor t = constant(value, n->name);
    detail::check_name(t.op(), n->name);
    copy[{const_cast<Node*>(n), 0}] = t;
    copy_op_of[n] = t.op();
  };
  const std::unordered_set<const Node*> target_set(targets.begin(), targets.end());
  for (Node* n : needed) {
    const Info& i = info.at(n);
    if (i.resolved) {
      if (target_set.count(n)) {  // keep the output's name
        const Tensor t = identity(mapped({n, i.live_output}), n->name);
        detail::check_name(t.op(), n->name);
        copy_op_of[n] = t.op();
      }
      continue;
    }
    if (n->def->is_variable) {
      named_constant(n, value_of.at(n));
      continue;
    }
    if (bound.count(n)) {
      named_constant(n, Array(false));
      continue;
    }
    if (!n->def->ref_inputs.empty())
      throw ValueError(where + "op '" + n->name + "' (" + n->def->type + ") writes the variable '" +
                       n->inputs[static_cast<std::size_t>(n->def->ref_inputs[0])].node->name +
                       "' and is needed by the outputs; a frozen graph cannot hold it");
    std::vector<Tensor> inputs;
    for (const auto& r : n->inputs) inputs.push_back(mapped(r));
    std::vector<Operation> controls;
    for (Node* c : n->control_inputs)
      if (Node* s = control_source(c)) controls.push_back(copy_op_of.at(s));
    const Operation op = detail::copy_op(*result, *n, inputs, controls);
    for (int k = 0; k < op.num_outputs(); ++k) copy[{n, k}] = op.output(k);
    copy_op_of[n] = op;
  }
  return result;
}

}  // namespace kiln::graph_util
