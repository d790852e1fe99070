#include "framework/graph_algorithms.hpp"

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/strong_components.hpp>
#include <boost/graph/topological_sort.hpp>

#include "framework/errors.hpp"
#include "framework/op_registry.hpp"

namespace kiln::detail {

std::vector<char> reachable_backward(const Graph& g, const std::vector<const Node*>& from, bool follow_control,
                                     const std::function<bool(const Node*)>& stop) {
  std::vector<char> seen(static_cast<std::size_t>(g.num_nodes()), 0);
  std::vector<const Node*> stack(from.begin(), from.end());
  while (!stack.empty()) {
    const Node* v = stack.back();
    stack.pop_back();
    if (seen[static_cast<std::size_t>(v->id)]) continue;
    seen[static_cast<std::size_t>(v->id)] = 1;
    if (stop && stop(v)) continue;
    for (auto& in : v->inputs) stack.push_back(in.node);
    if (follow_control)
      for (const Node* c : v->control_inputs) stack.push_back(c);
  }
  return seen;
}

std::vector<int> reader_counts(const Graph& g, const std::vector<char>* among) {
  std::vector<int> readers(static_cast<std::size_t>(g.num_nodes()), 0);
  for (int id = 0; id < g.num_nodes(); ++id) {
    if (among && !(*among)[static_cast<std::size_t>(id)]) continue;
    const Node& v = *g.node(id);
    for (const TensorRef& in : v.inputs) ++readers[static_cast<std::size_t>(in.node->id)];
    for (const Node* c : v.control_inputs) ++readers[static_cast<std::size_t>(c->id)];
  }
  return readers;
}

std::vector<char> ops_between(const Graph& g, const std::vector<const Node*>& from, const std::vector<const Node*>& to) {
  const auto n = static_cast<std::size_t>(g.num_nodes());
  // Forward from `from` along data edges: an op is reached when one of its non-ref inputs is.
  // Ops are created after their inputs, so one pass in id order suffices.
  std::vector<char> reached(n, 0);
  for (const Node* f : from) reached[static_cast<std::size_t>(f->id)] = 1;
  for (std::size_t i = 0; i < n; ++i) {
    const Node* node = g.node(static_cast<int>(i));
    for (std::size_t k = 0; k < node->inputs.size() && !reached[i]; ++k)
      if (!node->def->is_ref_input(k) && reached[static_cast<std::size_t>(node->inputs[k].node->id)]) reached[i] = 1;
  }
  // Backward from `to` within the reached ops.
  std::vector<char> between(n, 0);
  std::vector<const Node*> stack(to.begin(), to.end());
  while (!stack.empty()) {
    const Node* v = stack.back();
    stack.pop_back();
    const auto id = static_cast<std::size_t>(v->id);
    if (between[id] || !reached[id]) continue;
    between[id] = 1;
    for (std::size_t k = 0; k < v->inputs.size(); ++k)
      if (!v->def->is_ref_input(k)) stack.push_back(v->inputs[k].node);
  }
  return between;
}

std::vector<Node*> execution_order(const Graph& g, const std::vector<Node*>& targets,
                                   const std::vector<bool>& cut) {
  return ordered_closure(g, targets, [&cut](Node* v) {
    std::vector<Node*> preds;
    if (cut[static_cast<std::size_t>(v->id)]) return preds;
    for (auto& in : v->inputs) preds.push_back(in.node);
    preds.insert(preds.end(), v->control_inputs.begin(), v->control_inputs.end());
    return preds;
  });
}

std::vector<Node*> ordered_closure(const Graph& g, const std::vector<Node*>& targets,
                                   const std::function<std::vector<Node*>(Node*)>& predecessors) {
  // 1. Pruning: the ops reachable backwards from the targets, with their edges; the targets get
  //    the first vertex numbers so the depth-first search below starts from them.
  const int n = g.num_nodes();
  std::vector<int> local(static_cast<std::size_t>(n), -1);
  std::vector<Node*> needed;
  std::vector<std::vector<Node*>> preds;
  const auto number = [&](Node* v) {
    if (local[static_cast<std::size_t>(v->id)] >= 0) return false;
    local[static_cast<std::size_t>(v->id)] = static_cast<int>(needed.size());
    needed.push_back(v);
    preds.push_back(predecessors(v));
    return true;
  };
  for (Node* t : targets) number(t);
  for (std::size_t i = 0; i < needed.size(); ++i)
    for (Node* p : std::vector<Node*>(preds[i])) number(p);

  // 2. Ordering: a depth-first search from the targets along edges node -> predecessor (inputs in
  //    their order, then control inputs). Its finishing order places every op right after the ops
  //    it needs, so a chain runs op by op and keeps few values alive.
  using BGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;
  BGraph bg(needed.size());
  for (std::size_t from = 0; from < needed.size(); ++from)
    for (Node* p : preds[from]) boost::add_edge(from, static_cast<std::size_t>(local[static_cast<std::size_t>(p->id)]), bg);
  std::vector<std::size_t> finished;
  try {
    boost::topological_sort(bg, std::back_inserter(finished));
  } catch (const boost::not_a_dag&) {
    // Name the ops on a cycle: a strongly connected component with more than one op.
    std::vector<int> comp(needed.size());
    const int ncomp = boost::strong_components(bg, comp.data());
    std::vector<int> count(static_cast<std::size_t>(ncomp), 0);
    for (int c : comp) ++count[static_cast<std::size_t>(c)];
    std::string names;
    for (std::size_t i = 0; i < needed.size(); ++i)
      if (count[static_cast<std::size_t>(comp[i])] > 1) names += (names.empty() ? "'" : ", '") + needed[i]->name + "'";
    throw InvalidArgumentError("Graph has a dependency cycle among the ops: " + names);
  }
  std::vector<Node*> order;
  order.reserve(needed.size());
  for (std::size_t v : finished) order.push_back(needed[v]);
  return order;
}

}  // namespace kiln::detail
