// Training steps of the CNN (and its peak RSS) and the MLP of bench/work_items.hpp in libtorch,
// Adam 1e-3 on softmax cross-entropy; NHWC is torch's channels_last memory format.
#include "bench/torch/items.hpp"

namespace bench::torch_items {
namespace {

struct Step {
  torch::nn::Sequential net;
  torch::Tensor x, labels;
  std::unique_ptr<torch::optim::Adam> opt;

  void run() { train_step(net, *opt, x, labels).loss.item<float>(); }  // kiln fetches the loss
  void finish() { opt = std::make_unique<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-3)); }
};

Step cnn(bool nchw) {
  torch::manual_seed(1);
  Step s;
  add_conv_block(s.net, 1, 32, 0);
  add_conv_block(s.net, 32, 64, 0);
  s.net->push_back(torch::nn::Flatten());
  s.net->push_back(torch::nn::Linear(64 * 5 * 5, 10));
  s.x = torch::randn({kCnnBatch, 1, 28, 28});
  if (!nchw) {
    for (auto& p : s.net->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    s.x = s.x.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  s.labels = torch::randint(10, {kCnnBatch}, torch::kLong);
  s.finish();
  return s;
}

Step mlp() {
  torch::manual_seed(1);
  Step s;
  const auto& widths = mlp_widths();
  for (std::size_t i = 1; i + 1 < widths.size(); ++i) {
    s.net->push_back(torch::nn::Linear(torch::nn::LinearOptions(widths[i - 1], widths[i]).bias(false)));
    s.net->push_back(torch::nn::BatchNorm1d(bn_options(widths[i])));
    s.net->push_back(torch::nn::Sigmoid());
  }
  s.net->push_back(torch::nn::Linear(widths[widths.size() - 2], widths.back()));
  s.x = torch::randn({kMlpBatch, widths.front()});
  s.labels = torch::randint(widths.back(), {kMlpBatch}, torch::kLong);
  s.finish();
  return s;
}

}  // namespace

void add_models(Registry& items) {
  for (bool nchw : {false, true})
    items.add(cnn_name(nchw), "ms", [nchw](const Config& c) {
      Step s = cnn(nchw);
      return time_steps(c, [&] { s.run(); });
    });
  items.add(kCnnRssName, "MB", [](const Config&) {
    Step s = cnn(true);  // torch's usual layout
    for (int i = 0; i < 5; ++i) s.run();
    return Samples{peak_rss_mb()};
  });
  items.add(kMlpName, "ms", [](const Config& c) {
    Step s = mlp();
    return time_steps(c, [&] { s.run(); }, 1, 5);
  });
}

}  // namespace bench::torch_items
