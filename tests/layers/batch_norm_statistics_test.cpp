// layers::recompute_batch_norm_statistics: the moving statistics become the population mean and
// variance of the batches (hand-computed in double in this file: the composed path's biased
// variance; the fused path's within-batch part times N/(N-1), BATCH_NORM.md section 3), trainable
// variables are untouched, and the generator form and the layer selection work.
#include <doctest/doctest.h>

#include <xtensor/xbuilder.hpp>

#include <kiln.hpp>

#include "layers/batch_norm_statistics.hpp"

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/bn_network.hpp"

using namespace kiln;
using kiln::testing::message_of;

namespace {

using Arr = xt::xarray<double>;

// Per channel (the last axis) of each batch: mean and biased variance, in double.
void batch_moments(const xt::xarray<float>& b, std::size_t channels, Arr& mean, Arr& var) {
  const std::size_t n = b.size() / channels;
  mean = xt::zeros<double>({channels});
  var = xt::zeros<double>({channels});
  for (std::size_t i = 0; i < b.size(); ++i) mean(i % channels) += b.data()[i];
  mean /= static_cast<double>(n);
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = b.data()[i] - mean(i % channels);
    var(i % channels) += d * d;
  }
  var /= static_cast<double>(n);
}

}  // namespace

TEST_CASE("batch_norm_statistics.composed_path_gives_the_population_statistics") {
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {-1, 3}, "x");
  const Tensor training = placeholder(boolean, {}, "training");
  layers::batch_normalization(x, {.momentum = 0.9, .training = training, .name = "bn"});
  Session sess(g);
  sess.run(global_variables_initializer());
  // Four batches of 5 rows with different offsets: the population variance includes the spread
  // of the batch means.
  std::vector<FeedDict> batches;
  xt::xarray<float> all = xt::xarray<float>::from_shape({20, 3});
  for (unsigned b = 0; b < 4; ++b) {
    xt::xarray<float> v = kiln::testing::random_input({5, 3}, 10 + b) + static_cast<float>(b);
    std::copy(v.begin(), v.end(), all.begin() + 15 * b);
    batches.push_back({{x, v}});
  }
  const auto gamma_before = sess.run(g.get_tensor_by_name("bn/gamma:0"));
  const auto stats = layers::recompute_batch_norm_statistics(sess, batches);
  REQUIRE(stats.size() == 1);
  CHECK(stats[0].layer == "bn");
  CHECK(stats[0].samples == 4);
  Arr mean, var;
  batch_moments(all, 3, mean, var);
  CHECK(kiln::testing::allclose(sess.run(g.get_tensor_by_name("bn/moving_mean:0")), mean, 1e-5, 1e-6));
  CHECK(kiln::testing::allclose(sess.run(g.get_tensor_by_name("bn/moving_variance:0")), var, 1e-5, 1e-6));
  // Trainable variables untouched.
  CHECK(xt::all(xt::equal(sess.run(g.get_tensor_by_name("bn/gamma:0")).as<float>(), gamma_before.as<float>())));
}

TEST_CASE("batch_norm_statistics.fused_path_keeps_its_bessel_correction") {
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {-1, 2, 2, 3}, "x");
  const Tensor training = placeholder(boolean, {}, "training");
  layers::batch_normalization(x, {.training = training, .name = "bn", .fused = true});
  Session sess(g);
  sess.run(global_variables_initializer());
  std::vector<xt::xarray<float>> data;
  for (unsigned b = 0; b < 3; ++b) data.push_back(kiln::testing::random_input({4, 2, 2, 3}, 20 + b) * (1.0f + static_cast<float>(b)));
  // The generator form.
  std::size_t next = 0;
  layers::recompute_batch_norm_statistics(sess, [&]() -> std::optional<FeedDict> {
    if (next == data.size()) return std::nullopt;
    return FeedDict{{x, data[next++]}};
  });
  const double n = 16;  // elements per channel in a batch
  Arr mean_sum = xt::zeros<double>({3}), within = xt::zeros<double>({3}), m2 = xt::zeros<double>({3});
  for (const auto& b : data) {
    Arr m, v;
    batch_moments(b, 3, m, v);
    mean_sum += m;
    within += v * n / (n - 1);
    m2 += m * m;
  }
  const Arr mean = mean_sum / 3.0;
  const Arr var = within / 3.0 + (m2 / 3.0 - mean * mean);
  CHECK(kiln::testing::allclose(sess.run(g.get_tensor_by_name("bn/moving_mean:0")), mean, 1e-5, 1e-6));
  CHECK(kiln::testing::allclose(sess.run(g.get_tensor_by_name("bn/moving_variance:0")), var, 1e-5, 1e-6));
}

TEST_CASE("batch_norm_statistics.selects_layers_and_reports_errors") {
  Graph g;
  auto guard = g.as_default();
  Session sess(g);
  const auto m = kiln::testing::build_bn_network(sess, {.train_steps = 1});
  const FeedDict batch = {{m.x, kiln::testing::network_input({}, 6, 5)}};
  const Array hidden_before = sess.run(g.get_tensor_by_name("batch_normalization_1/moving_mean:0"));
  const Array kernel_before = sess.run(g.get_tensor_by_name("logits/kernel:0"));
  const auto stats = layers::recompute_batch_norm_statistics(sess, std::vector<FeedDict>{batch, batch},
                                                             {.layers = {"batch_normalization"}});
  REQUIRE(stats.size() == 1);
  CHECK(stats[0].samples == 2);
  CHECK(xt::all(xt::equal(sess.run(stats[0].moving_mean).as<float>(), stats[0].mean.as<float>())));
  // The other layer and the weights did not move.
  CHECK(xt::all(xt::equal(sess.run(g.get_tensor_by_name("batch_normalization_1/moving_mean:0")).as<float>(),
                          hidden_before.as<float>())));
  CHECK(xt::all(xt::equal(sess.run(g.get_tensor_by_name("logits/kernel:0")).as<float>(), kernel_before.as<float>())));
  // Both layers by default.
  CHECK(layers::recompute_batch_norm_statistics(sess, std::vector<FeedDict>{batch}).size() == 2);

  CHECK(kiln::testing::contains(message_of<ValueError>([&] {
          layers::recompute_batch_norm_statistics(sess, std::vector<FeedDict>{batch}, {.layers = {"nope"}});
        }),
        "'nope'"));
  CHECK(kiln::testing::contains(
      message_of<ValueError>([&] { layers::recompute_batch_norm_statistics(sess, std::vector<FeedDict>{}); }),
      "no batches"));
}
