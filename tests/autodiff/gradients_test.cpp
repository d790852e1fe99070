// The reverse-mode engine: fan-out, stop_gradient, unconnected xs, grad_ys, integer tensors,
// missing gradients, gradients of gradients, control edges, cond in both directions.
#include <doctest/doctest.h>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::allclose;
using kiln::testing::check_grad;

TEST_CASE("autodiff.fan_out_contributions_are_summed") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {3}, "x");
  Tensor y = x * x + x * 3.0;  // dy/dx = 2x + 3
  auto grads = gradients(y, {x});
  REQUIRE(grads[0]);
  CHECK(grads[0]->op().type() == "AddN");
  Session sess;
  CHECK(allclose(sess.run(*grads[0], {{x, xt::xarray<double>{1, 2, 3}}}), {5, 7, 9}));
  check_grad(y, {{x, xt::xarray<double>{1, 2, 3}}});
}

TEST_CASE("autodiff.stop_gradient_and_unconnected_and_integer_tensors") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2}, "x");
  Tensor z = placeholder(float64, {2}, "z");
  Tensor i = placeholder(int32, {2}, "i");
  Tensor y = x * stop_gradient(x) + cast(i, float64);
  auto grads = gradients(y, {x, z, i});
  REQUIRE(grads[0]);
  CHECK_FALSE(grads[1]);  // unconnected
  CHECK_FALSE(grads[2]);  // integers carry no gradient
  Session sess;
  CHECK(allclose(sess.run(*grads[0], {{x, xt::xarray<double>{2, 5}}}), {2, 5}));
  CHECK_FALSE(gradients(stop_gradient(x) * 2.0, {x})[0]);
}

TEST_CASE("autodiff.grad_ys_weights_each_y") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2}, "x");
  Tensor y1 = x * 2.0, y2 = x * x;
  Tensor w1 = constant(xt::xarray<double>{1, 10}), w2 = constant(xt::xarray<double>{100, 1000});
  auto grads = gradients({y1, y2}, {x}, {w1, w2});
  Session sess;
  // d/dx (w1 . 2x + w2 . x^2) = 2 w1 + 2 x w2
  CHECK(allclose(sess.run(*grads[0], {{x, xt::xarray<double>{1, 2}}}), {202, 4020}));
  CHECK_THROWS_AS(gradients({y1, y2}, {x}, {w1}), ValueError);
}

TEST_CASE("autodiff.gradients_wrt_variables_ignore_control_edges") {
  Graph g;
  auto guard = g.as_default();
  Variable w = get_variable("w", {2}, {.initializer = initializers::constant(3.0)});
  Operation side = no_op("side");
  Tensor y;
  {
    control_dependencies d({side});
    y = square(w.value());
  }
  auto grads = gradients(y, {w});
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(allclose(sess.run(*grads[0]), {6, 6}));
  // Gradients are ops: they can be put under control dependencies and fetched.
  {
    control_dependencies d({*grads[0]});
    CHECK(no_op().control_inputs().size() == 1);
  }
}

TEST_CASE("autodiff.missing_gradient_is_a_lookup_error") {
  // An op type registered without a gradient (and not marked not-differentiable).
  if (!op_registry().find("TestNoGradient"))
    op_registry().add({.type = "TestNoGradient",
                       .shape_fn = [](const InferenceContext& c) { return std::vector<TensorSpec>{{c.dtypes[0], c.shapes[0]}}; },
                       .kernels = kernels_for<double>([]<class T>(KernelContext& c) { c.set_output(0, c.input(0)); })});
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2}, "x");
  Tensor z = placeholder(float64, {2}, "z");
  Tensor y = build_op("TestNoGradient", {x * 2.0}, {}, "opaque").output(0);
  Tensor w = build_op("TestNoGradient", {z * 2.0}, {}, "opaque_z").output(0);
  try {
    gradients(y * 3.0, {x});
    FAIL("expected LookupError");
  } catch (const LookupError& e) {
    CHECK(std::string(e.what()) == "No gradient defined for operation 'opaque' (op type: TestNoGradient)");
  }
  // Not on the path from x: no error.
  CHECK(gradients(w + x, {x})[0]);
}

TEST_CASE("autodiff.gradients_of_gradients") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {3}, "x");
  Tensor y = x * x * x;
  Tensor dy = *gradients(y, {x})[0];       // 3x^2
  Tensor d2y = *gradients(dy, {x})[0];     // 6x
  Tensor d3y = *gradients(d2y, {x})[0];    // 6
  Session sess;
  const Array xv = xt::xarray<double>{1, 2, -1};
  CHECK(allclose(sess.run(dy, {{x, xv}}), {3, 12, 3}));
  CHECK(allclose(sess.run(d2y, {{x, xv}}), {6, 12, -6}));
  CHECK(allclose(sess.run(d3y, {{x, xv}}), {6, 6, 6}));
  Tensor e = exp(x * 0.5);
  check_grad(*gradients(e, {x})[0], {{x, xv}});
  check_grad(*gradients(sqrt(x * x + 1.0), {x})[0], {{x, xv}});
}

TEST_CASE("autodiff.cond_gradient_flows_through_the_taken_branch") {
  Graph g;
  auto guard = g.as_default();
  Tensor p = placeholder(boolean, {}, "p");
  Tensor x = placeholder(float64, {2}, "x");
  Tensor w = placeholder(float64, {2}, "w");
  Tensor y = cond(p, [&] { return x * x; }, [&] { return x * w; });
  auto grads = gradients(y, {x, w});
  REQUIRE(grads[0]);
  REQUIRE(grads[1]);
  Session sess;
  const Array xv = xt::xarray<double>{3, 4}, wv = xt::xarray<double>{5, 7};
  CHECK(allclose(sess.run(*grads[0], {{p, true}, {x, xv}, {w, wv}}), {6, 8}));
  CHECK(allclose(sess.run(*grads[1], {{p, true}, {x, xv}, {w, wv}}), {0, 0}));
  CHECK(allclose(sess.run(*grads[0], {{p, false}, {x, xv}, {w, wv}}), {5, 7}));
  CHECK(allclose(sess.run(*grads[1], {{p, false}, {x, xv}, {w, wv}}), {3, 4}));
  check_grad(y, {{x, xv}, {w, wv}}, 1e-6, {.extra_feeds = {{p, true}}});
  check_grad(y, {{x, xv}, {w, wv}}, 1e-6, {.extra_feeds = {{p, false}}});
}
