#include "framework/explain.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>

#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"
#include "framework/plan.hpp"

namespace kiln {

namespace {

std::string scope_of(const std::string& name) {
  const auto slash = name.rfind('/');
  return slash == std::string::npos ? "" : name.substr(0, slash);
}

std::string tensor_name(const detail::TensorRef& r) { return r.node->name + ":" + std::to_string(r.index); }

}  // namespace

std::size_t Explanation::num_dead() const {
  return static_cast<std::size_t>(
      std::count_if(ops.begin(), ops.end(), [](const Op& o) { return o.note.rfind("dead", 0) == 0; }));
}

std::ostream& operator<<(std::ostream& os, const Explanation& e) {
  const auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? std::string("(none)") : s;
  };
  const auto fed = static_cast<std::size_t>(
      std::count_if(e.ops.begin(), e.ops.end(), [](const Explanation::Op& o) { return o.note == "fed"; }));
  os << "Run of " << join(e.fetches) << " with feeds " << join(e.feeds) << ": " << e.ops.size() - e.num_dead() - fed
     << " ops run, " << fed << " fed, " << e.num_dead() << " dead, " << e.pruned.size() << " pruned\n";
  os << "Execution order, grouped by name scope:\n";
  std::string current = "\x01";
  for (std::size_t i = 0; i < e.ops.size(); ++i) {
    const auto& op = e.ops[i];
    const std::string scope = scope_of(op.name);
    if (scope != current) {
      std::size_t n = 0;
      while (i + n < e.ops.size() && scope_of(e.ops[i + n].name) == scope) ++n;
      os << "  " << (scope.empty() ? "(root)" : scope + "/") << "  [" << n << (n == 1 ? " op]\n" : " ops]\n");
      current = scope;
    }
    os << "    " << i + 1 << ". " << op.name << " (" << op.type << ")" << (op.note.empty() ? "" : "  -- " + op.note)
       << "\n";
  }
  if (!e.conds.empty()) {
    os << "Cond branches:\n";
    for (const auto& c : e.conds) os << "  " << c << "\n";
  }
  if (!e.control_dependencies.empty()) {
    os << "Pulled in by control dependencies:\n";
    for (const auto& c : e.control_dependencies) os << "  " << c << "\n";
  }
  if (!e.pruned.empty()) {
    os << "Pruned (not run), by name scope:\n";
    std::vector<std::pair<std::string, std::pair<std::string, std::size_t>>> groups;  // scope -> (reason, count)
    for (const auto& p : e.pruned) {
      const std::string key = scope_of(p.name);
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](auto& g) { return g.first == key && g.second.first == p.reason; });
      if (it == groups.end()) groups.push_back({key, {p.reason, 1}});
      else ++it->second.second;
    }
    for (const auto& [scope, rc] : groups)
      os << "  " << (scope.empty() ? "(root)" : scope + "/") << "  [" << rc.second << (rc.second == 1 ? " op]" : " ops]")
         << ": " << rc.first << "\n";
  }
  return os;
}

std::string to_string(const Explanation& e) {
  std::ostringstream os;
  os << e;
  return os.str();
}

namespace detail {

Explanation explain_plan(const Graph& graph, const Plan& plan, const std::vector<GraphElement>& fetches,
                         const std::vector<std::pair<Tensor, Array>>& feeds) {
  Explanation e;
  for (auto& f : fetches) e.fetches.push_back(f.name());
  for (auto& [t, v] : feeds) e.feeds.push_back(t.name());

  // 1. Values known before the run: fed boolean scalars and boolean constants (through Identity).
  const auto n = static_cast<std::size_t>(graph.num_nodes());
  std::vector<int> step_of(n, -1);
  for (std::size_t i = 0; i < plan.steps.size(); ++i) step_of[static_cast<std::size_t>(plan.steps[i].node->id)] = static_cast<int>(i);
  std::map<std::pair<const Node*, int>, bool> known;
  for (auto& [t, v] : feeds)
    if (v.dtype() == boolean && v.size() == 1) known[{t.op().node(), t.value_index()}] = v.as<bool>().data()[0];
  const auto value_of = [&](const TensorRef& r) -> std::optional<bool> {
    TensorRef cur = r;
    for (int hops = 0; hops < 16; ++hops) {
      if (auto it = known.find({cur.node, cur.index}); it != known.end()) return it->second;
      const std::string& type = cur.node->def->type;
      if (type == "Const") {
        const Array* a = std::any_cast<Array>(&cur.node->attrs);
        if (a && a->dtype() == boolean && a->size() == 1) return a->as<bool>().data()[0];
        return std::nullopt;
      }
      if (type != "Identity" || cur.node->inputs.empty()) return std::nullopt;
      cur = cur.node->inputs[0];
    }
    return std::nullopt;
  };

  // 2. Deadness as the executor decides it, where the predicates are known.
  std::vector<char> dead(static_cast<std::size_t>(plan.num_slots), 0);
  std::map<std::string, std::pair<std::optional<bool>, std::size_t>> preds;  // pred tensor -> (value, dead ops)
  for (const PlanStep& s : plan.steps) {
    Explanation::Op op{s.node->name, s.def->type, ""};
    if (s.cut) op.note = "fed";
    if (!s.cut && is_dead(s, dead)) {
      for (int k = 0; k < s.num_outputs; ++k) dead[static_cast<std::size_t>(s.out_base + k)] = 1;
      // Which cond: the branch the op was built in, else the Switch output it reads (for an op one
      // dead input kills: a Merge or _CondGradAddN is dead because of all or a pair of them).
      std::optional<std::pair<TensorRef, int>> branch;
      if (s.node->cond_ctx) branch = std::pair{s.node->cond_ctx->pred, s.node->cond_ctx->branch};
      const bool one_input_kills = s.def->dead_inputs == OpDef::DeadInputs::any;
      for (std::size_t k = 0; one_input_kills && !branch && k < s.in_slots.size(); ++k) {
        const TensorRef& in = s.inputs[k];
        if (s.in_slots[k] >= 0 && dead[static_cast<std::size_t>(s.in_slots[k])] && in.node->def->type == "Switch")
          branch = std::pair{in.node->inputs[1], in.index};
      }
      std::string why = "dead: its inputs are dead";
      if (branch) {
        const auto p = value_of(branch->first);
        why = "dead: in the " + std::string(branch->second ? "true" : "false") + " branch of cond(" +
              tensor_name(branch->first) + ")" + (p ? std::string(", which is ") + (*p ? "true" : "false") : "");
        ++preds[tensor_name(branch->first)].second;
      }
      op.note = why;
    } else if (s.node->def->type == "Switch" && !s.cut && s.node->inputs.size() == 2) {
      const auto p = value_of(s.node->inputs[1]);
      preds.try_emplace(tensor_name(s.node->inputs[1]), p, 0);
      if (p) dead[static_cast<std::size_t>(s.out_base + (*p ? 0 : 1))] = 1;
    }
    e.ops.push_back(std::move(op));
  }
  for (const auto& [pred, vc] : preds) {
    const auto& [value, n_dead] = vc;
    if (value)
      e.conds.push_back("cond(" + pred + ") = " + (*value ? "true" : "false") + " before the run: the " +
                        (*value ? "true" : "false") + " branch runs, " + std::to_string(n_dead) + " ops of the " +
                        (*value ? "false" : "true") + " branch are dead");
    else
      e.conds.push_back("cond(" + pred + ") is computed by the run: the branch is chosen when it runs");
  }

  // 3. Why ops reached only through control edges run: breadth-first from the fetches, the first
  //    path to each op; an op whose first edge is a control edge gets a line naming its consumer.
  std::vector<std::vector<std::string>> member_of(n);
  for (const auto& key : graph.collection_keys())
    for (const auto& item : graph.get_collection(key)) member_of[static_cast<std::size_t>(item.op().node()->id)].push_back(key);
  std::vector<const Node*> fetch_ops;
  for (auto& f : fetches) fetch_ops.push_back(f.op().node());
  const auto is_cut = [&](const Node* v) {
    const int st = step_of[static_cast<std::size_t>(v->id)];
    return st >= 0 && plan.steps[static_cast<std::size_t>(st)].cut;
  };
  const std::vector<char> data_reached = reachable_backward(graph, fetch_ops, /*follow_control=*/false, is_cut);
  std::vector<const Node*> parent(n, nullptr);
  std::vector<char> via_control(n, 0), seen(n, 0);
  std::deque<const Node*> queue;
  for (auto& f : fetches)
    if (!seen[static_cast<std::size_t>(f.op().node()->id)]) {
      seen[static_cast<std::size_t>(f.op().node()->id)] = 1;
      queue.push_back(f.op().node());
    }
  while (!queue.empty()) {
    const Node* v = queue.front();
    queue.pop_front();
    const int st = step_of[static_cast<std::size_t>(v->id)];
    if (st < 0 || plan.steps[static_cast<std::size_t>(st)].cut) continue;
    const auto visit = [&](const Node* u, bool control) {
      if (seen[static_cast<std::size_t>(u->id)]) return;
      seen[static_cast<std::size_t>(u->id)] = 1;
      parent[static_cast<std::size_t>(u->id)] = v;
      via_control[static_cast<std::size_t>(u->id)] = control;
      queue.push_back(u);
    };
    for (auto& in : v->inputs) visit(in.node, false);
    for (const Node* c : v->control_inputs) visit(c, true);
  }
  std::vector<char> is_pivot(n, 0);  // control inputs cond adds to the constants of a branch
  for (const PlanStep& s : plan.steps)
    if (s.node->cond_ctx && s.node->cond_ctx->pivot) is_pivot[static_cast<std::size_t>(s.node->cond_ctx->pivot->id)] = 1;
  for (const PlanStep& s : plan.steps) {
    const auto id = static_cast<std::size_t>(s.node->id);
    if (data_reached[id] || !via_control[id] || is_pivot[id]) continue;
    std::string through = parent[id]->def->type == "NoOp" ? "group() or control_dependencies" : "control_dependencies";
    if (!member_of[id].empty()) {
      std::string keys;
      for (const auto& k : member_of[id]) {
        std::string upper = k;
        std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
        keys += (keys.empty() ? "" : ", ") + upper;
      }
      through = "control_dependencies(" + keys + ")";
    }
    std::string chain;
    for (const Node* p = parent[id]; p; p = parent[static_cast<std::size_t>(p->id)]) chain += " <- " + p->name;
    e.control_dependencies.push_back(parent[id]->name + " depends on " + s.node->name + " through " + through +
                                     " (chain: " + s.node->name + chain + ")");
  }

  // 4. Pruned ops: everything else in the graph, and why.
  const std::vector<char> needed_without_feeds = reachable_backward(graph, fetch_ops, /*follow_control=*/true);
  for (std::size_t id = 0; id < n; ++id) {
    if (step_of[id] >= 0) continue;
    const Node* node = graph.node(static_cast<int>(id));
    e.pruned.push_back({node->name, needed_without_feeds[id] ? "only feeds tensors the run is fed instead"
                                                             : "not needed by the fetches"});
  }
  return e;
}

}  // namespace detail

}  // namespace kiln
