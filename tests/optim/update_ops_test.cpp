// The UPDATE_OPS guard: a train op built without the update ops of the graph (batch norm's moving
// averages) warns once and names the layers, unless silenced; with control_dependencies(UPDATE_OPS)
// it is silent, and the batch-norm workflow converges and moves the moving statistics.
#include <doctest/doctest.h>

#include <iostream>
#include <random>
#include <sstream>

#include <kiln.hpp>

#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::contains;

namespace {

/// Captures std::cerr while alive.
struct CaptureStderr {
  std::ostringstream out;
  std::streambuf* saved = std::cerr.rdbuf(out.rdbuf());
  ~CaptureStderr() { std::cerr.rdbuf(saved); }
};

}  // namespace

TEST_CASE("train.update_ops_guard") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w(constant(xt::xarray<double>{1.0}), {.name = "w"});
  Variable moving(constant(xt::xarray<double>{0.0}), {.trainable = false, .name = "batch_normalization/moving_mean"});
  Tensor update;
  {
    name_scope ns("batch_normalization");
    update = assign(moving, moving.value() * 0.9 + w.value() * 0.1, "AssignMovingAvg");
  }
  add_to_collection(GraphKeys::UPDATE_OPS, update);
  Tensor loss = w.value() * w.value();

  train::set_update_ops_warning(true);
  Operation without;
  {
    CaptureStderr err;
    without = train::GradientDescentOptimizer(0.1).minimize(loss);
    CHECK(contains(err.out.str(), "batch_normalization"));
    CHECK(contains(err.out.str(), "UPDATE_OPS"));
  }
  REQUIRE(train::missing_update_ops(without).size() == 1);
  CHECK(train::missing_update_ops(without)[0].op().name() == "batch_normalization/AssignMovingAvg");
  CHECK(train::missing_update_layers(without) == std::vector<std::string>{"batch_normalization"});
  {
    CaptureStderr err;  // once per offending train op: a second one, through apply_gradients, warns too
    train::GradientDescentOptimizer opt(0.1);
    const Operation second = opt.apply_gradients(opt.compute_gradients(loss));
    CHECK(contains(err.out.str(), "'" + second.name() + "'"));
    CHECK(contains(err.out.str(), "batch_normalization"));
  }

  // Silent when the dependency is there
  Operation with;
  {
    CaptureStderr err;
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    with = train::GradientDescentOptimizer(0.1).minimize(loss);
    CHECK(err.out.str().empty());
  }
  CHECK(train::missing_update_ops(with).empty());
  {
    CaptureStderr err;  // silenced by the option
    train::GradientDescentOptimizer(0.1).minimize(loss, {.warn_missing_update_ops = false});
    CHECK(err.out.str().empty());
  }
  {
    CaptureStderr err;  // silenced globally
    train::set_update_ops_warning(false);
    train::GradientDescentOptimizer(0.1).minimize(loss);
    CHECK(err.out.str().empty());
    CHECK_FALSE(train::update_ops_warning_enabled());
  }
  train::set_update_ops_warning(true);

  // It only warns: the semantics are TF's. Without the dependency the statistic does not move.
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(without);
  CHECK(sess.run(moving).scalar<double>() == 0.0);
  sess.run(with);
  CHECK(sess.run(moving).scalar<double>() != 0.0);
}

TEST_CASE("train.update_ops_guard_names_batch_norm_layers") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor x = placeholder(float32, {4, 3}, "x");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor h = layers::batch_normalization(x, {.training = training});
  {
    variable_scope vs("block");
    h = layers::batch_normalization(h, {.training = true});
  }
  Tensor loss = reduce_mean(square(h));
  train::set_update_ops_warning(false);
  Operation without = train::GradientDescentOptimizer(0.1).minimize(loss);
  CHECK(train::missing_update_layers(without) ==
        std::vector<std::string>{"batch_normalization", "block/batch_normalization"});
  Operation with;
  {
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    with = train::GradientDescentOptimizer(0.1).minimize(loss);
  }
  CHECK(train::missing_update_ops(with).empty());
  train::set_update_ops_warning(true);
}

TEST_CASE("train.seed_workflow_with_batch_norm_converges_and_moves_statistics") {
  // The seed's program: batch norm fed `training`, the train op under
  // control_dependencies(UPDATE_OPS), Adam's minimize. Data: two Gaussian blobs (offset 5).
  Graph graph;
  auto guard = graph.as_default();
  set_random_seed(3);
  Tensor x = placeholder(float32, {-1, 2}, "x");
  Tensor labels = placeholder(int64, {-1}, "labels");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor h = layers::dense(x, 8, {.use_bias = false});
  layers::BatchNormalization bn({.momentum = 0.9});
  h = nn::relu(bn(h, training));
  Tensor logits = layers::dense(h, 2);
  Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits);
  Tensor accuracy = metrics::accuracy(labels, argmax(logits, 1));
  Operation train_op;
  {
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    train_op = train::AdamOptimizer(0.05).minimize(loss);
  }
  CHECK(train::missing_update_ops(train_op).empty());

  xt::xarray<float> xs = xt::xarray<float>::from_shape({64, 2});
  xt::xarray<std::int64_t> ys = xt::xarray<std::int64_t>::from_shape({64});
  std::mt19937 gen(5);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (std::size_t i = 0; i < 64; ++i) {
    ys(i) = static_cast<std::int64_t>(i % 2);
    xs(i, 0) = 5.0f + noise(gen) + (i % 2 ? 2.0f : -2.0f);
    xs(i, 1) = 5.0f + noise(gen);
  }
  Session sess;
  sess.run(global_variables_initializer());
  const Variable moving_mean = bn.moving_mean();
  const auto before = sess.run(moving_mean).to_double();
  for (int step = 0; step < 150; ++step) sess.run(train_op, {{x, xs}, {labels, ys}, {training, true}});
  const auto after = sess.run(moving_mean).to_double();
  CHECK(xt::amax(xt::abs(after - before))() > 0.1);  // the moving statistics moved
  CHECK(sess.run(accuracy, {{x, xs}, {labels, ys}, {training, false}}).scalar<float>() > 0.95f);
}
