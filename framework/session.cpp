#include "framework/session.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "framework/errors.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"

namespace kiln {

namespace {

// A compiled run: the ops in order, where each input comes from, and when each value dies.
struct Step {
  detail::Node* node;
  const Kernel* kernel;
  int out_base;                 // first value slot of the node's outputs
  std::vector<int> in_slots;    // -1: ref input or variable read
  std::vector<const detail::Node*> var_reads;  // per input: the variable read from storage, or null
  std::vector<int> ctrl_slots;  // a slot of each control input (dead-ness only)
  std::vector<int> release;     // slots whose last reader is this step
  bool cut;                     // all outputs fed: not run
  bool is_merge;
  bool is_variable;             // its value is read from the session's storage by consumers
};

struct Plan {
  std::vector<Step> steps;
  std::vector<int> fetch_slots;  // -1 for Operation fetches
  std::vector<int> feed_slots;
  int num_slots = 0;
};

}  // namespace

struct Session::Impl : detail::RunState {
  Graph* graph;
  std::map<std::vector<std::int64_t>, Plan> plans;
  std::vector<Array> variables;  // by node id
  std::unordered_map<const detail::Node*, std::mt19937_64> rngs;
  std::vector<const detail::Node*> last_run;
  std::size_t peak_live = 0;

  Array& variable_storage(const detail::Node* v) override {
    if (variables.size() <= static_cast<std::size_t>(v->id))
      variables.resize(static_cast<std::size_t>(graph->num_nodes()));
    return variables[static_cast<std::size_t>(v->id)];
  }
  std::mt19937_64& rng(const detail::Node* n) override {
    auto it = rngs.find(n);
    if (it != rngs.end()) return it->second;
    const std::uint64_t seed = n->seed ? *n->seed : std::random_device{}();
    return rngs.emplace(n, std::mt19937_64(seed)).first->second;
  }
  const Array& read_variable(const detail::Node* v) {
    const Array& a = variable_storage(v);
    if (a.empty())
      throw FailedPreconditionError("Attempting to use uninitialized value " + v->name +
                                    " (variable '" + v->variable->name + "', shape " +
                                    v->output_shapes[0].to_string() + ")");
    return a;
  }

  const Plan& plan_for(const std::vector<GraphElement>& fetches, const FeedDict& feeds);
  Plan compile(const std::vector<GraphElement>& fetches, const FeedDict& feeds);
  std::vector<Array> execute(const Plan& plan, const std::vector<GraphElement>& fetches, const FeedDict& feeds);
};

Plan Session::Impl::compile(const std::vector<GraphElement>& fetches, const FeedDict& feeds) {
  const auto n = static_cast<std::size_t>(graph->num_nodes());
  std::vector<bool> cut(n, false);
  {
    std::vector<int> fed_outputs(n, 0);
    for (auto& [t, v] : feeds) ++fed_outputs[static_cast<std::size_t>(t.op().node()->id)];
    for (auto& [t, v] : feeds) {
      auto* node = t.op().node();
      if (fed_outputs[static_cast<std::size_t>(node->id)] >= static_cast<int>(node->output_dtypes.size()))
        cut[static_cast<std::size_t>(node->id)] = true;
    }
  }
  std::vector<detail::Node*> targets;
  for (auto& f : fetches) targets.push_back(f.op().node());
  std::vector<detail::Node*> order = detail::execution_order(*graph, targets, cut);

  Plan plan;
  std::vector<int> base(n, -1);
  for (auto* node : order) {
    base[static_cast<std::size_t>(node->id)] = plan.num_slots;
    plan.num_slots += std::max<int>(1, static_cast<int>(node->output_dtypes.size()));
  }
  const auto slot = [&](const detail::TensorRef& r) { return base[static_cast<std::size_t>(r.node->id)] + r.index; };
  std::vector<int> last_reader(static_cast<std::size_t>(plan.num_slots), -1);
  for (auto* node : order) {
    Step s{};
    s.node = node;
    s.out_base = base[static_cast<std::size_t>(node->id)];
    s.cut = cut[static_cast<std::size_t>(node->id)];
    s.is_merge = node->def->type == "Merge";
    s.is_variable = node->def->is_variable;
    const DType dispatch = node->def->dispatch_input >= 0 && node->def->dispatch_input < int(node->inputs.size())
                               ? node->inputs[static_cast<std::size_t>(node->def->dispatch_input)].node->output_dtypes[static_cast<std::size_t>(node->inputs[static_cast<std::size_t>(node->def->dispatch_input)].index)]
                               : (node->output_dtypes.empty() ? float32 : node->output_dtypes[0]);
    s.kernel = &node->def->kernels[static_cast<std::size_t>(dispatch)];
    if (!s.cut) {
      for (std::size_t i = 0; i < node->inputs.size(); ++i) {
        const auto& in = node->inputs[i];
        const auto& refs = node->def->ref_inputs;
        const bool is_ref = std::find(refs.begin(), refs.end(), int(i)) != refs.end();
        const bool reads_storage = in.node->def->is_variable && !cut[static_cast<std::size_t>(in.node->id)];
        s.in_slots.push_back(is_ref || reads_storage ? -1 : slot(in));
        s.var_reads.push_back(reads_storage && !is_ref ? in.node : nullptr);
      }
      for (auto* c : node->control_inputs) s.ctrl_slots.push_back(base[static_cast<std::size_t>(c->id)]);
    }
    const int step_index = static_cast<int>(plan.steps.size());
    for (int sl : s.in_slots)
      if (sl >= 0) last_reader[static_cast<std::size_t>(sl)] = step_index;
    plan.steps.push_back(std::move(s));
  }
  for (auto& f : fetches) {
    if (f.is_operation()) {
      plan.fetch_slots.push_back(-1);
    } else {
      const Tensor t = f.as_tensor();
      const int sl = slot(t.ref());
      plan.fetch_slots.push_back(sl);
      last_reader[static_cast<std::size_t>(sl)] = static_cast<int>(plan.steps.size());  // kept
    }
  }
  for (auto& [t, v] : feeds) plan.feed_slots.push_back(base[static_cast<std::size_t>(t.op().node()->id)] >= 0 ? slot(t.ref()) : -1);
  for (std::size_t sl = 0; sl < last_reader.size(); ++sl) {
    const int r = last_reader[sl];
    if (r >= 0 && r < static_cast<int>(plan.steps.size())) plan.steps[static_cast<std::size_t>(r)].release.push_back(static_cast<int>(sl));
  }
  return plan;
}

const Plan& Session::Impl::plan_for(const std::vector<GraphElement>& fetches, const FeedDict& feeds) {
  std::vector<std::int64_t> key;
  for (auto& f : fetches) {
    key.push_back(f.op().node()->id);
    key.push_back(f.is_operation() ? -1 : f.as_tensor().value_index());
  }
  key.push_back(-2);
  for (auto& [t, v] : feeds) {
    key.push_back(t.op().node()->id);
    key.push_back(t.value_index());
  }
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, compile(fetches, feeds)).first;
  return it->second;
}

namespace {
void validate_feed(const Tensor& t, const Array& v) {
  if (v.empty()) throw InvalidArgumentError("Feed for '" + t.name() + "' is an empty Array");
  if (v.dtype() != t.dtype())
    throw InvalidArgumentError(std::string("Cannot feed value of dtype ") + dtype_name(v.dtype()) +
                               " for Tensor '" + t.name() + "', which has dtype " + dtype_name(t.dtype()));
  if (!v.shape().is_compatible_with(t.shape()))
    throw InvalidArgumentError("Cannot feed value of shape " + v.shape().to_string() + " for Tensor '" +
                               t.name() + "', which has shape " + t.shape().to_string());
}
}  // namespace

std::vector<Array> Session::Impl::execute(const Plan& plan, const std::vector<GraphElement>& fetches,
                                          const FeedDict& feeds) {
  std::vector<Array> values(static_cast<std::size_t>(plan.num_slots));
  std::vector<char> dead(static_cast<std::size_t>(plan.num_slots), 0);
  for (std::size_t i = 0; i < feeds.size(); ++i)
    if (plan.feed_slots[i] >= 0) values[static_cast<std::size_t>(plan.feed_slots[i])] = feeds[i].second;
  last_run.clear();
  std::size_t live = 0;
  peak_live = 0;

  for (const Step& s : plan.steps) {
    detail::Node* node = s.node;
    const std::size_t out = static_cast<std::size_t>(s.out_base);
    if (s.cut) continue;
    if (s.is_variable) {
      last_run.push_back(node);
      continue;
    }
    bool is_dead = false;
    for (int c : s.ctrl_slots) is_dead |= dead[static_cast<std::size_t>(c)] != 0;
    bool all_inputs_dead = !s.in_slots.empty();
    bool any_input_dead = false;
    for (int sl : s.in_slots) {
      const bool d = sl >= 0 && dead[static_cast<std::size_t>(sl)];
      any_input_dead |= d;
      all_inputs_dead &= d;
    }
    is_dead |= s.is_merge ? all_inputs_dead : any_input_dead;
    if (is_dead) {
      for (std::size_t i = 0; i < std::max<std::size_t>(1, node->output_dtypes.size()); ++i) dead[out + i] = 1;
    } else {
      KernelContext ctx(*node, *this);
      ctx.inputs_.resize(s.in_slots.size());
      for (std::size_t i = 0; i < s.in_slots.size(); ++i) {
        const int sl = s.in_slots[i];
        if (sl >= 0) ctx.inputs_[i] = dead[static_cast<std::size_t>(sl)] ? nullptr : &values[static_cast<std::size_t>(sl)];
        else ctx.inputs_[i] = s.var_reads[i] ? &read_variable(s.var_reads[i]) : nullptr;  // null: a ref input
      }
      ctx.outputs_.resize(node->output_dtypes.size());
      (*s.kernel)(ctx);
      for (std::size_t i = 0; i < ctx.outputs_.size(); ++i) {
        if (ctx.outputs_[i].empty()) {
          dead[out + i] = 1;  // only Switch leaves an output unset
        } else {
          values[out + i] = std::move(ctx.outputs_[i]);
          peak_live = std::max(peak_live, ++live);
        }
      }
      last_run.push_back(node);
    }
    for (int sl : s.release) {
      Array& v = values[static_cast<std::size_t>(sl)];
      if (!v.empty()) --live;
      v = Array();
    }
  }
  // Fed values override computed ones (a fed output of a multi-output op that ran).
  for (std::size_t i = 0; i < feeds.size(); ++i)
    if (plan.feed_slots[i] >= 0) {
      values[static_cast<std::size_t>(plan.feed_slots[i])] = feeds[i].second;
      dead[static_cast<std::size_t>(plan.feed_slots[i])] = 0;
    }

  std::vector<Array> results;
  for (std::size_t i = 0; i < fetches.size(); ++i) {
    const int sl = plan.fetch_slots[i];
    if (sl < 0) {
      results.emplace_back();
      continue;
    }
    const Tensor t = fetches[i].as_tensor();
    if (dead[static_cast<std::size_t>(sl)])
      throw InvalidArgumentError("Fetch '" + t.name() + "' has no value: it belongs to a cond branch that was not taken");
    const auto* node = t.op().node();
    if (node->def->is_variable && values[static_cast<std::size_t>(sl)].empty())
      results.push_back(read_variable(node));
    else
      results.push_back(values[static_cast<std::size_t>(sl)]);
  }
  return results;
}

Session::Session() : Session(get_default_graph()) {}
Session::Session(Graph& graph) : impl_(std::make_unique<Impl>()) { impl_->graph = &graph; }
Session::~Session() = default;

Array Session::run(const GraphElement& fetch, const FeedDict& feeds) {
  return run(std::vector<GraphElement>{fetch}, feeds).front();
}
std::vector<Array> Session::run(std::initializer_list<GraphElement> fetches, const FeedDict& feeds) {
  return run(std::vector<GraphElement>(fetches), feeds);
}
std::vector<Array> Session::run(const std::vector<GraphElement>& fetches, const FeedDict& feeds) {
  for (auto& f : fetches)
    if (&f.op().graph() != impl_->graph)
      throw InvalidArgumentError("Fetch '" + f.name() + "' is not an element of this session's graph");
  for (auto& [t, v] : feeds) {
    if (&t.graph() != impl_->graph)
      throw InvalidArgumentError("Feed '" + t.name() + "' is not an element of this session's graph");
    validate_feed(t, v);
  }
  return impl_->execute(impl_->plan_for(fetches, feeds), fetches, feeds);
}

std::vector<std::string> Session::last_run_ops() const {
  std::vector<std::string> r;
  for (auto* n : impl_->last_run) r.push_back(n->name);
  return r;
}
std::size_t Session::num_cached_plans() const { return impl_->plans.size(); }
std::size_t Session::last_run_peak_values() const { return impl_->peak_live; }
Graph& Session::graph() const { return *impl_->graph; }

}  // namespace kiln
