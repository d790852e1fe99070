// Reductions: values (hand-computed, and a brute-force loop reference for every axes/keepdims
// combination on a rank-3 input), static shapes with unknown dimensions and ranks, errors naming
// the op, and gradient checks (ties included for max/min).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>
#include <cmath>
#include <limits>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::check_grad;
using kiln::testing::check_throws_naming;
using kiln::testing::column;
using kiln::testing::kFloat32;

namespace {

// x[2,3,4] with distinct values (7 is coprime to 24), so max/min have no ties.
xt::xarray<double> rank3_input() {
  xt::xarray<double> x = xt::xarray<double>::from_shape({2, 3, 4});
  for (std::size_t i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<double>((i * 7) % 24) * 0.37 - 4.0;
  return x;
}

enum class Op { sum, mean, max, min };

// Brute-force reference: a loop over every element of x[2,3,4] accumulating into the keepdims
// shaped result, then dropping the reduced axes unless keepdims.
xt::xarray<double> reference(const xt::xarray<double>& x, const std::vector<int>& axes,
                             bool keepdims, Op op) {
  std::array<bool, 3> red{axes.empty(), axes.empty(), axes.empty()};
  for (int a : axes) red[static_cast<std::size_t>((a + 3) % 3)] = true;
  std::vector<std::size_t> kept_shape, out_shape;
  std::size_t count = 1;
  for (std::size_t k = 0; k < 3; ++k) {
    kept_shape.push_back(red[k] ? 1 : x.shape(k));
    if (!red[k]) out_shape.push_back(x.shape(k));
    if (red[k]) count *= x.shape(k);
  }
  const double init = op == Op::max ? -INFINITY : op == Op::min ? INFINITY : 0.0;
  xt::xarray<double> acc = xt::xarray<double>::from_shape(kept_shape);
  acc.fill(init);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) {
        double& a = acc(red[0] ? 0 : i, red[1] ? 0 : j, red[2] ? 0 : k);
        const double v = x(i, j, k);
        a = op == Op::max ? std::max(a, v) : op == Op::min ? std::min(a, v) : a + v;
      }
  if (op == Op::mean) acc /= static_cast<double>(count);
  if (!keepdims) acc.reshape(out_shape);
  return acc;
}

Tensor reduce(Op op, const Tensor& x, const std::vector<int>& axes, bool keepdims) {
  switch (op) {
    case Op::sum:
      return reduce_sum(x, axes, keepdims);
    case Op::mean:
      return reduce_mean(x, axes, keepdims);
    case Op::max:
      return reduce_max(x, axes, keepdims);
    case Op::min:
      break;
  }
  return reduce_min(x, axes, keepdims);
}

const std::vector<std::vector<int>> kAxesSets = {{},     {0},    {1},    {2},     {-1},     {0, 1},
                                                 {0, 2}, {2, 0}, {1, 2}, {0, -1}, {0, 1, 2}};

}  // namespace

TEST_CASE("reduction.values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor x = constant(xt::xarray<float>{{1, 5, 3}, {4, 2, 6}});
  CHECK(sess.run(reduce_sum(x)).scalar<float>() == 21);
  CHECK(testing::allclose(sess.run(reduce_sum(x, {0})), {5, 7, 9}));
  CHECK(testing::allclose(sess.run(reduce_sum(x, {1})), {9, 12}));
  CHECK(testing::allclose(sess.run(reduce_sum(x, {-1}, true)), column({9, 12})));
  CHECK(testing::allclose(sess.run(reduce_mean(x, {1})), {3, 4}));
  CHECK(sess.run(reduce_mean(x)).scalar<float>() == 3.5f);
  CHECK(testing::allclose(sess.run(reduce_max(x, {0})), {4, 5, 6}));
  CHECK(testing::allclose(sess.run(reduce_max(x, {1})), {5, 6}));
  CHECK(testing::allclose(sess.run(reduce_min(x, {1})), {1, 2}));
  CHECK(testing::allclose(sess.run(reduce_min(x, {0}, true)), {{1, 2, 3}}));
  CHECK(sess.run(reduce_max(x)).scalar<float>() == 6);
  CHECK(testing::allclose(sess.run(reduce_sum(x, {0, 1}, true)), column({21})));

  // Integers: int64 accumulation, integer division for the mean (TF).
  Tensor n = constant(xt::xarray<std::int32_t>{{1, 2}, {3, 5}});
  CHECK(sess.run(reduce_sum(n, {1})).dtype() == int32);
  CHECK(testing::allclose(sess.run(reduce_sum(n, {1})), {3, 8}));
  CHECK(testing::allclose(sess.run(reduce_mean(n, {1})), {1, 4}));
  CHECK(testing::allclose(sess.run(reduce_max(n, {0})), {3, 5}));
  CHECK(testing::allclose(sess.run(reduce_min(constant(xt::xarray<std::int64_t>{7, -2, 9}))),
                          xt::xarray<double>(-2.0)));

  // Float sums accumulate in double: 2^24 + 4 * 1 is exact, a float accumulator would stay at 2^24.
  CHECK(sess.run(reduce_sum(constant(xt::xarray<float>{16777216.f, 1, 1, 1, 1}))).scalar<float>() ==
        16777220.f);
  // NaN propagates through max and min.
  CHECK(std::isnan(sess.run(reduce_max(constant(xt::xarray<double>{1, NAN, 3}))).scalar<double>()));
  // Empty reductions: the identity of the operation.
  CHECK(testing::allclose(sess.run(reduce_sum(zeros({0, 3}), {0})), {0, 0, 0}));
  CHECK(sess.run(reduce_max(zeros({0}))).scalar<float>() ==
        -std::numeric_limits<float>::infinity());

  // ArgMax: the first maximal index.
  CHECK(sess.run(argmax(x, 1)).dtype() == int64);
  CHECK(testing::allclose(sess.run(argmax(x, 1)), {1, 2}));
  CHECK(testing::allclose(sess.run(argmax(x, 0)), {1, 0, 1}));
  CHECK(sess.run(argmax(x, -1, int32)).dtype() == int32);
  CHECK(testing::allclose(sess.run(argmax(x, -1, int32)), {1, 2}));
  CHECK(testing::allclose(sess.run(argmax(constant(xt::xarray<double>{{3, 1, 3}}), 1)), {0}));
  CHECK(testing::allclose(sess.run(argmax(constant(xt::xarray<std::int32_t>{{3, 1}, {0, 4}}), 0)),
                          {0, 1}));
}

TEST_CASE("reduction.every_axes_keepdims_combination_on_rank3") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  const xt::xarray<double> xv = rank3_input();
  Tensor x = constant(xv);
  Tensor xf = constant(xt::xarray<float>(xv));
  for (Op op : {Op::sum, Op::mean, Op::max, Op::min})
    for (const auto& axes : kAxesSets)
      for (bool keepdims : {false, true}) {
        CAPTURE(static_cast<int>(op));
        CAPTURE(keepdims);
        INFO("axes of size " << axes.size()
                             << (axes.empty() ? "" : ", first " + std::to_string(axes[0])));
        const auto want = reference(xv, axes, keepdims, op);
        const Tensor y = reduce(op, x, axes, keepdims);
        const Array got = sess.run(y);
        CHECK(testing::allclose(got, want, 1e-12, 1e-12));
        CHECK(y.shape() == got.shape());
        CHECK(testing::allclose(sess.run(reduce(op, xf, axes, keepdims)), want, 1e-6, 1e-5));
      }
}

TEST_CASE("reduction.static_shapes") {
  Graph g;
  auto guard = g.as_default();
  Tensor p = placeholder(float32, {-1, 3, 4}, "p");
  CHECK(reduce_sum(p, {1}).shape() == Shape{-1, 4});
  CHECK(reduce_sum(p, {1}, true).shape() == Shape{-1, 1, 4});
  CHECK(reduce_mean(p).shape() == Shape{});
  CHECK(reduce_max(p, {}, true).shape() == Shape{1, 1, 1});
  CHECK(reduce_min(p, {0, -1}).shape() == Shape{3});
  Tensor u = placeholder(float32, Shape::unknown(), "u");
  CHECK(reduce_sum(u, {1}).shape() == Shape::unknown());
  CHECK(reduce_sum(u).shape() == Shape{});
  CHECK(reduce_sum(u, {}, true).shape() == Shape::unknown());
  CHECK(argmax(p, 1).shape() == Shape{-1, 4});
  CHECK(argmax(p, -1).shape() == Shape{-1, 3});
  CHECK(argmax(u, 0).shape() == Shape::unknown());
  Session sess;
  const Array uv = xt::xarray<float>{{1, 2}, {3, 4}};
  CHECK(testing::allclose(sess.run(reduce_sum(u, {-1}, true), {{u, uv}}), column({3, 7})));
}

TEST_CASE("reduction.errors_name_the_op") {
  Graph g;
  auto guard = g.as_default();
  Tensor p = placeholder(float32, {-1, 3, 4}, "p");
  check_throws_naming<ValueError>([&] { reduce_sum(p, {1, -2}, false, "dup"); }, "dup", "Sum");
  check_throws_naming<ValueError>([&] { reduce_mean(p, {3}, false, "range"); }, "range", "Mean");
  check_throws_naming<ValueError>([&] { reduce_max(p, {-4}, true, "neg_range"); }, "neg_range",
                                  "Max");
  check_throws_naming<ValueError>([&] { reduce_min(scalar(1.0), {0}, false, "scalar_axis"); },
                                  "scalar_axis", "Min");
  Tensor u = placeholder(float32, Shape::unknown(), "u");
  check_throws_naming<ValueError>(
      [&] {
        reduce_sum(u, {1, 1}, false, "dup_unknown");
      },
      "dup_unknown", "Sum");
  check_throws_naming<TypeError>([&] { reduce_sum(placeholder(boolean, {2}), {}, false, "bools"); },
                                 "bools", "Sum");
  check_throws_naming<ValueError>([&] { argmax(p, 3, int64, "am"); }, "am", "ArgMax");
  check_throws_naming<TypeError>([&] { argmax(p, 0, float32, "am_type"); }, "am_type", "ArgMax");

  // Known only at run time: the same axis twice for a rank-3 value; an empty argmax axis.
  Session sess;
  const Array v = xt::xarray<float>::from_shape({2, 3, 4});
  try {
    sess.run(reduce_sum(u, {1, -2}, false, "late_dup"), {{u, v}});
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(std::string(e.what()).find("'late_dup'") != std::string::npos);
  }
  Tensor e = placeholder(float32, {-1}, "e");
  CHECK_THROWS_AS(sess.run(argmax(e, 0), {{e, xt::xarray<float>::from_shape({0})}}),
                  InvalidArgumentError);
}

TEST_CASE("reduction.gradients") {
  Graph g;
  auto guard = g.as_default();
  const Array xv = rank3_input();
  Tensor x = placeholder(float64, {2, 3, 4}, "x");
  for (Op op : {Op::sum, Op::mean, Op::max, Op::min})
    for (const auto& axes : kAxesSets)
      for (bool keepdims : {false, true}) {
        CAPTURE(static_cast<int>(op));
        CAPTURE(keepdims);
        INFO("axes of size " << axes.size()
                             << (axes.empty() ? "" : ", first " + std::to_string(axes[0])));
        check_grad(reduce(op, x, axes, keepdims), {{x, xv}});
      }
  // Shapes known only at run time (ReducedShape and size() in the gradients).
  Tensor d = placeholder(float64, {-1, 3, 4}, "d");
  Tensor u = placeholder(float64, Shape::unknown(), "u");
  for (Op op : {Op::sum, Op::mean, Op::max, Op::min}) {
    check_grad(reduce(op, d, {1}, false), {{d, xv}});
    check_grad(reduce(op, d, {}, false), {{d, xv}});
    check_grad(reduce(op, u, {0, -1}, true), {{u, xv}});
    check_grad(reduce(op, u, {}, false), {{u, xv}});
  }
  // float32, looser tolerance and a larger step.
  Tensor f = placeholder(float32, {2, 3, 4}, "f");
  const Array fv = xt::xarray<float>(rank3_input());
  check_grad(reduce_sum(f, {1}), {{f, fv}}, 2e-3, kFloat32);
  check_grad(reduce_mean(f, {0, 2}, true), {{f, fv}}, 2e-3, kFloat32);
  check_grad(reduce_max(f, {2}), {{f, fv}}, 2e-3, kFloat32);

  // Ties share the gradient equally (TF); hand-computed.
  Tensor t = placeholder(float64, {2, 3}, "t");
  const FeedDict tv{{t, xt::xarray<double>{{1, 3, 3}, {2, 2, 0}}}};
  Session sess;
  CHECK(testing::allclose(sess.run(*gradients({reduce_max(t, {1})}, {t})[0], tv),
                          {{0, 0.5, 0.5}, {0.5, 0.5, 0}}));
  CHECK(testing::allclose(sess.run(*gradients({reduce_min(t, {0})}, {t})[0], tv),
                          {{1, 0, 0}, {0, 1, 1}}));
  CHECK(testing::allclose(sess.run(*gradients({reduce_max(t)}, {t})[0], tv),
                          {{0, 0.5, 0.5}, {0, 0, 0}}));
  CHECK(op_registry().get("ArgMax").not_differentiable);
}

namespace {
std::vector<std::string> op_types(const Graph& g) {
  std::vector<std::string> t;
  for (const Operation& op : g.operations()) t.push_back(op.type());
  return t;
}
bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }
}  // namespace

TEST_CASE("reduction.moments_op_equals_the_composition_where_it_applies") {
  // nn::moments builds one Moments op when the kept axes are adjacent (batch norm's NHWC, NCHW and
  // rank-2 cases) and TF's reduce_mean / squared_difference composition otherwise; the reference
  // here is that composition, in float64.
  xt::xarray<double> v = xt::xarray<double>::from_shape({3, 4, 5, 2});
  for (std::size_t i = 0; i < v.size(); ++i) v.data()[i] = 100.0 + std::sin(0.7 * double(i)) * double(i % 7);
  for (const std::vector<int>& axes : std::vector<std::vector<int>>{{0, 1, 2}, {0, 2, 3}, {0}, {1, 2, 3}, {}, {0, 1, 2, 3}}) {
    CAPTURE(axes.size());
    Graph g;
    auto guard = g.as_default();
    Tensor x = constant(v);
    auto [mean, variance] = nn::moments(x, axes, true);
    CHECK(has(op_types(g), "Moments"));
    Tensor ref_mean = reduce_mean(x, axes, true);
    Tensor ref_var = reduce_mean(squared_difference(x, ref_mean), axes, true);
    Session sess;
    const auto r = sess.run({mean, variance, ref_mean, ref_var});
    CHECK(r[0].shape() == r[2].shape());
    CHECK(kiln::testing::allclose(r[0], r[2].as<double>(), 1e-13, 0));
    CHECK(kiln::testing::allclose(r[1], r[3].as<double>(), 1e-11, 1e-13));
  }
  SUBCASE("not adjacent, or not floating: the composition") {
    Graph g;
    auto guard = g.as_default();
    Tensor x = constant(v);
    auto [m, var] = nn::moments(x, {1, 2});  // kept axes 0 and 3
    CHECK_FALSE(has(op_types(g), "Moments"));
    CHECK(m.shape() == Shape{3, 2});
    nn::moments(constant(xt::xarray<std::int32_t>{1, 2, 3}), {0});
    CHECK_FALSE(has(op_types(g), "Moments"));
  }
}

TEST_CASE("reduction.moments_op_nan_empty_and_thread_counts") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  SUBCASE("an empty reduction is NaN, like the mean of nothing") {
    Tensor x = placeholder(float32, {0, 3}, "x");
    auto [m, v] = nn::moments(x, {0});
    const auto r = sess.run({m, v}, {{x, xt::xarray<float>::from_shape({0, 3})}});
    for (const Array& a : r)
      for (float e : a.as<float>()) CHECK(std::isnan(e));
  }
  SUBCASE("NaN propagates to its channel only") {
    xt::xarray<float> xv{{1, 2}, {std::numeric_limits<float>::quiet_NaN(), 4}, {5, 6}};
    auto [m, v] = nn::moments(constant(xv), {0});
    const auto r = sess.run({m, v});
    CHECK(std::isnan(r[0].as<float>()(0)));
    CHECK(std::isnan(r[1].as<float>()(0)));
    CHECK(r[0].as<float>()(1) == 4.f);
  }
  SUBCASE("the same bits at 1 and 2 threads, values and gradients") {
    xt::xarray<float> xv = xt::xarray<float>::from_shape({64, 9, 9, 16});
    for (std::size_t i = 0; i < xv.size(); ++i) xv.data()[i] = float(1e4 + std::cos(0.01 * double(i)));
    Tensor x = placeholder(float32, {64, 9, 9, 16}, "x");
    auto [m, v] = nn::moments(x, {0, 1, 2});
    Tensor dx = *gradients(reduce_sum(m * 3.0 + v * v), {x})[0];
    const int before = num_threads();
    std::vector<std::vector<Array>> runs;
    for (int t : {1, 2}) {
      set_num_threads(t);
      runs.push_back(sess.run({m, v, dx}, {{x, xv}}));
    }
    set_num_threads(before);
    for (std::size_t k = 0; k < 3; ++k) CHECK(xt::all(xt::equal(runs[0][k].as<float>(), runs[1][k].as<float>())));
  }
}

TEST_CASE("reduction.moments_op_second_derivatives_and_where_it_is_not_used") {
  Graph g;
  auto guard = g.as_default();
  SUBCASE("gradients of gradients through Moments (MomentsGrad's gradient), float64") {
    Tensor x = placeholder(float64, {3, 2, 4}, "x");
    const Array xv = xt::xarray<double>{{{1, 2, 3, 4}, {0.5, -1, 2, 0}}, {{-2, 1, 0.25, 3}, {1, 1.5, -0.5, 2}},
                                        {{0, -1, 2.5, 1}, {3, 0.75, -2, 1}}};
    auto [mean, variance] = nn::moments(x, {0, 2});
    CHECK(has(op_types(g), "Moments"));
    Tensor dx = *gradients(reduce_sum(mean * mean * 3.0 + variance * variance), {x})[0];
    check_grad(reduce_sum(dx * dx), {{x, xv}});
    check_grad(reduce_sum(dx * x), {{x, xv}});
  }
  SUBCASE("many kept elements before reduced ones, or an unknown kept size: the composition") {
    Tensor wide = placeholder(float32, {2, 5000, 3}, "wide");
    nn::moments(wide, {0, 2});  // 5000 kept channels over planes of 3: the kernel's scratch would grow with 5000^2
    Tensor unknown = placeholder(float32, {2, -1, 3}, "unknown");
    nn::moments(unknown, {0, 2});
    CHECK_FALSE(has(op_types(g), "Moments"));
    Tensor nhwc = placeholder(float32, {2, 3, 5000}, "nhwc");
    nn::moments(nhwc, {0, 1});  // the last axis kept: any number of channels
    CHECK(has(op_types(g), "Moments"));
  }
}

TEST_CASE("reduction.moments_ops_reject_what_their_kernels_cannot_take") {
  // Moments and MomentsGrad built directly (as a graph file could hold them), with the attributes
  // of a Moments op nn::moments built: errors name the op and what is wrong.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {4, 3, 2}, "x");
  nn::moments(x, {0, 2});
  const std::vector<Operation> ops = g.operations();
  const auto found = std::find_if(ops.begin(), ops.end(), [](const Operation& op) { return op.type() == "Moments"; });
  REQUIRE(found != ops.end());
  const std::any attrs = found->node()->attrs;  // axes {0, 2}, keepdims

  std::string msg = kiln::testing::message_of<TypeError>(
      [&] { build_op("Moments", {placeholder(int32, {4, 3, 2})}, attrs, "int_moments"); });
  CHECK(kiln::testing::contains(msg, "int_moments"));
  CHECK(kiln::testing::contains(msg, "float"));
  msg = kiln::testing::message_of<ValueError>(
      [&] { build_op("Moments", {placeholder(float64, {4, 3, 2, 5})}, attrs, "split_moments"); });
  CHECK(kiln::testing::contains(msg, "split_moments"));
  CHECK(kiln::testing::contains(msg, "next to each other"));

  Tensor s = placeholder(float64, {1, 5, 1}, "s");
  const Operation mg = build_op("MomentsGrad", {x, s, s, s}, attrs, "bad_grad");
  Session sess;
  const xt::xarray<double> xv = xt::zeros<double>({4, 3, 2}), sv = xt::zeros<double>({1, 5, 1});
  msg = kiln::testing::message_of<InvalidArgumentError>([&] { sess.run(mg.output(0), {{x, xv}, {s, sv}}); });
  CHECK(kiln::testing::contains(msg, "bad_grad"));
  CHECK(kiln::testing::contains(msg, "[1,5,1]"));
  CHECK(kiln::testing::contains(msg, "[4,3,2]"));
}
