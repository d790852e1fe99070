#pragma once
// Test helper: a small network with batch normalization fed a `training` placeholder (the README's
// workflow in miniature), briefly trained so that the moving statistics and the weights are not
// at their initial values. Used by the freeze / fold / graph-file tests.
#include <random>
#include <string>

#include <kiln.hpp>

namespace kiln::testing {

struct BnNetworkOptions {
  bool channels_first = false;
  bool conv_bias = false;    // conv2d with a BiasAdd before the batch norm
  bool scale = true;         // batch norm's gamma
  bool center = true;        // batch norm's beta
  std::optional<bool> fused{};  // of the conv's batch norm
  bool hidden_bn = true;     // dense (no bias) -> batch norm (composed: rank 2)
  int train_steps = 3;
};

struct BnNetwork {
  Tensor x, labels, training, logits;
  Operation train_op;
};

/// Uniform values in [-1, 1) of the given shape, from a fixed seed.
inline xt::xarray<float> random_input(std::vector<std::size_t> shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  xt::xarray<float> a = xt::xarray<float>::from_shape(shape);
  for (auto& v : a) v = u(rng);
  return a;
}

inline xt::xarray<float> network_input(const BnNetworkOptions& o, std::size_t n, unsigned seed) {
  return random_input(o.channels_first ? std::vector<std::size_t>{n, 2, 6, 6} : std::vector<std::size_t>{n, 6, 6, 2},
                      seed);
}

/// Builds the network in the default graph, initializes it in `sess` and trains it for
/// `train_steps` steps (moving averages updated), with momentum 0.5 so that they move.
inline BnNetwork build_bn_network(Session& sess, const BnNetworkOptions& o) {
  set_random_seed(7);
  BnNetwork m;
  m.x = placeholder(float32, o.channels_first ? Shape{-1, 2, 6, 6} : Shape{-1, 6, 6, 2}, "x");
  m.labels = placeholder(int64, {-1}, "labels");
  m.training = placeholder(boolean, {}, "training");
  Tensor h = layers::conv2d(m.x, 3, {3, 3},
                            {.padding = "same", .data_format = o.channels_first ? "channels_first" : "channels_last",
                             .use_bias = o.conv_bias});
  h = layers::batch_normalization(h, {.axis = o.channels_first ? 1 : -1, .momentum = 0.5, .center = o.center,
                                      .scale = o.scale, .training = m.training, .fused = o.fused});
  h = nn::relu(h);
  h = layers::flatten(h);
  h = layers::dense(h, 5, {.use_bias = !o.hidden_bn});
  if (o.hidden_bn)
    h = layers::batch_normalization(h, {.momentum = 0.5, .center = o.center, .scale = o.scale, .training = m.training});
  h = nn::relu(h);
  m.logits = layers::dense(h, 3, {.name = "logits"});
  const Tensor loss = losses::sparse_softmax_cross_entropy(m.labels, m.logits);
  {
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    m.train_op = train::GradientDescentOptimizer(0.1).minimize(loss);
  }
  sess.run(global_variables_initializer());
  for (int s = 0; s < o.train_steps; ++s) {
    xt::xarray<std::int64_t> y = xt::xarray<std::int64_t>::from_shape({8});
    for (std::size_t i = 0; i < y.size(); ++i) y(i) = static_cast<std::int64_t>((i + static_cast<std::size_t>(s)) % 3);
    sess.run(m.train_op, {{m.x, network_input(o, 8, 100u + static_cast<unsigned>(s))}, {m.labels, y}, {m.training, true}});
  }
  return m;
}

}  // namespace kiln::testing
