#include "framework/plan.hpp"

#include <algorithm>

#include "framework/graph_algorithms.hpp"
#include "framework/simplify.hpp"

namespace kiln::detail {

namespace {

// Edges that keep the accesses to each variable in plan order (see plan.hpp).
void order_variable_accesses(const std::vector<PlanStep>& steps, std::vector<std::vector<int>>& preds) {
  struct Access {
    int last_write = -1;
    std::vector<int> reads_since;
  };
  std::vector<std::pair<const VariableSlot*, Access>> seen;
  const auto state = [&](const VariableSlot* v) -> Access& {
    for (auto& [s, a] : seen)
      if (s == v) return a;
    return seen.emplace_back(v, Access{}).second;
  };
  for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
    const PlanStep& s = steps[static_cast<std::size_t>(i)];
    for (const VariableSlot* v : s.var_reads) {
      if (!v) continue;
      Access& a = state(v);
      if (a.last_write >= 0) preds[static_cast<std::size_t>(i)].push_back(a.last_write);
      a.reads_since.push_back(i);
    }
    for (const VariableSlot* v : s.writes) {
      Access& a = state(v);
      if (a.last_write >= 0) preds[static_cast<std::size_t>(i)].push_back(a.last_write);
      for (int r : a.reads_since)
        if (r != i) preds[static_cast<std::size_t>(i)].push_back(r);
      a.reads_since.clear();
      a.last_write = i;
    }
  }
}

}  // namespace

Plan compile_plan(Graph& graph, const std::vector<GraphElement>& fetches,
                  const std::vector<std::pair<Tensor, Array>>& feeds, VariableStore& store) {
  Plan plan;
  plan.structure_version = graph.structure_version();
  const auto n = static_cast<std::size_t>(graph.num_nodes());

  // Ops whose outputs are all fed are cut: not run, not followed further. The plan never looks
  // through an op with a fed output (Merge's value fed, its index not, say) for a cheaper input.
  std::vector<bool> cut(n, false), fed(n, false);
  {
    std::vector<int> fed_outputs(n, 0);
    for (auto& [t, v] : feeds) ++fed_outputs[static_cast<std::size_t>(t.op().node()->id)];
    for (auto& [t, v] : feeds) {
      const Node* node = t.op().node();
      fed[static_cast<std::size_t>(node->id)] = true;
      if (fed_outputs[static_cast<std::size_t>(node->id)] >= static_cast<int>(node->output_dtypes.size()))
        cut[static_cast<std::size_t>(node->id)] = true;
    }
  }
  // The ops the fetches need, reading the simplified inputs (framework/simplify.hpp).
  std::vector<TensorRef> fetched_refs;
  std::vector<const Node*> fetched_ops;
  for (auto& f : fetches) {
    if (!f.is_operation()) fetched_refs.push_back(f.as_tensor().ref());
    fetched_ops.push_back(f.op().node());
  }
  Simplifier simplifier(graph, cut, fed, fetched_refs, fetched_ops);
  std::vector<TensorRef> fetched;  // per fetch: the value returned (null node for Operations)
  std::vector<Node*> targets;
  for (auto& f : fetches) {
    fetched.push_back(f.is_operation() ? TensorRef{} : simplifier.fetched(f.as_tensor().ref()));
    targets.push_back(f.is_operation() ? f.op().node() : fetched.back().node);
  }
  const std::vector<Node*> order =
      ordered_closure(graph, targets, [&](Node* v) { return simplifier.predecessors(*v); });

  std::vector<int> base(n, -1), step_of(n, -1);
  for (Node* node : order) {
    base[static_cast<std::size_t>(node->id)] = plan.num_slots;
    step_of[static_cast<std::size_t>(node->id)] = static_cast<int>(plan.steps.size());
    PlanStep s;
    s.node = node;
    s.out_base = plan.num_slots;
    s.num_outputs = std::max<int>(1, static_cast<int>(node->output_dtypes.size()));
    plan.num_slots += s.num_outputs;
    plan.steps.push_back(std::move(s));
  }
  const auto slot = [&](const TensorRef& r) { return base[static_cast<std::size_t>(r.node->id)] + r.index; };
  plan.slot_readers.assign(static_cast<std::size_t>(plan.num_slots), 0);

  std::vector<std::vector<int>> preds(plan.steps.size());
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    PlanStep& s = plan.steps[i];
    Node* node = s.node;
    s.cut = cut[static_cast<std::size_t>(node->id)];
    s.def = s.cut ? node->def : &simplifier.runs(*node);
    s.attrs = s.cut ? node : &simplifier.attributes(*node);
    s.dead_inputs = s.def->dead_inputs;
    s.is_variable = node->def->is_variable;
    if (s.cut) continue;
    if (!s.is_variable) s.kernel = prepare_kernel(*s.def, *s.attrs);
    s.inputs = simplifier.inputs(*node);
    s.liveness_only = simplifier.liveness_only(*node);
    for (std::size_t k = 0; k < s.inputs.size(); ++k) {
      const TensorRef in = s.inputs[k];
      preds[i].push_back(step_of[static_cast<std::size_t>(in.node->id)]);
      const bool reads_store = in.node->def->is_variable && !cut[static_cast<std::size_t>(in.node->id)];
      if (s.def->is_ref_input(k)) {
        s.in_slots.push_back(-1);
        s.var_reads.push_back(nullptr);
        s.writes.push_back(&store.slot(in.node));
      } else if (reads_store) {
        s.in_slots.push_back(-1);
        s.var_reads.push_back(&store.slot(in.node));
      } else {
        s.in_slots.push_back(slot(in));
        s.var_reads.push_back(nullptr);
        ++plan.slot_readers[static_cast<std::size_t>(slot(in))];
      }
    }
    std::sort(s.writes.begin(), s.writes.end());
    s.writes.erase(std::unique(s.writes.begin(), s.writes.end()), s.writes.end());
    for (Node* c : node->control_inputs) {
      s.ctrl_slots.push_back(base[static_cast<std::size_t>(c->id)]);
      preds[i].push_back(step_of[static_cast<std::size_t>(c->id)]);
    }
  }
  order_variable_accesses(plan.steps, preds);
  int last_collective = -1;
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    if (!plan.steps[i].def->is_collective || plan.steps[i].cut) continue;
    if (last_collective >= 0) preds[i].push_back(last_collective);
    last_collective = static_cast<int>(i);
  }
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    auto& p = preds[i];
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    plan.steps[i].num_predecessors = static_cast<int>(p.size());
    for (int from : p) plan.steps[static_cast<std::size_t>(from)].successors.push_back(static_cast<int>(i));
    if (p.empty()) plan.initial_ready.push_back(static_cast<int>(i));
  }

  for (const TensorRef& t : fetched) {
    if (!t.node) {
      plan.fetch_slots.push_back(-1);
      plan.fetch_variables.push_back(nullptr);
      plan.fetch_variable_slots.push_back(nullptr);
      continue;
    }
    const int sl = slot(t);
    plan.fetch_slots.push_back(sl);
    ++plan.slot_readers[static_cast<std::size_t>(sl)];  // never reaches zero: kept for the result
    const Node* node = t.node;
    const bool from_store = node->def->is_variable && !cut[static_cast<std::size_t>(node->id)];
    plan.fetch_variables.push_back(from_store ? node : nullptr);
    plan.fetch_variable_slots.push_back(from_store ? &store.slot(node) : nullptr);
  }
  for (auto& [t, v] : feeds) {
    const bool needed = base[static_cast<std::size_t>(t.op().node()->id)] >= 0;
    plan.feed_slots.push_back(needed ? slot(t.ref()) : -1);
    if (needed) ++plan.slot_readers[static_cast<std::size_t>(slot(t.ref()))];  // the caller owns it
  }
  return plan;
}

bool is_dead(const PlanStep& s, const std::vector<char>& dead_slots) {
  const auto dead = [&](int slot) { return slot >= 0 && dead_slots[static_cast<std::size_t>(slot)]; };
  if (std::any_of(s.ctrl_slots.begin(), s.ctrl_slots.end(), dead)) return true;
  switch (s.dead_inputs) {
    case OpDef::DeadInputs::any:
      return std::any_of(s.in_slots.begin(), s.in_slots.end(), dead);
    case OpDef::DeadInputs::all:
      return !s.in_slots.empty() && std::all_of(s.in_slots.begin(), s.in_slots.end(), dead);
    case OpDef::DeadInputs::both_of_a_pair:
      for (std::size_t k = 0; k + 1 < s.in_slots.size(); k += 2)
        if (dead(s.in_slots[k]) && dead(s.in_slots[k + 1])) return true;
      return false;
  }
  return false;
}

}  // namespace kiln::detail
