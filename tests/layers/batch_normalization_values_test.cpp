// layers::BatchNormalization's outputs and moving statistics against references in double: the
// moving averages and their gating, fused vs composed paths (the N/(N-1) factor), renorm, ghost
// batches, adjustment, several axes, and numerically hard inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include <kiln.hpp>

#include "tests/layers/batch_normalization_support.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using namespace kiln::testing::batch_norm;
using kiln::testing::contains;
using kiln::testing::message_of;

namespace {

Arr f64(const xt::xarray<float>& a) {
  Arr r = Arr::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = a.data()[i];
  return r;
}

bool all_finite(const Array& a) {
  const Arr d = a.to_double();
  return std::all_of(d.begin(), d.end(), [](double v) { return std::isfinite(v); });
}

}  // namespace

// ---------------------------------------------------------------- moving statistics

TEST_CASE("batch_norm.moving_statistics_converge_to_the_batch_statistics") {
  for (const bool fused : {false, true}) {
    CAPTURE(fused);
    Graph g;
    auto guard = g.as_default();
    const Arr xd = normal({4, 2, 2, 3}, 3.0, 2.0, 7);
    const xt::xarray<float> xv = f32(xd);
    const Stats s = stats(f64(xv), {3});
    const double n = 16, bessel = fused ? n / (n - 1) : 1.0;
    Tensor x = placeholder(float32, {4, 2, 2, 3}, "x");
    layers::BatchNormalization bn({.momentum = 0.9, .fused = fused});
    Tensor y_train = bn(x, true);
    Tensor y_infer = bn(x, false);
    CHECK(bn.fused() == fused);
    Session sess;
    sess.run(global_variables_initializer());
    for (int step = 0; step < 100; ++step) sess.run(bn.updates(), {{x, xv}});
    CHECK(approx_eq(sess.run(bn.moving_mean()), flat(s.mean), 0, 1e-2));
    CHECK(approx_eq(sess.run(bn.moving_variance()), flat(s.var) * bessel, 0, 1e-2));
    // Outputs: mean 0, std 1 per channel in training and, for the composed path, in inference.
    const Stats st = stats(sess.run(y_train, {{x, xv}}).to_double(), {3});
    CHECK(approx_eq(Array(st.mean), xt::zeros<double>({1, 1, 1, 3}), 0, 1e-5));
    CHECK(approx_eq(Array(xt::eval(xt::sqrt(st.var))), xt::ones<double>({1, 1, 1, 3}), 0, 1e-3));
    const Stats si = stats(sess.run(y_infer, {{x, xv}}).to_double(), {3});
    CHECK(approx_eq(Array(si.mean), xt::zeros<double>({1, 1, 1, 3}), 0, 1e-2));
    // The fused moving variance carries N/(N-1): std sqrt((N-1)/N) in inference (TF's behaviour).
    CHECK(approx_eq(Array(xt::eval(xt::sqrt(si.var))), xt::ones<double>({1, 1, 1, 3}) / std::sqrt(bessel), 0, 1e-2));
  }
}

TEST_CASE("batch_norm.placeholder_gating_leaves_moving_statistics_bit_identical") {
  for (const bool fused : {false, true}) {
    CAPTURE(fused);
    Graph g;
    auto guard = g.as_default();
    const xt::xarray<float> xv = f32(normal({2, 2, 2, 3}, 1.0, 2.0, 3));
    Tensor x = placeholder(float32, {2, 2, 2, 3}, "x");
    Tensor training = placeholder(boolean, {}, "training");
    layers::BatchNormalization bn({.moving_mean_initializer = initializers::constant(0.25),
                                   .moving_variance_initializer = initializers::constant(1.5),
                                   .fused = fused});
    Tensor y = bn(x, training);
    REQUIRE(bn.updates().size() == 2);
    CHECK(get_collection(GraphKeys::UPDATE_OPS) == bn.updates());
    CHECK(has_op_type(g, "Switch"));
    Session sess;
    sess.run(global_variables_initializer());
    const Array mm0 = sess.run(bn.moving_mean()), mv0 = sess.run(bn.moving_variance());
    for (int i = 0; i < 3; ++i) {
      auto out = sess.run({y, bn.updates()[0], bn.updates()[1]}, {{x, xv}, {training, false}});
      CHECK(approx_eq(out[0], (f64(xv) - 0.25) / std::sqrt(1.5 + kEps), 1e-5, 1e-5));
    }
    CHECK(sess.run(bn.moving_mean()).as<float>() == mm0.as<float>());
    CHECK(sess.run(bn.moving_variance()).as<float>() == mv0.as<float>());
    // Fed true: training statistics and one update step.
    const Stats s = stats(f64(xv), {3});
    const Arr y_true = sess.run({y, bn.updates()[0], bn.updates()[1]}, {{x, xv}, {training, true}})[0].to_double();
    CHECK(approx_eq(Array(y_true), normalized(f64(xv), s, kEps), 1e-4, 1e-4));
    const double bessel = fused ? 8.0 / 7.0 : 1.0;
    CHECK(approx_eq(sess.run(bn.moving_mean()), 0.25 - (0.25 - flat(s.mean)) * 0.01, 1e-5, 1e-6));
    CHECK(approx_eq(sess.run(bn.moving_variance()), 1.5 - (1.5 - flat(s.var) * bessel) * 0.01, 1e-5, 1e-6));
  }
}

// ---------------------------------------------------------------- fused vs composed

TEST_CASE("batch_norm.fused_and_composed_paths_agree") {
  struct Case {
    int axis;
    Dims shape;
    std::string format;
  };
  for (const Case& c : {Case{3, {3, 2, 2, 4}, "NHWC"}, Case{1, {3, 4, 2, 2}, "NCHW"}}) {
    CAPTURE(c.format);
    for (const DType dtype : {float64, float32}) {
      CAPTURE(dtype);
      Graph g;
      auto guard = g.as_default();
      const Arr xd = normal(c.shape, -1.0, 2.5, 11);
      const Array xv = dtype == float64 ? Array(xd) : Array(f32(xd));
      const Shape shape(std::vector<std::int64_t>(c.shape.begin(), c.shape.end()));
      Tensor x = placeholder(dtype, shape, "x");
      const auto gamma_init = initializers::random_normal(1.0, 0.5, 5);
      const auto beta_init = initializers::random_normal(0.0, 0.5, 6);
      layers::BatchNormalization fused({.axis = c.axis, .momentum = 0.0, .beta_initializer = beta_init,
                                        .gamma_initializer = gamma_init, .fused = true});
      layers::BatchNormalization composed({.axis = c.axis, .momentum = 0.0, .beta_initializer = beta_init,
                                           .gamma_initializer = gamma_init, .fused = false});
      Tensor yf = fused(x, true), yc = composed(x, true);
      CHECK(fused.fused());
      CHECK_FALSE(composed.fused());
      Session sess;
      sess.run(global_variables_initializer());
      const double tol = dtype == float64 ? 1e-12 : 1e-5;
      auto rf = sess.run({yf, fused.updates()[0], fused.updates()[1]}, {{x, xv}});
      auto rc = sess.run({yc, composed.updates()[0], composed.updates()[1]}, {{x, xv}});
      CHECK(approx_eq(sess.run(fused.gamma()), sess.run(composed.gamma()).to_double(), 0, 0));
      CHECK(approx_eq(rf[0], rc[0].to_double(), tol, tol));
      CHECK(approx_eq(sess.run(fused.moving_mean()), sess.run(composed.moving_mean()).to_double(), tol, tol));
      // momentum 0: the moving variance is the batch variance, Bessel-corrected on the fused path.
      const double n = 12;
      CHECK(approx_eq(sess.run(fused.moving_variance()), sess.run(composed.moving_variance()).to_double() * (n / (n - 1)),
                     tol, tol));
      // Inference with equal moving statistics agrees too.
      Tensor yfi = fused(x, false), yci = composed(x, false);
      CHECK(approx_eq(sess.run(yfi, {{x, xv}, {fused.moving_variance(), sess.run(composed.moving_variance())}}),
                     sess.run(yci, {{x, xv}}).to_double(), tol, tol));
    }
  }
}

TEST_CASE("batch_norm.fused_selection_and_explicit_fused_errors") {
  Graph g;
  auto guard = g.as_default();
  Tensor x4 = placeholder(float32, {2, 3, 4, 5}, "x4");
  Tensor x3 = placeholder(float32, {2, 3, 4}, "x3");
  const auto fused_error = [&](const Tensor& x, layers::BatchNormalizationOptions o) {
    o.fused = true;
    return message_of<ValueError>([&] { layers::batch_normalization(x, o); });
  };
  CHECK(contains(fused_error(x4, {.name = "a", .renorm = true}), "renorm"));
  CHECK(contains(fused_error(x4, {.name = "a", .renorm = true}), "layer 'a'"));
  CHECK(contains(fused_error(x3, {.name = "b"}), "rank 3"));
  CHECK(contains(fused_error(x4, {.axis = 2, .name = "c"}), "axis [2]"));
  CHECK(contains(fused_error(x4, {.axis = {1, 3}, .name = "d"}), "axis [1, 3]"));
  CHECK(contains(fused_error(x4, {.name = "e", .virtual_batch_size = 2}), "virtual_batch_size"));
  CHECK(contains(fused_error(x4, {.name = "f", .adjustment = [](const Tensor& s) {
                                    return std::pair{ones_like(s), zeros_like(s)};
                                  }}),
                 "adjustment"));
  CHECK(contains(fused_error(x4, {.name = "g", .renorm = true}), "fused batch normalization cannot be used"));
  // Auto selection: fused exactly when it applies.
  layers::BatchNormalization auto3({.axis = 2});
  auto3(x4, true);
  CHECK_FALSE(auto3.fused());
  layers::BatchNormalization nchw({.axis = 1});
  nchw(x4, true);
  CHECK(nchw.fused());
  layers::BatchNormalization off({.fused = false});
  off(x4, true);
  CHECK_FALSE(off.fused());
}

// ---------------------------------------------------------------- renorm

TEST_CASE("batch_norm.renorm_first_step_equals_plain_batch_norm") {
  Graph g;
  auto guard = g.as_default();
  const Arr xv = normal({6, 3}, 2.0, 1.5, 21);
  Tensor x = placeholder(float64, {6, 3}, "x");
  layers::BatchNormalization renorm({.renorm = true});
  layers::BatchNormalization plain;
  Tensor yr = renorm(x, true), yp = plain(x, true);
  CHECK(renorm.variables().size() == 8);
  CHECK(renorm.variables()[4].name() == "batch_normalization/renorm_mean:0");
  CHECK(renorm.variables()[5].name() == "batch_normalization/renorm_mean_weight:0");
  CHECK(renorm.variables()[6].name() == "batch_normalization/renorm_stddev:0");
  CHECK(renorm.variables()[7].name() == "batch_normalization/renorm_stddev_weight:0");
  CHECK(renorm.renorm_mean_weight().shape() == Shape{});
  CHECK(renorm.non_trainable_variables().size() == 6);
  CHECK(renorm.updates().size() == 2);
  CHECK_FALSE(renorm.fused());
  Session sess;
  sess.run(global_variables_initializer());
  auto rr = sess.run({yr, renorm.updates()[0], renorm.updates()[1]}, {{x, xv}});
  auto rp = sess.run({yp, plain.updates()[0], plain.updates()[1]}, {{x, xv}});
  CHECK(approx_eq(rr[0], rp[0].to_double(), 1e-12, 1e-12));
  CHECK(approx_eq(sess.run(renorm.moving_mean()), sess.run(plain.moving_mean()).to_double(), 1e-12, 1e-12));
  CHECK(approx_eq(sess.run(renorm.moving_variance()), sess.run(plain.moving_variance()).to_double(), 1e-10, 1e-10));
}

TEST_CASE("batch_norm.renorm_matches_a_hand_computed_reference_with_clipping") {
  // Reference: BATCH_NORM.md section 4, step by step in double. Batches drift in mean and scale so
  // that r and d hit the clipping bounds.
  const double momentum = 0.5, renorm_momentum = 0.6, rmax = 1.1, rmin = 0.875, dmax = 0.2;  // rmin exact in float32
  const std::size_t n = 5, c = 3;
  for (const bool gated : {false, true}) {
    CAPTURE(gated);
    Graph g;
    auto guard = g.as_default();
    Tensor x = placeholder(float64, {static_cast<std::int64_t>(n), static_cast<std::int64_t>(c)}, "x");
    Tensor training = placeholder(boolean, {}, "training");
    Tensor rmin_t = placeholder(float32, {}, "rmin");  // a tensor bound (cast to the layer's dtype)
    layers::BatchNormalization bn({.momentum = momentum,
                                   .renorm = true,
                                   .renorm_clipping = {.rmax = rmax, .rmin = rmin_t, .dmax = dmax},
                                   .renorm_momentum = renorm_momentum});
    Tensor y = gated ? bn(x, training) : bn(x, true);
    Session sess;
    sess.run(global_variables_initializer());
    Arr rm = xt::zeros<double>({c}), rs = xt::zeros<double>({c}), mm = xt::zeros<double>({c});
    Arr mv = xt::ones<double>({c});
    double rw = 0, sw = 0;
    for (int step = 0; step < 5; ++step) {
      CAPTURE(step);
      Arr xv = normal({n, c}, 0.0, 1.0, 100 + static_cast<unsigned>(step));
      for (std::size_t j = 0; j < c; ++j)
        xt::view(xv, xt::all(), j) = xt::view(xv, xt::all(), j) * (1.0 + 0.4 * step * (j + 1)) + 0.7 * step * (j + 1.0);
      const Stats s = stats(xv, {1});
      const Arr mu = flat(s.mean), sd = xt::sqrt(flat(s.var) + kEps);
      const Arr mix_m = rm + (1 - rw) * mu, mix_s = rs + (1 - sw) * sd;
      const Arr r = xt::clip(sd / mix_s, rmin, rmax), d = xt::clip((mu - mix_m) / mix_s, -dmax, dmax);
      const Arr expected = normalized(xv, s, kEps) * r + d;
      FeedDict feeds{{x, xv}, {rmin_t, static_cast<float>(rmin)}};
      if (gated) {  // a step fed false first: inference, and nothing moves
        feeds.push_back({training, false});
        const Arr yi = sess.run({y, bn.updates()[0], bn.updates()[1]}, feeds)[0].to_double();
        CHECK(approx_eq(Array(yi), (xv - mm) / xt::sqrt(mv + kEps), 1e-10, 1e-10));
        feeds.back() = {training, true};
      }
      const auto out = sess.run({y, bn.updates()[0], bn.updates()[1]}, feeds);
      CHECK(approx_eq(out[0], expected, 1e-10, 1e-10));
      rm = rm - (rm - mu) * (1 - renorm_momentum);
      rw = rw - (rw - 1) * (1 - renorm_momentum);
      rs = rs - (rs - sd) * (1 - renorm_momentum);
      sw = sw - (sw - 1) * (1 - renorm_momentum);
      mm = mm - (mm - rm / rw) * (1 - momentum);
      mv = mv - (mv - (xt::square(rs / sw) - kEps)) * (1 - momentum);
      CHECK(approx_eq(sess.run(bn.renorm_mean()), rm, 1e-10, 1e-10));
      CHECK(sess.run(bn.renorm_mean_weight()).scalar<double>() == doctest::Approx(rw).epsilon(1e-12));
      CHECK(approx_eq(sess.run(bn.renorm_stddev()), rs, 1e-10, 1e-10));
      CHECK(sess.run(bn.renorm_stddev_weight()).scalar<double>() == doctest::Approx(sw).epsilon(1e-12));
      CHECK(approx_eq(sess.run(bn.moving_mean()), mm, 1e-10, 1e-10));
      CHECK(approx_eq(sess.run(bn.moving_variance()), mv, 1e-10, 1e-10));
    }
  }
}

// ---------------------------------------------------------------- virtual batches, adjustment

TEST_CASE("batch_norm.ghost_batches_normalize_strided_groups") {
  // [6, 2, 2, 3] with virtual_batch_size 2: G = 3 groups, group j = rows {j, j + 3}.
  Graph g;
  auto guard = g.as_default();
  const Arr xv = normal({6, 2, 2, 3}, 1.0, 2.0, 31);
  Tensor x = placeholder(float64, {6, 2, 2, 3}, "x");
  Tensor training = placeholder(boolean, {}, "training");
  layers::BatchNormalization bn({.momentum = 0.0, .virtual_batch_size = 2});
  Tensor y = bn(x, true);
  Tensor yp = bn(x, training);
  CHECK(bn.gamma().shape() == Shape{1, 1, 1, 1, 3});
  CHECK(bn.moving_mean().shape() == Shape{1, 1, 1, 1, 3});
  CHECK(bn.axis() == std::vector<int>{4});
  CHECK_FALSE(bn.fused());
  CHECK(y.shape() == Shape{6, 2, 2, 3});
  Arr expected = Arr::from_shape({6, 2, 2, 3});
  Arr mean_sum = xt::zeros<double>({3}), var_sum = xt::zeros<double>({3});
  for (std::size_t j = 0; j < 3; ++j) {
    Arr group = Arr::from_shape({2, 2, 2, 3});
    xt::view(group, 0) = xt::view(xv, j);
    xt::view(group, 1) = xt::view(xv, j + 3);
    const Stats s = stats(group, {3});
    const Arr ny = normalized(group, s, kEps);
    xt::view(expected, j) = xt::view(ny, 0);
    xt::view(expected, j + 3) = xt::view(ny, 1);
    mean_sum += flat(s.mean);
    var_sum += flat(s.var);
  }
  Session sess;
  sess.run(global_variables_initializer());
  auto out = sess.run({y, bn.updates()[0], bn.updates()[1]}, {{x, xv}});
  CHECK(approx_eq(out[0], expected, 1e-10, 1e-10));
  Arr mm = mean_sum / 3.0, mv = var_sum / 3.0;
  mm.reshape({1, 1, 1, 1, 3});
  mv.reshape({1, 1, 1, 1, 3});
  CHECK(approx_eq(sess.run(bn.moving_mean()), mm, 1e-10, 1e-10));
  CHECK(approx_eq(sess.run(bn.moving_variance()), mv, 1e-10, 1e-10));
  // The gated call: training fed true is the same normalization; false uses the moving statistics.
  CHECK(approx_eq(sess.run(yp, {{x, xv}, {training, true}}), expected, 1e-10, 1e-10));
  Arr mm4 = mm, mv4 = mv;
  mm4.reshape({1, 1, 1, 3});
  mv4.reshape({1, 1, 1, 3});
  CHECK(approx_eq(sess.run(yp, {{x, xv}, {training, false}}), (xv - mm4) / xt::sqrt(mv4 + kEps), 1e-10, 1e-10));

  // Unknown batch size: checked at run time, the error names the layer.
  Tensor xu = placeholder(float64, {-1, 2, 2, 3}, "xu");
  Tensor yu = layers::batch_normalization(xu, {.training = true, .name = "ghost", .virtual_batch_size = 2});
  CHECK(yu.shape() == Shape{-1, 2, 2, 3});
  sess.run(global_variables_initializer());
  CHECK(approx_eq(sess.run(yu, {{xu, xv}}), expected, 1e-10, 1e-10));
  const Arr five = xt::view(xv, xt::range(0, 5));
  CHECK(contains(message_of<InvalidArgumentError>([&] { sess.run(yu, {{xu, five}}); }), "ghost/"));
}

TEST_CASE("batch_norm.adjustment_applies_in_training_only") {
  Graph g;
  auto guard = g.as_default();
  const Arr xv = normal({4, 3}, 1.0, 2.0, 41);
  Tensor x = placeholder(float64, {4, 3}, "x");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor seen_shape;
  const Arr adj_scale{0.5, 2.0, -1.0}, adj_bias{0.1, -0.2, 0.3};
  layers::BatchNormalization bn({.beta_initializer = initializers::constant(0.25),
                                 .gamma_initializer = initializers::constant(3.0),
                                 .adjustment = [&](const Tensor& s) {
                                   seen_shape = s;
                                   return std::pair{constant(Array(adj_scale)), constant(Array(adj_bias))};
                                 }});
  Tensor y = bn(x, true);
  Tensor yp = bn(x, training);
  CHECK_FALSE(bn.fused());
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(seen_shape, {{x, xv}}).to_double() == Arr{4, 3});
  const Arr expected = (normalized(xv, stats(xv, {1}), kEps) * adj_scale + adj_bias) * 3.0 + 0.25;
  CHECK(approx_eq(sess.run(y, {{x, xv}}), expected, 1e-10, 1e-10));
  CHECK(approx_eq(sess.run(yp, {{x, xv}, {training, true}}), expected, 1e-10, 1e-10));
  CHECK(approx_eq(sess.run(yp, {{x, xv}, {training, false}}), xv / std::sqrt(1 + kEps) * 3.0 + 0.25, 1e-10, 1e-10));
}

TEST_CASE("batch_norm.several_axes_and_a_leading_axis") {
  Graph g;
  auto guard = g.as_default();
  const Arr xv = normal({2, 3, 4, 2}, 0.5, 1.5, 51);
  Tensor x = placeholder(float64, {2, 3, 4, 2}, "x");
  layers::BatchNormalization multi({.axis = {1, 2}, .momentum = 0.0});
  Tensor y = multi(x, true);
  const Arr x2v = normal({4, 3}, 0.5, 1.5, 52);
  Tensor x2 = placeholder(float64, {4, 3}, "x2");
  layers::BatchNormalization first({.axis = 0});
  Tensor y2 = first(x2, true);
  CHECK(first.gamma().shape() == Shape{4});
  Session sess;
  sess.run(global_variables_initializer());
  const Stats s = stats(xv, {1, 2});
  auto out = sess.run({y, multi.updates()[0], multi.updates()[1], y2}, {{x, xv}, {x2, x2v}});
  CHECK(approx_eq(out[0], normalized(xv, s, kEps), 1e-10, 1e-10));
  CHECK(approx_eq(sess.run(multi.moving_variance()), s.var, 1e-10, 1e-10));
  CHECK(approx_eq(out[3], normalized(x2v, stats(x2v, {0}), kEps), 1e-10, 1e-10));
}

// ---------------------------------------------------------------- numerically hard inputs

TEST_CASE("batch_norm.large_offset_float32_keeps_the_variance") {
  for (const bool fused : {false, true}) {
    CAPTURE(fused);
    Graph g;
    auto guard = g.as_default();
    const xt::xarray<float> xv = f32(normal({8, 2, 2, 3}, 1e4, 1.0, 101));
    const Stats s = stats(f64(xv), {3});
    Tensor x = placeholder(float32, {8, 2, 2, 3}, "x");
    layers::BatchNormalization bn({.momentum = 0.0, .fused = fused});
    Tensor y = bn(x, true);
    Session sess;
    sess.run(global_variables_initializer());
    auto out = sess.run({y, bn.updates()[0], bn.updates()[1]}, {{x, xv}});
    const double bessel = fused ? 32.0 / 31.0 : 1.0;
    CHECK(approx_eq(sess.run(bn.moving_variance()), flat(s.var) * bessel, 1e-2, 0));
    CHECK(approx_eq(sess.run(bn.moving_mean()), flat(s.mean), 1e-6, 0));
    CHECK(approx_eq(out[0], normalized(f64(xv), s, kEps), 0, fused ? 1e-3 : 1e-2));
  }
}

TEST_CASE("batch_norm.one_value_per_channel_gives_no_nan") {
  for (const bool fused : {false, true}) {
    CAPTURE(fused);
    Graph g;
    auto guard = g.as_default();
    Tensor x = placeholder(float32, {1, 1, 1, 3}, "x");
    Tensor training = placeholder(boolean, {}, "training");
    layers::BatchNormalization bn({.beta_initializer = initializers::constant(0.5), .fused = fused});
    Tensor y = bn(x, true);
    Tensor yp = bn(x, training);
    const auto grads = gradients({reduce_sum(y * y + y), reduce_sum(yp)}, {x, bn.gamma(), bn.beta()});
    const xt::xarray<float> xv = f32(shaped(Arr{1.0, -2.0, 3.0}, {1, 1, 1, 3}));
    Session sess;
    sess.run(global_variables_initializer());
    const FeedDict feeds{{x, xv}, {training, true}};
    auto out = sess.run({y, yp, *grads[0], *grads[1], *grads[2], bn.updates()[0], bn.updates()[1]}, feeds);
    for (const auto& a : out)
      if (!a.empty()) CHECK(all_finite(a));
    CHECK(approx_eq(out[0], shaped(Arr{0.5, 0.5, 0.5}, {1, 1, 1, 3}), 0, 1e-6));
    CHECK(all_finite(sess.run(bn.moving_variance())));
    CHECK(all_finite(sess.run(bn.moving_mean())));
  }
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {1, 3}, "x");
  Tensor y = layers::batch_normalization(x, {.training = true, .renorm = true});
  const auto grads = gradients(y, {x});
  Session sess;
  sess.run(global_variables_initializer());
  const auto out = sess.run({y, *grads[0], get_collection(GraphKeys::UPDATE_OPS)[1]}, {{x, xt::xarray<float>{{1.0f, 2.0f, 3.0f}}}});
  CHECK(all_finite(out[0]));
  CHECK(all_finite(out[1]));
  CHECK(all_finite(out[2]));
}
