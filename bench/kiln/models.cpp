// Training steps of small networks built with kiln's layers: the CNN step (and its peak RSS) and
// the MLP step of bench/work_items.hpp, TF1-style with the UPDATE_OPS under the train op.
#include "bench/kiln/items.hpp"
#include "bench/work_items.hpp"

namespace bench::kiln_items {
namespace {

using namespace kiln;

struct Step {
  Graph graph;
  std::unique_ptr<Session> sess;
  std::vector<GraphElement> fetches;  // train op, loss
  FeedDict feeds;

  void run() { sess->run(fetches, feeds); }
};

// Adam(1e-3) on softmax cross-entropy with the batch-norm updates in the step; makes the session.
void finish(Step& s, const Tensor& logits, const Tensor& labels) {
  Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits);
  Operation train_op;
  {
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    train_op = train::AdamOptimizer(1e-3).minimize(loss);
  }
  s.fetches = {train_op, loss};
  s.sess = std::make_unique<Session>();
  s.sess->run(global_variables_initializer());
}

void build_cnn(Step& s, bool nchw) {
  auto as_default = s.graph.as_default();
  set_random_seed(1);
  const auto n = static_cast<std::size_t>(kCnnBatch);
  const std::vector<std::size_t> shape = nchw ? std::vector<std::size_t>{n, 1, 28, 28}
                                              : std::vector<std::size_t>{n, 28, 28, 1};
  const std::string format = nchw ? "channels_first" : "channels_last";
  Tensor x = placeholder(float32, Shape(std::vector<std::int64_t>(shape.begin(), shape.end())), "x");
  Tensor labels = placeholder(int64, {kCnnBatch}, "labels");
  Tensor h = x;
  for (std::int64_t filters : {32, 64}) {
    h = layers::conv2d(h, filters, {3, 3}, {.padding = "valid", .data_format = format, .use_bias = false});
    h = layers::batch_normalization(h, {.axis = nchw ? 1 : -1, .momentum = kBnMomentum,
                                        .epsilon = kBnEpsilon, .training = true});
    h = layers::max_pooling2d(nn::relu(h), {2, 2}, {2, 2}, {.data_format = format});
  }
  finish(s, layers::dense(layers::flatten(h), 10), labels);
  s.feeds = {{x, random_array(shape, 1)}, {labels, random_labels(n, 10, 2)}};
}

void build_mlp(Step& s) {
  auto as_default = s.graph.as_default();
  set_random_seed(1);
  const auto& widths = mlp_widths();
  const auto n = static_cast<std::size_t>(kMlpBatch), in = static_cast<std::size_t>(widths.front());
  Tensor x = placeholder(float32, {kMlpBatch, widths.front()}, "x");
  Tensor labels = placeholder(int64, {kMlpBatch}, "labels");
  Tensor h = x;
  for (std::size_t i = 1; i + 1 < widths.size(); ++i) {
    h = layers::dense(h, widths[i], {.use_bias = false});
    h = nn::sigmoid(layers::batch_normalization(h, {.momentum = kBnMomentum, .epsilon = kBnEpsilon,
                                                    .training = true}));
  }
  finish(s, layers::dense(h, widths.back()), labels);
  s.feeds = {{x, random_array({n, in}, 1)}, {labels, random_labels(n, static_cast<int>(widths.back()), 2)}};
}

}  // namespace

void add_models(Registry& items) {
  for (bool nchw : {false, true})
    items.add(cnn_name(nchw), "ms", [nchw](const Config& c) {
      Step s;
      build_cnn(s, nchw);
      return time_steps(c, [&] { s.run(); });
    });
  items.add(kCnnRssName, "MB", [](const Config&) {
    Step s;
    build_cnn(s, false);  // kiln's usual layout
    for (int i = 0; i < 5; ++i) s.run();
    return Samples{peak_rss_mb()};
  });
  items.add(kMlpName, "ms", [](const Config& c) {
    Step s;
    build_mlp(s);
    return time_steps(c, [&] { s.run(); }, 1, 5);
  });
}

}  // namespace bench::kiln_items
