#include "framework/graph_algorithms.hpp"

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/strong_components.hpp>
#include <boost/graph/topological_sort.hpp>

#include "framework/errors.hpp"

namespace kiln::detail {

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
  // 1. Pruning: the ops reachable backwards from the targets, with their edges.
  const int n = g.num_nodes();
  std::vector<int> local(static_cast<std::size_t>(n), -1);
  std::vector<Node*> needed;
  std::vector<std::vector<Node*>> preds;
  std::vector<Node*> stack(targets.begin(), targets.end());
  while (!stack.empty()) {
    Node* v = stack.back();
    stack.pop_back();
    if (local[static_cast<std::size_t>(v->id)] >= 0) continue;
    local[static_cast<std::size_t>(v->id)] = static_cast<int>(needed.size());
    needed.push_back(v);
    preds.push_back(predecessors(v));
    stack.insert(stack.end(), preds.back().begin(), preds.back().end());
  }

  // 2. Ordering: a topological sort of the pruned subgraph (edges input -> consumer).
  using BGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;
  BGraph bg(needed.size());
  for (std::size_t to = 0; to < needed.size(); ++to)
    for (Node* p : preds[to]) boost::add_edge(static_cast<std::size_t>(local[static_cast<std::size_t>(p->id)]), to, bg);
  std::vector<std::size_t> reversed;
  try {
    boost::topological_sort(bg, std::back_inserter(reversed));
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
  for (auto it = reversed.rbegin(); it != reversed.rend(); ++it) order.push_back(needed[*it]);
  return order;
}

}  // namespace kiln::detail
