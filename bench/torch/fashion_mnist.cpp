// One Fashion-MNIST epoch in libtorch with the main job's network and recipe
// (examples/fashion_mnist_lib.hpp: conv 3x3x32 same -> BN -> relu -> pool, conv 3x3x64 same ->
// BN -> relu -> pool, dense 128 no bias -> BN -> relu, dense 10; Adam 1e-3, batch 64, shuffled),
// NCHW (torch's layout), the loss and accuracy read back every step as the example does. Data:
// the example's IDX reader. The sample is the epoch's training time in seconds.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "bench/torch/items.hpp"
#include "examples/data/idx.hpp"

namespace bench::torch_items {
namespace {

torch::nn::Sequential main_job_network() {
  torch::nn::Sequential net;
  add_conv_block(net, 1, 32, 1);
  add_conv_block(net, 32, 64, 1);
  net->push_back(torch::nn::Flatten());
  net->push_back(torch::nn::Linear(torch::nn::LinearOptions(64 * 7 * 7, 128).bias(false)));
  net->push_back(torch::nn::BatchNorm1d(bn_options(128)));
  net->push_back(torch::nn::ReLU());
  net->push_back(torch::nn::Linear(128, 10));
  return net;
}

Samples run_epoch(const Config& c) {
  const kiln::data::Dataset ds = kiln::data::load_fashion_mnist();
  const std::int64_t available = ds.train_images.shape.at(0);
  const std::int64_t n = c.limit > 0 ? std::min(c.limit, available) : available;
  torch::Tensor images =
      torch::from_blob(const_cast<std::uint8_t*>(ds.train_images.data.data()), {available, 1, 28, 28}, torch::kUInt8)
          .slice(0, 0, n).to(torch::kFloat).div_(255.0f);
  torch::Tensor labels =
      torch::from_blob(const_cast<std::uint8_t*>(ds.train_labels.data.data()), {available}, torch::kUInt8)
          .slice(0, 0, n).to(torch::kLong);

  torch::manual_seed(1);
  torch::nn::Sequential net = main_job_network();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(1);
  std::shuffle(order.begin(), order.end(), rng);
  const torch::Tensor perm = torch::from_blob(order.data(), {n}, torch::kLong);

  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0, correct = 0;
  for (std::int64_t begin = 0; begin < n; begin += kFashionMnistBatch) {
    const torch::Tensor idx = perm.slice(0, begin, std::min(n, begin + kFashionMnistBatch));
    const torch::Tensor y = labels.index_select(0, idx);
    StepResult r = train_step(net, opt, images.index_select(0, idx), y);
    loss_sum += r.loss.item<double>() * static_cast<double>(idx.size(0));
    correct += r.logits.argmax(1).eq(y).sum().item<double>();
  }
  const double seconds = seconds_since(t0);
  if (!std::isfinite(loss_sum)) throw std::runtime_error("fashion-mnist: the loss is not finite");
  print_info("torch", "fashion-mnist train accuracy", std::to_string(correct / static_cast<double>(n)));
  return {seconds};
}

}  // namespace

void add_fashion_mnist(Registry& items) { items.add(kFashionMnistName, "s", run_epoch); }

}  // namespace bench::torch_items
