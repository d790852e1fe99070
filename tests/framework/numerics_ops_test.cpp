// check_numerics and add_check_numerics_ops (framework/ops/numerics_ops.cpp): where a NaN or an
// infinity first appears, named with the op and the message (TF's wording: "<message> : Tensor had
// NaN values").
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("numerics.check_numerics_passes_finite_values_and_names_nan_and_inf") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1}, "x");
  Tensor y = nn::check_numerics(x, "after the input", "check_x");
  CHECK(y.op().type() == "CheckNumerics");
  CHECK(y.shape() == Shape{-1});
  Session sess;
  // 35 values: the vectorized part and the tail.
  xt::xarray<float> v = xt::arange<float>(35);
  CHECK(sess.run(y, {{x, v}}).as<float>() == v);
  const auto run_with = [&](std::size_t at, float bad, std::size_t at2, float bad2) {
    xt::xarray<float> w = v;
    w(at) = bad;
    w(at2) = bad2;
    return message_of<InvalidArgumentError>([&] { sess.run(y, {{x, w}}); });
  };
  const std::string nan = run_with(3, kNaN, 3, kNaN);
  CHECK(contains(nan, "CheckNumerics 'check_x'"));
  CHECK(contains(nan, "after the input : Tensor had NaN values"));
  CHECK(contains(run_with(34, -kInf, 34, -kInf), "Tensor had Inf values"));
  CHECK(contains(run_with(0, kInf, 33, kNaN), "Tensor had Inf and NaN values"));
  CHECK_THROWS_AS(nn::check_numerics(placeholder(int32, {2}), "ints"), TypeError);
}

TEST_CASE("numerics.check_numerics_gradient_is_checked") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {3}, "x");
  Tensor w = placeholder(float64, {3}, "w");
  Tensor loss = reduce_sum(nn::check_numerics(x, "x finite") * w);
  const auto dx = gradients({loss}, {x})[0];
  REQUIRE(dx);
  Session sess;
  const xt::xarray<double> xv{1, 2, 3};
  CHECK(sess.run(*dx, {{x, xv}, {w, xt::xarray<double>{4, 5, 6}}}).as<double>() ==
        xt::xarray<double>{4, 5, 6});
  const std::string m = message_of<InvalidArgumentError>([&] {
    sess.run(*dx, {{x, xv}, {w, xt::xarray<double>{4, std::numeric_limits<double>::infinity(), 6}}});
  });
  CHECK(contains(m, "Not a number (NaN) or infinity (Inf) values detected in gradient. x finite"));
  CHECK(contains(m, "Tensor had Inf values"));
  // Against central differences (and so counted by the gradient-check coverage test).
  kiln::testing::check_grad(nn::check_numerics(x, "x finite") * x, {{x, xv}});
}

TEST_CASE("numerics.add_check_numerics_ops_names_the_first_op") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4}, "x");
  Tensor a = log(x, "log_x");               // -inf at 0, NaN below
  Tensor b = multiply(a, a, "squared");     // inf, NaN
  Tensor c = reduce_sum(b, {}, false, "total");
  Variable v = get_variable("v", {4}, {.initializer = initializers::zeros()});
  assign_add(v, c * ones({4}), "step");  // an update: the check must not run it
  const Operation check = add_check_numerics_ops();
  Session sess;
  sess.run(global_variables_initializer());
  // Finite everywhere: the check passes and runs no update.
  sess.run(check, {{x, xt::xarray<float>{1, 2, 3, 4}}});
  CHECK(sess.run(v).as<float>() == xt::xarray<float>{0, 0, 0, 0});
  // log(0) = -inf: the first op with a bad output is log_x, not the ops computed from it.
  std::string m = message_of<InvalidArgumentError>([&] { sess.run(check, {{x, xt::xarray<float>{1, 0, 3, 4}}}); });
  CHECK(contains(m, "log_x:0 : Tensor had Inf values"));
  // A NaN fed in is caught at the placeholder itself.
  m = message_of<InvalidArgumentError>([&] { sess.run(check, {{x, xt::xarray<float>{1, kNaN, 3, 4}}}); });
  CHECK(contains(m, "': x:0 : Tensor had NaN values"));
  CHECK(sess.run(v).as<float>() == xt::xarray<float>{0, 0, 0, 0});
}

TEST_CASE("numerics.add_check_numerics_ops_with_cond") {
  // Ops inside a cond branch are checked where their value leaves the cond (the Merge): a run that
  // does not take the branch still passes.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2}, "x");
  Tensor pred = placeholder(boolean, {}, "pred");
  Tensor y = cond(pred, [&] { return log(x); }, [&] { return x * 2.0; });  // Tensor overload
  Tensor z = reduce_sum(y, {}, false, "z");
  (void)z;
  const Operation check = add_check_numerics_ops();
  Session sess;
  const xt::xarray<float> neg{-1, 2};
  sess.run(check, {{x, neg}, {pred, false}});
  const std::string m =
      message_of<InvalidArgumentError>([&] { sess.run(check, {{x, neg}, {pred, true}}); });
  CHECK(contains(m, "Tensor had NaN values"));
  CHECK(contains(m, "': " + y.op().name() + ":0 : Tensor had NaN values"));  // the Merge
}
