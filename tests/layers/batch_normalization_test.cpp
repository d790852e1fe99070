// layers::BatchNormalization against ../shared/BATCH_NORM.md: variables and collections, update
// ops and their gating, fused vs composed paths (incl. the N/(N-1) factor), renorm (first step and
// a hand-computed multi-step reference with clipping), ghost batches, adjustment, argument errors,
// reuse, gradients of both paths against finite differences (float64), and numerically hard
// inputs. References are computed in double in this file from the batch-norm formulas of
// BATCH_NORM.md sections 2-5 (no external source).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include <xtensor/xview.hpp>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/graph_state.hpp"


using namespace kiln;
using kiln::testing::check_grad;

namespace {

using Arr = xt::xarray<double>;
using Dims = std::vector<std::size_t>;

using kiln::testing::message_of;

// kiln::testing::allclose under a name that argument-dependent lookup cannot confuse with
// xt::allclose when the expected value is an xtensor expression.
bool approx_eq(const Array& actual, const Arr& expected, double rtol, double atol) {
  return kiln::testing::allclose(actual, expected, rtol, atol);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Arr normal(const Dims& shape, double mean, double sd, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(mean, sd);
  Arr a = Arr::from_shape(shape);
  for (auto& v : a) v = n(rng);
  return a;
}

xt::xarray<float> f32(const Arr& a) {
  xt::xarray<float> r = xt::xarray<float>::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = static_cast<float>(a.data()[i]);
  return r;
}
Arr f64(const xt::xarray<float>& a) {
  Arr r = Arr::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = a.data()[i];
  return r;
}

// Mean and biased variance over every axis but `keep`, with the reduced axes kept as size 1.
struct Stats {
  Arr mean, var;
};
Stats stats(const Arr& x, const Dims& keep) {
  const auto& sh = x.shape();
  Dims ks(sh.size(), 1);
  for (auto k : keep) ks[k] = sh[k];
  Stats s{xt::zeros<double>(ks), xt::zeros<double>(ks)};
  const auto key = [&](std::size_t i) {
    Dims idx(sh.size());
    for (std::size_t d = sh.size(); d-- > 0;) idx[d] = i % sh[d], i /= sh[d];
    std::size_t k = 0;
    for (std::size_t d = 0; d < sh.size(); ++d) k = k * ks[d] + (ks[d] == 1 ? 0 : idx[d]);
    return k;
  };
  const double per = static_cast<double>(x.size() / s.mean.size());
  for (std::size_t i = 0; i < x.size(); ++i) s.mean.data()[key(i)] += x.data()[i] / per;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = x.data()[i] - s.mean.data()[key(i)];
    s.var.data()[key(i)] += d * d / per;
  }
  return s;
}
Arr normalized(const Arr& x, const Stats& s, double eps) { return (x - s.mean) / xt::sqrt(s.var + eps); }
Arr shaped(Arr a, const Dims& shape) {
  a.reshape(shape);
  return a;
}
Arr flat(Arr a) {
  a.reshape({a.size()});
  return a;
}

bool all_finite(const Array& a) {
  const Arr d = a.to_double();
  return std::all_of(d.begin(), d.end(), [](double v) { return std::isfinite(v); });
}

bool has_op_type(const Graph& g, const std::string& type) {
  for (const auto& op : g.operations())
    if (op.type() == type) return true;
  return false;
}

std::vector<std::string> names(const std::vector<Variable>& vs) {
  std::vector<std::string> r;
  for (auto& v : vs) r.push_back(v.name());
  return r;
}

constexpr double kEps = 1e-3;

}  // namespace

// ---------------------------------------------------------------- variables and collections

TEST_CASE("batch_norm.variables_names_order_shapes_and_collections") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3, 3, 4}, "x");
  layers::BatchNormalization bn;
  CHECK_FALSE(bn.gamma().valid());
  bn(x, true);
  CHECK(names(bn.variables()) == std::vector<std::string>{"batch_normalization/gamma:0", "batch_normalization/beta:0",
                                                          "batch_normalization/moving_mean:0",
                                                          "batch_normalization/moving_variance:0"});
  CHECK(bn.gamma().shape() == Shape{4});
  CHECK(bn.moving_variance().shape() == Shape{4});
  CHECK(bn.gamma().dtype() == float32);
  CHECK(global_variables() == bn.variables());
  CHECK(trainable_variables() == bn.trainable_variables());
  CHECK(bn.trainable_variables() == std::vector<Variable>{bn.gamma(), bn.beta()});
  CHECK(bn.non_trainable_variables() == std::vector<Variable>{bn.moving_mean(), bn.moving_variance()});
  CHECK(g.get_tensor_by_name("batch_normalization/moving_variance:0") == bn.moving_variance().value());
  CHECK(bn.fused());
  CHECK(bn.axis() == std::vector<int>{3});

  // A second unnamed layer gets new variables; a float64 input gives float64 variables.
  Tensor x64 = placeholder(float64, {5, 2}, "x64");
  layers::batch_normalization(x64, {.training = true});
  CHECK(g.get_tensor_by_name("batch_normalization_1/gamma:0").dtype() == float64);
  CHECK(global_variables().size() == 8);

  // Several axes: the input's rank, normalized sizes kept, 1 elsewhere.
  Tensor x4 = placeholder(float32, {2, 3, 4, 5}, "x4");
  layers::BatchNormalization multi({.axis = {1, 2}});
  multi(x4, true);
  CHECK(multi.gamma().shape() == Shape{1, 3, 4, 1});
  CHECK(multi.moving_mean().shape() == Shape{1, 3, 4, 1});
  CHECK_FALSE(multi.fused());
  // A one-element list is a single axis; negative axes count from the end.
  layers::BatchNormalization one({.axis = {-3}});
  one(x4, true);
  CHECK(one.gamma().shape() == Shape{3});
  CHECK(one.axis() == std::vector<int>{1});
  CHECK(one.fused());
}

TEST_CASE("batch_norm.updates_collection_order_and_repeated_calls") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4, 3}, "x");
  Tensor x2 = placeholder(float32, {6, 3}, "x2");
  Tensor training = placeholder(boolean, {}, "training");
  layers::BatchNormalization bn;
  bn(x, true);
  CHECK(bn.updates().size() == 2);
  CHECK(get_collection(GraphKeys::UPDATE_OPS) == bn.updates());
  bn(x2, training);  // shares the variables, appends two gated updates
  CHECK(bn.updates().size() == 4);
  CHECK(bn.variables().size() == 4);
  CHECK(global_variables().size() == 4);
  CHECK(get_collection(GraphKeys::UPDATE_OPS) == bn.updates());
  bn(x2, false);  // inference: no more updates
  CHECK(bn.updates().size() == 4);
  layers::BatchNormalization other;
  other(x, true);
  auto expected = bn.updates();
  expected.insert(expected.end(), other.updates().begin(), other.updates().end());
  CHECK(get_collection(GraphKeys::UPDATE_OPS) == expected);
  CHECK(get_collection(GraphKeys::TRAINABLE_VARIABLES).size() == 4);
}

TEST_CASE("batch_norm.training_false_is_inference_without_update_ops") {
  for (const bool fused : {false, true}) {
    Graph g;
    auto guard = g.as_default();
    const Arr xv = normal({2, 2, 2, 3}, 2.0, 3.0, 1);
    Tensor x = placeholder(float64, {2, 2, 2, 3}, "x");
    Tensor y = layers::batch_normalization(x, {.moving_mean_initializer = initializers::constant(0.5),
                                               .moving_variance_initializer = initializers::constant(4.0),
                                               .fused = fused});
    CHECK(get_collection(GraphKeys::UPDATE_OPS).empty());
    CHECK(has_op_type(g, "FusedBatchNorm") == fused);
    CHECK_FALSE(has_op_type(g, "Switch"));
    Session sess;
    sess.run(global_variables_initializer());
    CHECK(approx_eq(sess.run(y, {{x, xv}}), (xv - 0.5) / std::sqrt(4.0 + kEps), 1e-12, 1e-12));
  }
}

TEST_CASE("batch_norm.constant_training_tensor_counts_as_its_value") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4, 3}, "x");
  layers::batch_normalization(x, {.training = constant(Array(false))});
  CHECK(get_collection(GraphKeys::UPDATE_OPS).empty());
  layers::batch_normalization(x, {.training = constant(Array(true))});
  CHECK(get_collection(GraphKeys::UPDATE_OPS).size() == 2);
  CHECK_FALSE(has_op_type(g, "Switch"));  // no cond: decided while building
}

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

// ---------------------------------------------------------------- center, scale, regularizers

TEST_CASE("batch_norm.center_and_scale_off") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2, 2, 2, 3}, "x");
  layers::BatchNormalization no_center({.center = false});
  no_center(x, true);
  CHECK(no_center.variables().size() == 3);
  CHECK(no_center.trainable_variables() == std::vector<Variable>{no_center.gamma()});
  CHECK(no_center.non_trainable_variables().size() == 2);
  CHECK_FALSE(no_center.beta().valid());
  layers::BatchNormalization no_scale({.scale = false});
  no_scale(x, true);
  CHECK(no_scale.variables().size() == 3);
  CHECK(no_scale.trainable_variables() == std::vector<Variable>{no_scale.beta()});
  CHECK_FALSE(no_scale.gamma().valid());
  const Arr xv = normal({2, 2, 2, 3}, 1.0, 2.0, 4);
  const Arr expected = normalized(xv, stats(xv, {3}), kEps);
  for (const bool fused : {false, true}) {
    layers::BatchNormalization none({.center = false, .scale = false, .fused = fused});
    Tensor y = none(x, true);
    Tensor training = placeholder(boolean, {}, "training");
    Tensor yp = none(x, training);
    CHECK(none.variables().size() == 2);
    CHECK(none.trainable_variables().empty());
    Session sess;
    sess.run(global_variables_initializer());
    CHECK(approx_eq(sess.run(y, {{x, xv}}), expected, 1e-10, 1e-10));
    CHECK(approx_eq(sess.run(yp, {{x, xv}, {training, true}}), expected, 1e-10, 1e-10));
    CHECK(approx_eq(sess.run(yp, {{x, xv}, {training, false}}), xv / std::sqrt(1 + kEps), 1e-10, 1e-10));
  }
}

TEST_CASE("batch_norm.trainable_false_and_constraints") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {4, 3}, "x");
  const TensorFn zero_it = [](const Tensor& w) { return w * 0.0; };
  layers::BatchNormalization bn({.gamma_constraint = zero_it, .trainable = false});
  Tensor y = bn(x, true);
  CHECK(bn.trainable_variables().empty());
  CHECK(trainable_variables().empty());
  CHECK(bool(bn.gamma().constraint()));
  CHECK_FALSE(bool(bn.beta().constraint()));
  // Constraints are the optimizer's business: the forward pass ignores them.
  const Arr xv = normal({4, 3}, 0.0, 1.0, 9);
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(approx_eq(sess.run(y, {{x, xv}}), normalized(xv, stats(xv, {1}), kEps), 1e-10, 1e-10));
}

TEST_CASE("batch_norm.regularizer_losses_are_created_once") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4, 3}, "x");
  const TensorFn l2 = [](const Tensor& w) { return reduce_sum(square(w)) * 0.5; };
  layers::BatchNormalization bn({.beta_initializer = initializers::constant(2.0),
                                 .beta_regularizer = l2,
                                 .gamma_regularizer = l2,
                                 .name = "bn"});
  bn(x, true);
  bn(x, false);
  REQUIRE(bn.losses().size() == 2);
  layers::batch_normalization(x, {.beta_regularizer = l2, .gamma_regularizer = l2, .name = "bn", .reuse = Reuse::reuse});
  const auto losses = get_collection(GraphKeys::REGULARIZATION_LOSSES);
  REQUIRE(losses.size() == 2);
  CHECK(losses[0].as_tensor() == bn.losses()[0]);  // gamma's first: creation order
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(bn.losses()[0]).scalar<float>() == doctest::Approx(1.5));
  CHECK(sess.run(bn.losses()[1]).scalar<float>() == doctest::Approx(6.0));
}

// ---------------------------------------------------------------- scopes, reuse, errors

TEST_CASE("batch_norm.reuse_and_name_collisions") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4, 3}, "x");
  Tensor y1 = layers::batch_normalization(x, {.training = true, .name = "bn"});
  const auto before = global_variables().size();
  Tensor y2 = layers::batch_normalization(x, {.training = true, .name = "bn", .reuse = Reuse::reuse});
  CHECK(global_variables().size() == before);
  CHECK(contains(y1.name(), "bn/"));
  CHECK(y2.name().rfind("bn_1/", 0) == 0);  // ops made unique apart from the variables
  CHECK(contains(message_of<ValueError>([&] { layers::batch_normalization(x, {.name = "bn"}); }),
                 "Variable bn/gamma already exists, disallowed. Did you mean to set reuse=true or reuse=auto_reuse "
                 "in VarScope?"));
  CHECK(contains(message_of<ValueError>([&] { layers::batch_normalization(x, {.name = "bn2", .reuse = Reuse::reuse}); }),
                 "Variable bn2/gamma does not exist, or was not created with get_variable()"));
  // The moving-average assign of the reusing call targets bn/moving_mean.
  const auto updates = get_collection(GraphKeys::UPDATE_OPS);
  REQUIRE(updates.size() == 4);
  CHECK(updates[2].op().inputs()[0] == g.get_tensor_by_name("bn/moving_mean:0"));

  // Re-entering a scope with reuse rebuilds the same unnamed names.
  {
    variable_scope vs("scope");
    layers::batch_normalization(x, {.training = true});
  }
  const auto count = global_variables().size();
  {
    variable_scope vs("scope", {.reuse = Reuse::reuse});
    layers::BatchNormalization again;
    again(x, true);
    CHECK(again.gamma().name() == "scope/batch_normalization/gamma:0");
  }
  CHECK(global_variables().size() == count);
}

TEST_CASE("batch_norm.argument_errors_name_the_layer") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3, 4, 5}, "x");
  const auto value_error = [&](const Tensor& in, layers::BatchNormalizationOptions o) {
    return message_of<ValueError>([&] { layers::batch_normalization(in, o); });
  };
  std::string m = value_error(x, {.axis = 4, .name = "bad_axis"});
  CHECK(contains(m, "Invalid axis: 4"));
  CHECK(contains(m, "bad_axis"));
  CHECK(contains(m, "[2,3,4,5]"));
  CHECK(contains(value_error(x, {.axis = -5}), "Invalid axis: -1"));
  CHECK(contains(value_error(x, {.axis = {3, -1}}), "Duplicate axis: [3, 3]"));
  CHECK(contains(value_error(x, {.axis = std::vector<int>{}}), "axis"));
  CHECK(contains(value_error(placeholder(float32, {2, -1}), {}), "Input has undefined `axis` dimension. Input shape: [2,?]"));
  CHECK(contains(value_error(placeholder(float32), {.name = "unknown_rank"}), "Input has undefined rank: <unknown>"));
  CHECK(contains(value_error(placeholder(float32, {}), {}), "Input has undefined rank: []"));
  CHECK(contains(value_error(x, {.virtual_batch_size = 0}), "virtual_batch_size must be a positive integer"));
  CHECK(contains(value_error(x, {.axis = {0, 3}, .virtual_batch_size = 2}), "axis cannot include 0"));
  CHECK(contains(value_error(x, {.virtual_batch_size = 2, .adjustment = [](const Tensor& s) {
                                   return std::pair{ones_like(s), zeros_like(s)};
                                 }}),
                 "adjustment cannot be specified"));
  CHECK(contains(value_error(x, {.name = "ghost", .virtual_batch_size = 3}),
                 "virtual_batch_size 3 does not divide the batch size 2"));
  {  // an unknown renorm_clipping key: reported when the layer is built, naming the key and the layer
    const auto clip = layers::RenormClipping::from_dict({{"rmax", 3.0}, {"dmin", 1.0}});
    CHECK(clip.unknown_keys == std::vector<std::string>{"dmin"});
    m = value_error(x, {.name = "clipped", .renorm = true, .renorm_clipping = clip});
    CHECK(contains(m, "'dmin'"));
    CHECK(contains(m, "layer 'clipped'"));
    CHECK(contains(value_error(x, {.name = "clipped_off", .renorm_clipping = clip}), "layer 'clipped_off'"));
    CHECK(g.get_collection(GraphKeys::GLOBAL_VARIABLES, "clipped").empty());
  }
  // Types: integer input, non-boolean or non-scalar training tensor, clipping tensors.
  CHECK(contains(message_of<TypeError>([&] { layers::batch_normalization(placeholder(int32, {2, 3}), {.name = "ints"}); }),
                 "ints"));
  CHECK(contains(message_of<TypeError>([&] {
                   layers::batch_normalization(x, {.training = placeholder(float32, {}), .name = "t1"});
                 }),
                 "t1"));
  CHECK(contains(value_error(x, {.training = placeholder(boolean, {2}), .name = "t2"}), "scalar"));
  CHECK(contains(message_of<TypeError>([&] {
                   layers::batch_normalization(
                       x, {.training = true, .renorm = true, .renorm_clipping = {.rmax = placeholder(int32, {})}});
                 }),
                 "renorm_clipping"));
  // A later call with another rank, channel count or dtype.
  layers::BatchNormalization bn({.name = "bn"});
  bn(x, true);
  CHECK(contains(message_of<ValueError>([&] { bn(placeholder(float32, {2, 5}), true); }), "expected ndim=4, found ndim=2"));
  CHECK(contains(message_of<ValueError>([&] { bn(placeholder(float32, {2, 3, 4, 6}), true); }),
                 "expected axis 3 of input shape to have value 5"));
  CHECK(contains(message_of<TypeError>([&] { bn(placeholder(float64, {2, 3, 4, 5}), true); }), "bn"));
  CHECK(contains(message_of<ValueError>([&] { bn(placeholder(float32), true); }), "Input has undefined rank"));
  // Fused op errors name the op.
  Tensor s3 = placeholder(float32, {3});
  CHECK(contains(message_of<ValueError>([&] { nn::fused_batch_norm(placeholder(float32, {2, 3}), s3, s3); }),
                 "4-dimensional"));
  m = message_of<ValueError>([&] { nn::fused_batch_norm(placeholder(float32, {2, 2, 2, 4}), s3, s3); });
  CHECK(contains(m, "FusedBatchNorm"));
  CHECK(contains(m, "scale must have 4 elements"));
  CHECK(contains(message_of<ValueError>([&] {
                   nn::fused_batch_norm(placeholder(float32, {2, 2, 2, 3}), s3, s3, {}, {}, 1e-3, "NWHC");
                 }),
                 "data_format"));
  CHECK(contains(message_of<ValueError>([&] {
                   nn::fused_batch_norm(placeholder(float32, {2, 2, 2, 3}), s3, s3, {}, {}, 1e-3, "NHWC", false);
                 }),
                 "'mean' and 'variance'"));
  CHECK(contains(message_of<TypeError>([&] {
                   nn::fused_batch_norm(placeholder(float32, {2, 2, 2, 3}), placeholder(float64, {3}), s3);
                 }),
                 "scale has dtype double"));
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

TEST_CASE("batch_norm.functional_form_as_in_the_api_example") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4, 4, 2}, "x");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor h = layers::batch_normalization(x, {.momentum = 0.9, .training = training});
  CHECK(h.shape() == Shape{-1, 4, 4, 2});
  CHECK(get_collection(GraphKeys::UPDATE_OPS).size() == 2);
  Session sess;
  sess.run(global_variables_initializer());
  const xt::xarray<float> xv = f32(normal({3, 4, 4, 2}, 0.0, 1.0, 111));
  CHECK(sess.run(h, {{x, xv}, {training, false}}).shape() == Shape{3, 4, 4, 2});
}

TEST_CASE("batch_norm.epsilon_rule_is_the_same_on_every_path") {
  // One rule: epsilon a finite number > 0, checked when the layer is built (naming it) and by
  // nn::batch_normalization and nn::fused_batch_norm.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4, 2, 2, 3}, "x");
  const std::string before = kiln::testing::graph_state(g);
  for (double eps : {0.0, -1e-3, std::nan(""), std::numeric_limits<double>::infinity()}) {
    for (std::optional<bool> fused : {std::optional<bool>(true), std::optional<bool>(false)}) {
      const std::string m = message_of<ValueError>(
          [&] { layers::batch_normalization(x, {.epsilon = eps, .training = true, .name = "bn", .fused = fused}); });
      CHECK(contains(m, "epsilon must be a finite number > 0"));
      CHECK(contains(m, "layer 'bn'"));
    }
    CHECK(contains(message_of<ValueError>([&] {
                     layers::batch_normalization(x, {.epsilon = eps, .training = true, .name = "rn", .renorm = true});
                   }),
                   "layer 'rn'"));
    const Tensor c = placeholder(float32, {3}, "c");
    CHECK(contains(message_of<ValueError>([&] { nn::batch_normalization(x, c, c, c, c, eps, "plain_bn"); }),
                   "'plain_bn'"));
    CHECK(contains(message_of<ValueError>([&] { nn::fused_batch_norm(x, c, c, std::nullopt, std::nullopt, eps, "NHWC", true, "fbn"); }),
                   "'fbn'"));
  }
  // Nothing was left behind by the failed builds (the placeholders c aside).
  CHECK(g.get_collection(GraphKeys::GLOBAL_VARIABLES).empty());
  CHECK(g.get_collection(GraphKeys::UPDATE_OPS).empty());
  // A positive epsilon, however small, is accepted on both paths.
  layers::batch_normalization(x, {.epsilon = 1e-12, .training = true, .fused = true});
  layers::batch_normalization(x, {.epsilon = 1e-12, .training = true, .fused = false});
  nn::batch_normalization(x, placeholder(float32, {3}), placeholder(float32, {3}), std::nullopt, std::nullopt, 1e-12);
}

TEST_CASE("batch_norm.a_failed_build_leaves_nothing_behind_and_the_retry_works") {
  // virtual_batch_size 3 with a batch of 8 fails in the call, after the variables were created;
  // so does a negative epsilon on the fused path. The corrected retry under the same name works.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {8, 4, 4, 3}, "x");
  { layers::batch_normalization(x, {.name = "first"}); }
  const std::string before = kiln::testing::graph_state(g);
  const auto vars_before = global_variables();

  CHECK(contains(message_of<ValueError>([&] {
                   layers::batch_normalization(x, {.training = true, .name = "bn", .virtual_batch_size = 3});
                 }),
                 "virtual_batch_size 3 does not divide the batch size 8"));
  CHECK(kiln::testing::graph_state(g) == before);
  CHECK(global_variables() == vars_before);
  CHECK_FALSE(g.name_in_use("bn"));
  CHECK(contains(message_of<ValueError>([&] {
                   layers::batch_normalization(x, {.epsilon = -1.0, .training = true, .name = "bn", .fused = true});
                 }),
                 "layer 'bn'"));
  CHECK(kiln::testing::graph_state(g) == before);

  Tensor y = layers::batch_normalization(x, {.training = true, .name = "bn", .virtual_batch_size = 4});
  CHECK(g.get_tensor_by_name("bn/gamma:0").shape() == Shape{1, 1, 1, 1, 3});
  CHECK(y.shape() == Shape{8, 4, 4, 3});
  CHECK(get_collection(GraphKeys::UPDATE_OPS).size() == 2);

  // An object whose first call failed is unbuilt, its variable handles null; it builds on retry.
  layers::BatchNormalization bn({.name = "obj", .virtual_batch_size = 3});
  CHECK_THROWS_AS(bn(x, true), ValueError);
  CHECK_FALSE(bn.built());
  CHECK_FALSE(bn.gamma().valid());
  CHECK(bn.variables().empty());
  CHECK(bn.updates().empty());
  Tensor x6 = placeholder(float32, {6, 4, 4, 3}, "x6");
  bn(x6, true);
  CHECK(bn.gamma().name() == "obj/gamma:0");
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(bn.gamma()).to_double() == xt::ones<double>({1, 1, 1, 1, 3}));
}
