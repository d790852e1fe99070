// layers::BatchNormalization as built: variables, collections and UPDATE_OPS (training false or a
// constant), center/scale/trainable/regularizers, reuse and names, argument errors naming the
// layer, the epsilon rule on every path, and failed builds leaving nothing behind.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "tests/layers/batch_normalization_support.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/graph_state.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using namespace kiln::testing::batch_norm;
using kiln::testing::contains;
using kiln::testing::message_of;

namespace {

std::vector<std::string> names(const std::vector<Variable>& vs) {
  std::vector<std::string> r;
  for (auto& v : vs) r.push_back(v.name());
  return r;
}

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

// ---------------------------------------------------------------- functional form, failed builds

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
