// Per-op overhead in libtorch: kChainOps eager `a + b` on 1-element tensors, time per add.
#include "bench/torch/items.hpp"

namespace bench::torch_items {

void add_overhead(Registry& items) {
  items.add(kOverheadName, "us/op", [](const Config& c) {
    const torch::Tensor a = torch::ones({1}), b = torch::full({1}, 0.5);
    // milliseconds per chain / (ops / 1000) = microseconds per op
    return time_steps(c, [&] {
      torch::Tensor t = a;
      for (int i = 0; i < kChainOps; ++i) t = t + b;
    }, kChainOps / 1e3, 5);
  });
}

}  // namespace bench::torch_items
