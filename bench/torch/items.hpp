#pragma once
// libtorch's work items (bench/work_items.hpp), one registering function per family, and the
// pieces the model families share.
#include <torch/torch.h>

#include "bench/harness.hpp"
#include "bench/work_items.hpp"

namespace bench::torch_items {

void add_batch_norm(Registry& items);     // batch_norm.cpp
void add_models(Registry& items);         // models.cpp: CNN step, its peak RSS, MLP step
void add_overhead(Registry& items);       // overhead.cpp
void add_fashion_mnist(Registry& items);  // fashion_mnist.cpp

/// torch's batch-norm options equal to kiln's (TF momentum m is torch's 1 - m).
inline torch::nn::BatchNormOptions bn_options(std::int64_t channels) {
  return torch::nn::BatchNormOptions(channels).eps(kBnEpsilon).momentum(1 - kBnMomentum);
}

/// conv 3x3 (no bias) -> batch norm -> relu -> max-pool 2, appended to `net`.
inline void add_conv_block(torch::nn::Sequential& net, std::int64_t in, std::int64_t out, std::int64_t padding) {
  net->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(padding).bias(false)));
  net->push_back(torch::nn::BatchNorm2d(bn_options(out)));
  net->push_back(torch::nn::ReLU());
  net->push_back(torch::nn::MaxPool2d(2));
}

struct StepResult {
  torch::Tensor loss, logits;
};

/// One training step: forward, softmax cross-entropy, backward, optimizer step.
inline StepResult train_step(torch::nn::Sequential& net, torch::optim::Optimizer& opt,
                             const torch::Tensor& x, const torch::Tensor& labels) {
  opt.zero_grad();
  StepResult r;
  r.logits = net->forward(x);
  r.loss = torch::nn::functional::cross_entropy(r.logits, labels);
  r.loss.backward();
  opt.step();
  return r;
}

}  // namespace bench::torch_items
