// Batch norm forward + backward in libtorch: torch::batch_norm in training mode (running
// statistics updated in the call) and autograd's gradients of sum(y * dy) w.r.t. x, gamma, beta.
// NHWC cases use torch's channels_last memory format.
#include "bench/torch/items.hpp"

namespace bench::torch_items {
namespace {

Samples run_batch_norm(const BnCase& bc, const Config& c) {
  torch::manual_seed(1);
  const std::vector<std::int64_t> sizes = bc.rank2() ? std::vector<std::int64_t>{bc.n, bc.c}
                                                     : std::vector<std::int64_t>{bc.n, bc.c, bc.h, bc.w};
  const auto format = bc.rank2() || bc.nchw ? torch::MemoryFormat::Contiguous : torch::MemoryFormat::ChannelsLast;
  torch::Tensor x = torch::randn(sizes).contiguous(format).requires_grad_();
  torch::Tensor dy = torch::randn(sizes).contiguous(format);
  torch::Tensor gamma = torch::ones({bc.c}).requires_grad_(), beta = torch::zeros({bc.c}).requires_grad_();
  torch::Tensor running_mean = torch::zeros({bc.c}), running_var = torch::ones({bc.c});
  return time_steps(c, [&] {
    torch::Tensor y = torch::batch_norm(x, gamma, beta, running_mean, running_var, /*training=*/true,
                                        1 - kBnMomentum, kBnEpsilon, /*cudnn_enabled=*/false);
    auto grads = torch::autograd::grad({y}, {x, gamma, beta}, {dy});
  });
}

}  // namespace

void add_batch_norm(Registry& items) {
  for (const BnCase& bc : bn_cases())
    items.add(bc.name(), "ms", [bc](const Config& c) { return run_batch_norm(bc, c); });
}

}  // namespace bench::torch_items
