// Gradients of layers::BatchNormalization's fused and composed paths and of the fused op (first and
// second order) against finite differences in float64, the fused op's outputs and reserve spaces,
// and epsilon not clamped on either path.
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "tests/layers/batch_normalization_support.hpp"
#include "tests/support/approx.hpp"

using namespace kiln;
using namespace kiln::testing::batch_norm;
using kiln::testing::check_grad;

// ---------------------------------------------------------------- gradients

TEST_CASE("batch_norm.layer_gradients_match_finite_differences") {
  struct Case {
    Dims shape;
    layers::Axis axis;
    std::optional<bool> fused;
    Dims param;  // gamma's shape
  };
  const std::vector<Case> cases{
      {{2, 2, 2, 3}, 3, true, {3}},          // fused NHWC
      {{2, 3, 2, 2}, 1, true, {3}},          // fused NCHW
      {{2, 2, 2, 3}, 3, false, {3}},         // composed, last axis
      {{2, 3, 2, 2}, 1, false, {3}},         // composed, reshaped broadcast
      {{3, 2, 4}, {1, 2}, false, {1, 2, 4}}, // several axes
      {{4, 3}, 0, false, {4}},               // the batch axis itself
      {{5, 3}, -1, std::nullopt, {3}},       // dense-style
  };
  int k = 0;
  for (const Case& c : cases) {
    CAPTURE(k++);
    for (const int mode : {0, 1, 2}) {  // training true, false, placeholder fed true / false
      CAPTURE(mode);
      Graph g;
      auto guard = g.as_default();
      const Arr xv = normal(c.shape, 1.0, 2.0, 60 + static_cast<unsigned>(k));
      const Arr gv = normal(c.param, 1.0, 0.5, 70), bv = normal(c.param, 0.0, 0.5, 71);
      const Arr mm = normal(c.param, 0.5, 0.5, 72), mv = xt::abs(normal(c.param, 1.5, 0.5, 73)) + 0.1;
      Tensor x = placeholder(float64, Shape(std::vector<std::int64_t>(c.shape.begin(), c.shape.end())), "x");
      Tensor training = placeholder(boolean, {}, "training");
      layers::BatchNormalization bn({.axis = c.axis, .fused = c.fused});
      Tensor y = mode == 0 ? bn(x, true) : mode == 1 ? bn(x, false) : bn(x, training);
      const FeedDict xs{{x, xv}, {bn.gamma(), gv}, {bn.beta(), bv}};
      FeedDict extra{{bn.moving_mean(), mm}, {bn.moving_variance(), mv}};
      if (mode < 2) {
        check_grad(y, xs, 1e-6, {.extra_feeds = extra});
      } else {
        extra.push_back({training, true});
        check_grad(y, xs, 1e-6, {.extra_feeds = extra});
        extra.back() = {training, false};
        check_grad(y, xs, 1e-6, {.extra_feeds = extra});
      }
    }
  }
  // Renorm at its first step (r = 1, d = 0 exactly), ghost batches, adjustment.
  Graph g;
  auto guard = g.as_default();
  const Arr xv = normal({4, 2, 3}, 1.0, 2.0, 80);
  Tensor x = placeholder(float64, {4, 2, 3}, "x");
  layers::BatchNormalization renorm({.renorm = true, .renorm_clipping = {.rmax = 3.0, .dmax = 1.0}});
  Tensor yr = renorm(x, true);
  FeedDict zero_state;
  for (const Variable& v : renorm.non_trainable_variables())
    zero_state.push_back({v, v.shape().rank() == 0 ? Array(0.0) : Array(Arr(xt::zeros<double>({3})))});
  zero_state.push_back({renorm.beta(), Arr{0.5, 0.0, -0.5}});
  check_grad(yr, {{x, xv}, {renorm.gamma(), Arr{1.5, 0.5, 2.0}}}, 1e-6, {.extra_feeds = zero_state});
  layers::BatchNormalization ghost({.virtual_batch_size = 2});
  Tensor yg = ghost(x, true);
  check_grad(yg, {{x, xv}, {ghost.gamma(), shaped(Arr{1.0, 2.0, 3.0}, {1, 1, 1, 3})}}, 1e-6,
             {.extra_feeds = {{ghost.beta(), shaped(Arr{0.0, 1.0, 0.0}, {1, 1, 1, 3})}}});
  layers::BatchNormalization adjusted({.adjustment = [](const Tensor& s) {
    return std::pair{cast(s, float64) * 0.0 + 2.0, ones_like(cast(s, float64))};
  }});
  Tensor ya = adjusted(x, true);  // built before its variables are read (argument order is unspecified)
  check_grad(ya, {{x, xv}, {adjusted.gamma(), Arr{1.0, 2.0, 3.0}}}, 1e-6,
             {.extra_feeds = {{adjusted.beta(), Arr{0.0, 1.0, 0.0}}}});
}

TEST_CASE("batch_norm.fused_op_gradients_first_and_second_order") {
  for (const char* format_name : {"NHWC", "NCHW"}) {
    const std::string format = format_name;
    for (const bool is_training : {true, false}) {
      CAPTURE(format);
      CAPTURE(is_training);
      Graph g;
      auto guard = g.as_default();
      const Dims shape = format == "NHWC" ? Dims{2, 2, 2, 3} : Dims{2, 3, 2, 2};
      const Shape s(std::vector<std::int64_t>(shape.begin(), shape.end()));
      const Arr xv = normal(shape, 1.0, 2.0, 90), dyv = normal(shape, 0.0, 1.0, 91);
      const Arr sv{1.5, -0.5, 2.0}, ov{0.1, 0.2, 0.3}, mv{0.5, -0.5, 1.0}, vv{1.5, 0.5, 2.5};
      Tensor x = placeholder(float64, s, "x"), dy = placeholder(float64, s, "dy");
      Tensor scale = placeholder(float64, {3}, "scale"), offset = placeholder(float64, {3}, "offset");
      Tensor mean = placeholder(float64, {3}, "mean"), variance = placeholder(float64, {3}, "variance");
      const auto o = is_training ? nn::fused_batch_norm(x, scale, offset, std::nullopt, std::nullopt, 1e-3, format)
                                 : nn::fused_batch_norm(x, scale, offset, mean, variance, 1e-3, format, false);
      const FeedDict stats_feeds{{mean, mv}, {variance, vv}};
      check_grad(o.y, {{x, xv}, {scale, sv}, {offset, ov}}, 1e-6, {.extra_feeds = stats_feeds});
      // Second order: FusedBatchNormGrad's gradient (composed ops).
      const auto grads = gradients({o.y}, {x, scale, offset}, {dy});
      REQUIRE(grads[0]);
      CHECK(grads[0]->op().type() == "FusedBatchNormGrad");
      FeedDict extra = stats_feeds;
      extra.push_back({offset, ov});
      for (int i = 0; i < 3; ++i) check_grad(*grads[static_cast<std::size_t>(i)], {{x, xv}, {dy, dyv}, {scale, sv}}, 1e-6, {.extra_feeds = extra});
      // A scalar function of all three outputs exercises every incoming second-order gradient.
      Tensor w = constant(Array(normal(shape, 0.0, 1.0, 92)));
      Tensor f = reduce_sum(*grads[0] * w) + reduce_sum(square(*grads[1])) + reduce_sum(*grads[2] * *grads[1]);
      check_grad(f, {{x, xv}, {dy, dyv}, {scale, sv}}, 1e-6, {.extra_feeds = extra});
    }
  }
  // float32 kernels.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 2, 2, 3}, "x");
  Tensor scale = placeholder(float32, {3}, "scale");
  const auto o = nn::fused_batch_norm(x, scale, zeros({3}));
  check_grad(o.y, {{x, f32(normal({2, 2, 2, 3}, 1.0, 2.0, 93))}, {scale, xt::xarray<float>{1.0f, 2.0f, 0.5f}}}, 2e-2,
             {.delta = 1e-3, .extra_feeds = {}});
}

TEST_CASE("batch_norm.fused_op_outputs_and_reserve_spaces") {
  // Per channel over M elements: biased statistics for y, var * M / (M - 1) as the variance output,
  // the saved mean and 1/sqrt(var + eps) as reserve spaces; inference passes mean/variance through.
  for (const char* format_name : {"NHWC", "NCHW"}) {
    const std::string format = format_name;
    CAPTURE(format);
    Graph g;
    auto guard = g.as_default();
    const Dims shape = format == "NHWC" ? Dims{2, 3, 2, 4} : Dims{2, 4, 3, 2};
    const Dims keep{format == "NHWC" ? 3u : 1u};
    const Arr xv = normal(shape, 3.0, 2.0, 121);
    const Arr sv{1.0, 2.0, -1.0, 0.5}, ov{0.0, 1.0, 2.0, 3.0};
    Arr sv_b = sv, ov_b = ov;
    Dims pshape(4, 1);
    pshape[keep[0]] = 4;
    sv_b.reshape(pshape);
    ov_b.reshape(pshape);
    Tensor x = placeholder(float64, Shape(std::vector<std::int64_t>(shape.begin(), shape.end())), "x");
    Tensor scale = constant(Array(sv)), offset = constant(Array(ov));
    const auto o = nn::fused_batch_norm(x, scale, offset, std::nullopt, std::nullopt, 1e-3, format);
    CHECK(o.y.op().type() == "FusedBatchNorm");
    CHECK(o.y.op().num_outputs() == 5);
    CHECK(o.batch_mean.shape() == Shape{4});
    Session sess;
    const auto r = sess.run({o.y, o.batch_mean, o.batch_variance, o.y.op().output(3), o.y.op().output(4)}, {{x, xv}});
    const Stats st = stats(xv, keep);
    const double m = 12;
    CHECK(approx_eq(r[0], normalized(xv, st, 1e-3) * sv_b + ov_b, 1e-12, 1e-12));
    CHECK(approx_eq(r[1], flat(st.mean), 1e-12, 1e-12));
    CHECK(approx_eq(r[2], flat(st.var) * (m / (m - 1)), 1e-12, 1e-12));
    CHECK(approx_eq(r[3], flat(st.mean), 1e-12, 1e-12));
    CHECK(approx_eq(r[4], 1.0 / xt::sqrt(flat(st.var) + 1e-3), 1e-12, 1e-12));
    const Arr mv{0.5, -0.5, 1.0, 2.0}, vv{1.5, 0.5, 2.5, 4.0};
    Arr mv_b = mv, vv_b = vv;
    mv_b.reshape(pshape);
    vv_b.reshape(pshape);
    const auto inf = nn::fused_batch_norm(x, scale, offset, constant(Array(mv)), constant(Array(vv)), 1e-3, format, false);
    const auto ri = sess.run({inf.y, inf.batch_mean, inf.batch_variance}, {{x, xv}});
    CHECK(approx_eq(ri[0], (xv - mv_b) / xt::sqrt(vv_b + 1e-3) * sv_b + ov_b, 1e-12, 1e-12));
    CHECK(approx_eq(ri[1], mv, 0, 0));
    CHECK(approx_eq(ri[2], vv, 0, 0));
  }
  // One element per channel: the Bessel factor is M / max(M - 1, 1) = 1, never a division by 0.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {1, 1, 1, 2}, "x");
  const auto o = nn::fused_batch_norm(x, ones({2}), zeros({2}));
  const auto r = Session().run({o.y, o.batch_variance}, {{x, f32(shaped(Arr{3.0, -1.0}, {1, 1, 1, 2}))}});
  CHECK(approx_eq(r[0], shaped(Arr{0.0, 0.0}, {1, 1, 1, 2}), 0, 0));
  CHECK(approx_eq(r[1], Arr{0.0, 0.0}, 0, 0));
}

TEST_CASE("batch_norm.epsilon_is_not_clamped") {
  // TF's fused path clamps epsilon to 1.001e-5 (for cuDNN); kiln does not, so both paths agree
  // with the formula even for a tiny epsilon and a tiny variance.
  Graph g;
  auto guard = g.as_default();
  const Arr xv = normal({4, 2, 2, 3}, 0.0, 1e-3, 131);
  Tensor x = placeholder(float64, {4, 2, 2, 3}, "x");
  Tensor yf = layers::batch_normalization(x, {.epsilon = 1e-8, .training = true, .fused = true});
  Tensor yc = layers::batch_normalization(x, {.epsilon = 1e-8, .training = true, .fused = false});
  Session sess;
  sess.run(global_variables_initializer());
  const Arr expected = normalized(xv, stats(xv, {3}), 1e-8);
  CHECK(approx_eq(sess.run(yf, {{x, xv}}), expected, 1e-9, 1e-9));
  CHECK(approx_eq(sess.run(yc, {{x, xv}}), expected, 1e-9, 1e-9));
}
