// Batch norm forward + backward through kiln's graph: placeholder x, layers::batch_normalization
// in training mode, the gradients of sum(y * dy) with respect to x, gamma and beta, and the
// UPDATE_OPS (moving averages) in the same run.
#include "bench/kiln/items.hpp"
#include "bench/work_items.hpp"

namespace bench::kiln_items {
namespace {

using namespace kiln;

Samples run_batch_norm(const BnCase& bc, bool composed, const Config& c) {
  Graph graph;
  auto as_default = graph.as_default();
  const auto n = static_cast<std::size_t>(bc.n), ch = static_cast<std::size_t>(bc.c);
  const auto h = static_cast<std::size_t>(bc.h), w = static_cast<std::size_t>(bc.w);
  const std::vector<std::size_t> shape = bc.rank2() ? std::vector<std::size_t>{n, ch}
                                         : bc.nchw  ? std::vector<std::size_t>{n, ch, h, w}
                                                    : std::vector<std::size_t>{n, h, w, ch};
  const Shape graph_shape(std::vector<std::int64_t>(shape.begin(), shape.end()));
  Tensor x = placeholder(float32, graph_shape, "x");
  Tensor dy = placeholder(float32, graph_shape, "dy");
  layers::BatchNormalizationOptions options{.axis = bc.nchw ? 1 : -1,
                                            .momentum = kBnMomentum,
                                            .epsilon = kBnEpsilon,
                                            .training = true};
  if (composed) options.fused = false;
  Tensor y = layers::batch_normalization(x, options);
  const std::vector<Variable> gamma_beta = trainable_variables();
  auto grads = gradients(reduce_sum(y * dy), {x, gamma_beta.at(0), gamma_beta.at(1)});
  const std::vector<GraphElement> fetches{*grads[0], *grads[1], *grads[2],
                                          group(get_collection(GraphKeys::UPDATE_OPS))};
  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{x, random_array(shape, 1)}, {dy, random_array(shape, 2)}};
  return time_steps(c, [&] { sess.run(fetches, feeds); });
}

}  // namespace

void add_batch_norm(Registry& items) {
  for (const BnCase& bc : bn_cases()) {
    items.add(bc.name(), "ms", [bc](const Config& c) { return run_batch_norm(bc, false, c); });
    if (!bc.rank2())  // rank 2 always takes the composed path
      items.add(composed_name(bc), "ms", [bc](const Config& c) { return run_batch_norm(bc, true, c); });
  }
}

}  // namespace bench::kiln_items
