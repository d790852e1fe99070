// Per-op overhead: one run of a chain of kChainOps adds on 1-element tensors, time per add.
#include "bench/kiln/items.hpp"
#include "bench/work_items.hpp"

namespace bench::kiln_items {

void add_overhead(Registry& items) {
  using namespace kiln;
  items.add(kOverheadName, "us/op", [](const Config& c) {
    Graph graph;
    auto as_default = graph.as_default();
    Tensor a = placeholder(float32, {1}, "a");
    Tensor b = constant(xt::xarray<float>{0.5f}, "b");
    Tensor t = a;
    for (int i = 0; i < kChainOps; ++i) t = add(t, b);
    Session sess;
    const FeedDict feeds{{a, xt::xarray<float>{1.0f}}};
    // milliseconds per run / (ops / 1000) = microseconds per op
    return time_steps(c, [&] { sess.run(t, feeds); }, kChainOps / 1e3, 5);
  });
}

}  // namespace bench::kiln_items
