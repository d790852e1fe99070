// DistributedOptimizer and broadcast_variables: both move many tensors through one collective by
// fusing them (flatten, concatenate, one collective per buffer, slice and reshape back).
#include "distributed/optimizer.hpp"

#include <functional>
#include <map>

#include "distributed/collective_ops.hpp"
#include "framework/errors.hpp"
#include "framework/ops.hpp"
#include "framework/variable.hpp"

namespace kiln::distributed {

namespace {

std::size_t element_bytes(DType t) { return t == float64 || t == int64 ? 8 : 4; }

// `collective` applied to every tensor of `xs` (xs[i] reshaped to shapes[i], fully defined) through
// fused buffers: per dtype, in order, tensors are packed while a buffer stays within `max_bytes`
// (a larger tensor gets a buffer of its own).
std::vector<Tensor> fused(const std::vector<Tensor>& xs, const std::vector<Shape>& shapes, std::size_t max_bytes,
                          const std::function<Tensor(const Tensor&)>& collective) {
  std::vector<Tensor> out(xs.size());
  std::vector<DType> dtypes;
  for (const Tensor& x : xs)
    if (std::find(dtypes.begin(), dtypes.end(), x.dtype()) == dtypes.end()) dtypes.push_back(x.dtype());
  for (DType t : dtypes) {
    std::vector<std::size_t> bucket;
    std::size_t bytes = 0;
    const auto flush = [&] {
      if (bucket.empty()) return;
      std::vector<Tensor> flat;
      for (std::size_t i : bucket) flat.push_back(reshape(xs[i], Shape{-1}));
      const Tensor reduced = collective(flat.size() == 1 ? flat[0] : concat(flat, 0, "fused"));
      std::int64_t offset = 0;
      for (std::size_t i : bucket) {
        const std::int64_t n = shapes[i].num_elements();
        out[i] = reshape(slice(reduced, {offset}, {n}), shapes[i]);
        offset += n;
      }
      bucket.clear();
      bytes = 0;
    };
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (xs[i].dtype() != t) continue;
      if (!shapes[i].is_fully_defined())
        throw ValueError("distributed: cannot fuse '" + xs[i].name() + "' of shape " + shapes[i].to_string() +
                         ": the shape must be fully defined");
      const std::size_t b = static_cast<std::size_t>(shapes[i].num_elements()) * element_bytes(t);
      if (!bucket.empty() && bytes + b > max_bytes) flush();
      bucket.push_back(i);
      bytes += b;
    }
    flush();
  }
  return out;
}

}  // namespace

DistributedOptimizer::DistributedOptimizer(std::shared_ptr<train::Optimizer> optimizer,
                                           DistributedOptimizerOptions options)
    : inner_(std::move(optimizer)), options_(options) {
  if (!inner_) throw ValueError("DistributedOptimizer: the wrapped optimizer is null");
  if (options_.fusion_bytes == 0) throw ValueError("DistributedOptimizer: fusion_bytes must be > 0");
}

train::GradsAndVars DistributedOptimizer::average(const train::GradsAndVars& grads_and_vars, const Tensor* loss) const {
  std::vector<Tensor> grads;
  std::vector<Shape> shapes;
  for (const auto& [g, v] : grads_and_vars)
    if (g) {
      grads.push_back(*g);
      shapes.push_back(v.shape());
    }
  if (grads.empty()) return grads_and_vars;
  Graph& graph = grads.front().graph();
  auto as_default = graph.as_default();
  name_scope ns("DistributedOptimizer_Allreduce");
  std::optional<control_dependencies> after_loss;
  if (loss) after_loss.emplace(std::vector<GraphElement>{*loss});
  const std::vector<Tensor> averaged = fused(grads, shapes, options_.fusion_bytes,
                                             [](const Tensor& t) { return all_reduce(t, Reduction::mean); });
  train::GradsAndVars out;
  std::size_t k = 0;
  for (const auto& [g, v] : grads_and_vars) out.emplace_back(g ? std::optional<Tensor>(averaged[k++]) : std::nullopt, v);
  return out;
}

train::GradsAndVars DistributedOptimizer::compute_gradients(const Tensor& loss,
                                                            const std::vector<Variable>& var_list) const {
  return average(inner_->compute_gradients(loss, var_list), &loss);
}

Operation DistributedOptimizer::apply_gradients(const train::GradsAndVars& grads_and_vars,
                                                std::optional<Variable> global_step, const std::string& name) {
  return inner_->apply_gradients(grads_and_vars, std::move(global_step), name);
}

Operation DistributedOptimizer::minimize(const Tensor& loss, const train::MinimizeOptions& options) {
  const train::GradsAndVars gv = inner_->compute_gradients(loss, options.var_list);
  // No gradient at all: the wrapped optimizer raises its error naming the variables and the loss.
  if (std::none_of(gv.begin(), gv.end(), [](const train::GradAndVar& p) { return p.first.has_value(); }))
    return inner_->minimize(loss, options);
  const train::GradsAndVars averaged = average(gv, &loss);
  const bool warning = train::update_ops_warning_enabled();
  if (!options.warn_missing_update_ops) train::set_update_ops_warning(false);
  Operation op;
  try {
    op = inner_->apply_gradients(averaged, options.global_step, options.name);
  } catch (...) {
    train::set_update_ops_warning(warning);
    throw;
  }
  if (!options.warn_missing_update_ops) train::set_update_ops_warning(warning);
  return op;
}

Operation broadcast_global_variables(int root) {
  std::vector<Variable> vars;
  std::vector<Tensor> values;
  std::vector<Shape> shapes;
  for (const GraphElement& e : get_collection(GraphKeys::GLOBAL_VARIABLES))
    if (e.is_variable()) {
      vars.push_back(e.as_variable());
      values.push_back(vars.back().value());
      shapes.push_back(vars.back().shape());
    }
  control_dependencies none(nullptr);
  name_scope ns("broadcast_global_variables");
  const std::vector<Tensor> received =
      fused(values, shapes, std::size_t{64} << 20, [&](const Tensor& t) { return broadcast(t, root); });
  std::vector<GraphElement> assigns;
  for (std::size_t i = 0; i < vars.size(); ++i) assigns.emplace_back(assign(vars[i], received[i]).op());
  return group(assigns);
}

void broadcast_variables(Session& sess, int root) {
  auto as_default = sess.graph().as_default();
  sess.run(broadcast_global_variables(root));
}

}  // namespace kiln::distributed
