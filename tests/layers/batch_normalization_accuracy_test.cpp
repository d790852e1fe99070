// Batch normalization's composed path (fused = false) in float32 on data far from zero (issue 11:
// at a channel offset of 1e4 dgamma came out -20.05 against -19.56 from libtorch, because the
// broadcast-gradient sums added element by element in float32). The reference is the same layer
// and loss built in float64: its gradient in double.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include <kiln.hpp>

using namespace kiln;

namespace {

// dgamma and dbeta of loss = sum(bn(x) * w) for the layer built in dtype t.
std::vector<xt::xarray<double>> bn_grads(DType t, const xt::xarray<double>& xv, const xt::xarray<double>& wv) {
  Graph g;
  auto guard = g.as_default();
  const std::vector<std::int64_t> dims(xv.shape().begin(), xv.shape().end());
  Tensor x = placeholder(t, Shape(dims), "x");
  Tensor w = placeholder(t, Shape(dims), "w");
  layers::BatchNormalization bn({.fused = false});
  Tensor loss = reduce_sum(bn(x, true) * w);
  const auto grads = gradients({loss}, {bn.gamma(), bn.beta()});
  Session sess;
  sess.run(global_variables_initializer());
  const auto cast = [t](const xt::xarray<double>& v) {
    return t == float32 ? Array(xt::xarray<float>(xt::cast<float>(v))) : Array(v);
  };
  const auto out = sess.run({*grads[0], *grads[1]}, {{x, cast(xv)}, {w, cast(wv)}});
  return {out[0].to_double(), out[1].to_double()};
}

}  // namespace

TEST_CASE("batch_normalization.composed_dgamma_at_channel_offset_1e4") {
  // x [32, 8, 8, 4]: channel c is 1e4 + c + N(0, 1); the loss weights w are N(0, 1). Both are
  // exactly representable in float32, so both builds see the same numbers.
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  xt::xarray<double> xv = xt::xarray<double>::from_shape({32, 8, 8, 4});
  xt::xarray<double> wv = xt::xarray<double>::from_shape({32, 8, 8, 4});
  for (std::size_t i = 0; i < xv.size(); ++i) {
    xv.data()[i] = static_cast<float>(1e4 + static_cast<double>(i % 4) + normal(rng));
    wv.data()[i] = normal(rng);
  }
  const auto f32 = bn_grads(float32, xv, wv);
  const auto f64 = bn_grads(float64, xv, wv);
  for (std::size_t c = 0; c < 4; ++c) {
    CAPTURE(c);
    CAPTURE(f64[0](c));
    CHECK(std::abs(f32[0](c) - f64[0](c)) <= 1e-3 * std::abs(f64[0](c)));
    CHECK(std::abs(f32[1](c) - f64[1](c)) <= 1e-3 * std::abs(f64[1](c)));
  }
}
