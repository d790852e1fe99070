#include "autodiff/gradients.hpp"

#include <algorithm>
#include <unordered_map>

#include "framework/errors.hpp"
#include "framework/graph_algorithms.hpp"
#include "framework/op_registry.hpp"
#include "framework/ops.hpp"

namespace kiln {

using detail::Node;

std::vector<std::optional<Tensor>> gradients(const std::vector<Tensor>& ys, const std::vector<Tensor>& xs,
                                             const std::vector<Tensor>& grad_ys) {
  if (ys.empty()) throw ValueError("gradients: ys is empty");
  if (!grad_ys.empty() && grad_ys.size() != ys.size())
    throw ValueError("gradients: grad_ys has " + std::to_string(grad_ys.size()) + " tensors for " +
                     std::to_string(ys.size()) + " ys");
  Graph& g = ys[0].graph();
  const auto n = static_cast<std::size_t>(g.num_nodes());

  // 1. The ops on a data path from one of xs to one of ys (not through ref inputs).
  std::vector<const Node*> from, to;
  for (auto& x : xs) from.push_back(x.op().node());
  for (auto& y : ys) to.push_back(y.op().node());
  const std::vector<char> between = detail::ops_between(g, from, to);

  // 2. Pending counts: how many consumers between xs and ys each op waits for.
  std::vector<int> pending(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    if (!between[i]) continue;
    Node* node = g.node(static_cast<int>(i));
    for (std::size_t k = 0; k < node->inputs.size(); ++k)
      if (!node->def->is_ref_input(k) && between[static_cast<std::size_t>(node->inputs[k].node->id)])
        ++pending[static_cast<std::size_t>(node->inputs[k].node->id)];
  }

  // 3. Walk back from ys, summing the gradient contributions of each tensor.
  std::unordered_map<const Node*, std::vector<std::vector<Tensor>>> contributions;
  const auto contribute = [&](const detail::TensorRef& r, const Tensor& grad) {
    auto& per_output = contributions[r.node];
    per_output.resize(r.node->output_dtypes.size());
    per_output[static_cast<std::size_t>(r.index)].push_back(grad);
  };
  name_scope scope("gradients");
  for (std::size_t i = 0; i < ys.size(); ++i) {
    const Tensor& y = ys[i];
    if (!is_floating(y.dtype())) continue;
    // A constant when y's shape is known, so the gradient does not keep y's inputs alive.
    const std::string name = "grad_ys_" + std::to_string(i);
    const Tensor seed = !grad_ys.empty()                  ? grad_ys[i]
                        : y.shape().is_fully_defined() ? ones(y.shape(), y.dtype(), name)
                                                         : ones_like(y, name);
    contribute(y.ref(), seed);
  }
  const auto summed = [&](const Node* node, std::size_t index) -> std::optional<Tensor> {
    auto it = contributions.find(node);
    if (it == contributions.end() || index >= it->second.size() || it->second[index].empty()) return std::nullopt;
    auto& list = it->second[index];
    if (list.size() > 1) list = {add_n(list)};
    return list[0];
  };

  std::vector<Node*> ready;
  for (auto& y : ys) {
    Node* v = y.op().node();
    if (between[static_cast<std::size_t>(v->id)] && pending[static_cast<std::size_t>(v->id)] == 0 &&
        std::find(ready.begin(), ready.end(), v) == ready.end())
      ready.push_back(v);
  }

  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    const Operation op(node);
    OptionalTensors dy(node->output_dtypes.size());
    bool any = false;
    for (std::size_t k = 0; k < dy.size(); ++k) {
      dy[k] = summed(node, k);
      any |= dy[k].has_value();
    }
    const bool feeds_nothing = std::none_of(node->inputs.begin(), node->inputs.end(), [&](const detail::TensorRef& r) {
      return between[static_cast<std::size_t>(r.node->id)] != 0;
    });
    const bool stop = !any || node->def->not_differentiable || feeds_nothing;
    if (!stop) {
      if (!node->def->gradient)
        throw LookupError("No gradient defined for operation '" + node->name + "' (op type: " + node->def->type + ")");
      if (!node->def->accepts_missing_output_grads)
        for (std::size_t k = 0; k < dy.size(); ++k)
          if (!dy[k] && is_floating(node->output_dtypes[k])) {
            const Tensor out = op.output(static_cast<int>(k));
            dy[k] = out.shape().is_fully_defined() ? zeros(out.shape(), out.dtype()) : zeros_like(out);
          }
      OptionalTensors dx;
      {
        name_scope grad_scope(node->name + "_grad");
        dx = node->def->gradient(op, dy);
      }
      if (dx.size() != node->inputs.size())
        throw InternalError("gradient of '" + node->name + "' (op type: " + node->def->type + ") returned " +
                            std::to_string(dx.size()) + " gradients for " + std::to_string(node->inputs.size()) + " inputs");
      for (std::size_t k = 0; k < dx.size(); ++k) {
        const auto& in = node->inputs[k];
        if (dx[k] && !node->def->is_ref_input(k) && is_floating(in.node->output_dtypes[static_cast<std::size_t>(in.index)]) &&
            between[static_cast<std::size_t>(in.node->id)])
          contribute(in, *dx[k]);
      }
    }
    for (std::size_t k = 0; k < node->inputs.size(); ++k) {
      Node* in = node->inputs[k].node;
      const auto id = static_cast<std::size_t>(in->id);
      if (node->def->is_ref_input(k) || !between[id]) continue;
      if (--pending[id] == 0) ready.push_back(in);
    }
  }

  std::vector<std::optional<Tensor>> result;
  for (auto& x : xs) {
    if (!is_floating(x.dtype())) {
      result.emplace_back(std::nullopt);
      continue;
    }
    result.push_back(summed(x.op().node(), static_cast<std::size_t>(x.value_index())));
  }
  return result;
}

std::vector<std::optional<Tensor>> gradients(const Tensor& y, const std::vector<Tensor>& xs) {
  return gradients(std::vector<Tensor>{y}, xs);
}

}  // namespace kiln
