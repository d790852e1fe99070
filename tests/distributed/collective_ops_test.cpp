// distributed/ in one process (no mpirun): the collectives are copies, their gradients check
// against finite differences, synchronized batch norm is the ordinary layer, DistributedOptimizer
// is the wrapped optimizer with one fused AllReduce. The 2-rank behaviour is in mpi_launcher_test.cpp.
#include <doctest/doctest.h>

#include <random>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::check_grad;

namespace {

xt::xarray<double> random_values(std::vector<std::size_t> shape, double offset, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  for (auto& v : a) v = offset + n(rng);
  return a;
}

int count_ops(const Graph& g, const std::string& type) {
  int n = 0;
  for (const Operation& op : g.operations()) n += op.type() == type ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("distributed.one_process_group") {
  CHECK(distributed::rank() == 0);
  CHECK(distributed::size() == 1);
  CHECK_THROWS_AS(distributed::set_collective_timeout(0), ValueError);
}

TEST_CASE("distributed.collectives_are_copies_in_one_process") {
  Graph g;
  auto guard = g.as_default();
  const xt::xarray<double> v = random_values({2, 3}, 0, 1);
  Tensor x = placeholder(float64, {-1, 3}, "x");
  Session sess;
  for (const Tensor& y : {distributed::all_reduce(x), distributed::all_reduce(x, distributed::Reduction::mean),
                          distributed::broadcast(x, 0), distributed::all_gather(x), distributed::reduce_scatter(x, x)})
    CHECK(sess.run(y, {{x, v}}).as<double>() == v);
  CHECK(sess.run(distributed::rank_tensor()).scalar<std::int32_t>() == 0);
  CHECK(distributed::all_gather(x).shape() == Shape{-1, 3});
  for (const char* type : {"AllReduce", "Broadcast", "AllGather", "ReduceScatter"})
    CHECK(op_registry().get(type).is_collective);
  CHECK_FALSE(op_registry().get("CollectiveRank").is_collective);
  CHECK_FALSE(op_registry().get("MatMul").is_collective);
}

TEST_CASE("distributed.collective_errors") {
  Graph g;
  auto guard = g.as_default();
  CHECK_THROWS_AS(distributed::all_reduce(placeholder(int32, {2})), TypeError);
  CHECK_THROWS_AS(distributed::all_gather(placeholder(float32, {})), ValueError);
  CHECK_THROWS_AS(distributed::broadcast(placeholder(float32, {2}), -1), ValueError);
  Session sess;
  // a root outside the group of one
  CHECK_THROWS_AS(sess.run(distributed::broadcast(constant(Array(xt::xarray<float>{1, 2})), 1)), InvalidArgumentError);
}

TEST_CASE("distributed.collective_gradients") {
  Graph g;
  auto guard = g.as_default();
  const xt::xarray<double> v = random_values({3, 2}, 0, 2);
  Tensor x = placeholder(float64, {3, 2}, "x");
  Tensor w = constant(Array(random_values({3, 2}, 0, 3)));
  check_grad(distributed::all_reduce(x) * w, {{x, v}});
  check_grad(distributed::all_reduce(x, distributed::Reduction::mean) * w, {{x, v}});
  check_grad(distributed::broadcast(x, 0) * w, {{x, v}});
  check_grad(distributed::all_gather(x) * w, {{x, v}});
  check_grad(distributed::reduce_scatter(x * w, x), {{x, v}});
  // The gradient of an all-reduce is an all-reduce; of an all-gather, a reduce-scatter.
  const int before = count_ops(g, "ReduceScatter");
  gradients({reduce_sum(distributed::all_gather(x))}, {x});
  CHECK(count_ops(g, "ReduceScatter") == before + 1);
}

TEST_CASE("distributed.synchronized_moments_match_moments") {
  // One process: the Chan merge equals nn::moments; at an offset of 1e4 in float32 the variance
  // stays within 1e-3 of the float64 reference (a plain sum-of-squares formula loses it all).
  Graph g;
  auto guard = g.as_default();
  const xt::xarray<double> v = random_values({16, 3, 4}, 1e4, 4);
  Tensor x64 = placeholder(float64, {-1, 3, 4}, "x64");
  Tensor x32 = placeholder(float32, {-1, 3, 4}, "x32");
  const auto [mean, variance] = nn::moments(x64, {0, 1});
  const auto s64 = distributed::synchronized_moments(x64, {0, 1});
  const auto s32 = distributed::synchronized_moments(x32, {0, 1});
  Session sess;
  const xt::xarray<float> v32 = xt::cast<float>(v);
  auto r = sess.run({mean, variance, s64.mean, s64.variance, s64.count, s32.variance}, {{x64, v}, {x32, v32}});
  CHECK(kiln::testing::allclose(r[2], r[0].as<double>(), 1e-12, 1e-9));
  CHECK(kiln::testing::allclose(r[3], r[1].as<double>(), 1e-9, 1e-9));
  CHECK(r[4].scalar<double>() == 48.0);
  CHECK(kiln::testing::allclose(r[5], r[1].as<double>(), 1e-3, 1e-3));
  // Gradients through the merge (both collectives and the count) against finite differences.
  Tensor xg = placeholder(float64, {4, 3}, "xg");
  const auto m = distributed::synchronized_moments(xg, {0});
  Tensor w = constant(Array(random_values({3}, 0, 5)));
  check_grad(m.mean * w + m.variance * m.variance, {{xg, random_values({4, 3}, 2, 6)}});
}

TEST_CASE("distributed.synchronized_batch_norm_is_the_ordinary_layer_with_one_rank") {
  std::vector<xt::xarray<float>> results[2];
  for (int sync = 0; sync < 2; ++sync) {
    Graph g;
    auto guard = g.as_default();
    Tensor x = placeholder(float32, {-1, 4, 4, 3}, "x");
    Tensor training = placeholder(boolean, {}, "training");
    Tensor y = layers::batch_normalization(x, {.momentum = 0.5, .training = training, .synchronized = sync == 1});
    Tensor loss = reduce_sum(y * y * constant(Array(xt::xarray<float>{1, 2, 3})));
    Operation train_op;
    {
      control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
      train_op = train::GradientDescentOptimizer(0.1).minimize(loss);
    }
    CHECK(count_ops(g, "AllReduce") == 0);
    Session sess;
    sess.run(global_variables_initializer());
    const xt::xarray<float> v = xt::cast<float>(random_values({8, 4, 4, 3}, 3, 7));
    sess.run(train_op, {{x, v}, {training, true}});
    for (const GraphElement& e : get_collection(GraphKeys::GLOBAL_VARIABLES))
      results[sync].push_back(sess.run(e).as<float>());
    results[sync].push_back(sess.run(y, {{x, v}, {training, false}}).as<float>());
  }
  REQUIRE(results[0].size() == results[1].size());
  for (std::size_t i = 0; i < results[0].size(); ++i) CHECK(results[0][i] == results[1][i]);

  Graph g;
  auto guard = g.as_default();
  CHECK_THROWS_AS(layers::batch_normalization(placeholder(float32, {8, 3}),
                                              {.training = true, .virtual_batch_size = 2, .synchronized = true}),
                  ValueError);
}

TEST_CASE("distributed.optimizer_with_one_rank_is_the_wrapped_optimizer") {
  std::vector<xt::xarray<float>> results[2];
  for (int wrapped = 0; wrapped < 2; ++wrapped) {
    Graph g;
    auto guard = g.as_default();
    set_random_seed(3);
    Tensor x = placeholder(float32, {-1, 5}, "x");
    Tensor h = nn::relu(layers::dense(x, 4));
    Tensor loss = reduce_mean(square(layers::dense(h, 2)));
    Variable step = train::get_or_create_global_step();
    Operation train_op;
    if (wrapped) {
      distributed::DistributedOptimizer opt(train::MomentumOptimizer(0.1, 0.9));
      train_op = opt.minimize(loss, {.global_step = step});
      CHECK(opt.get_slot(trainable_variables()[0], "momentum").has_value());
      // four gradients, one fused collective
      CHECK(count_ops(g, "AllReduce") == 1);
    } else {
      train_op = train::MomentumOptimizer(0.1, 0.9).minimize(loss, {.global_step = step});
    }
    Session sess;
    sess.run(global_variables_initializer());
    distributed::broadcast_variables(sess, 0);
    const xt::xarray<float> v = xt::cast<float>(random_values({6, 5}, 0, 8));
    for (int i = 0; i < 3; ++i) sess.run(train_op, {{x, v}});
    for (const Variable& var : trainable_variables()) results[wrapped].push_back(sess.run(var).as<float>());
    CHECK(sess.run(step).scalar<std::int64_t>() == 3);
  }
  REQUIRE(results[0].size() == 4);
  for (std::size_t i = 0; i < results[0].size(); ++i) CHECK(results[0][i] == results[1][i]);

  Graph g;
  auto guard = g.as_default();
  Tensor unused = reduce_sum(placeholder(float32, {2}));
  get_variable("w", {2});
  distributed::DistributedOptimizer opt(train::GradientDescentOptimizer(0.1));
  CHECK_THROWS_WITH_AS(opt.minimize(unused), doctest::Contains("No gradients provided"), ValueError);
  CHECK_THROWS_AS(distributed::DistributedOptimizer(std::shared_ptr<train::Optimizer>()), ValueError);
}
