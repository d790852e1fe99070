// Learning-rate schedules: exponential_decay (smooth and staircase, float32 and float64) and
// piecewise_constant, also as an optimizer's learning rate driven by the global step.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::error_of;

TEST_CASE("train.exponential_decay") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor step = placeholder(int64, {}, "step");
  Tensor smooth = train::exponential_decay(0.1, step, 10, 0.5);
  Tensor stairs = train::exponential_decay(0.1, step, 10, 0.5, true);
  CHECK(smooth.dtype() == float32);
  Tensor lr64 = placeholder(float64, {}, "lr");
  Tensor smooth64 = train::exponential_decay(lr64, step, 10, 0.5);
  CHECK(smooth64.dtype() == float64);
  Session sess;
  for (std::int64_t s : {0, 5, 10, 25, 39}) {
    INFO("step " << s);
    CHECK(sess.run(smooth, {{step, s}}).scalar<float>() == doctest::Approx(0.1 * std::pow(0.5, s / 10.0)));
    CHECK(sess.run(stairs, {{step, s}}).scalar<float>() ==
          doctest::Approx(0.1 * std::pow(0.5, std::floor(s / 10.0))));
    CHECK(sess.run(smooth64, {{step, s}, {lr64, 0.2}}).scalar<double>() ==
          doctest::Approx(0.2 * std::pow(0.5, s / 10.0)).epsilon(1e-14));
  }
  CHECK(contains(error_of<ValueError>([&] { train::exponential_decay(0.1, Tensor(), 10, 0.5); }),
                 "global_step is required for exponential_decay."));
}

TEST_CASE("train.piecewise_constant") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor step = placeholder(int64, {}, "step");
  Tensor lr = train::piecewise_constant(step, {10, 20}, {1.0, 0.5, 0.1});
  Session sess;
  const std::vector<std::pair<std::int64_t, float>> expect{{0, 1.0f}, {10, 1.0f}, {11, 0.5f}, {20, 0.5f}, {21, 0.1f}, {1000, 0.1f}};
  for (const auto& sv : expect) {
    INFO("step " << sv.first);
    CHECK(sess.run(lr, {{step, sv.first}}).scalar<float>() == sv.second);
  }
  CHECK(error_of<ValueError>([&] { train::piecewise_constant(step, {10, 20}, {1.0, 0.5}); }) ==
        "The length of boundaries should be 1 less than the length of values");
  // As an optimizer's learning rate with the global step.
  Variable gs = train::get_or_create_global_step();
  Variable w(constant(xt::xarray<float>{0.0f}), {.name = "w"});
  Operation train_op = train::GradientDescentOptimizer(train::piecewise_constant(gs, {1}, {1.0, 0.5}))
                           .minimize(w.value() * -1.0f, {.global_step = gs});  // g = -1
  sess.run(global_variables_initializer());
  for (int i = 0; i < 4; ++i) sess.run(train_op);
  CHECK(sess.run(w).scalar<float>() == doctest::Approx(1 + 1 + 0.5 + 0.5));  // steps 0, 1 use 1.0
}
