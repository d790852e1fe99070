// Fused optimizer updates against the same equations written out in double (TF's training_ops.cc).
#include <doctest/doctest.h>

#include <cmath>

#include <kiln.hpp>

#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::contains;

namespace {
const xt::xarray<double> kVar{1.0, -2.0, 0.5}, kSlot{0.1, 0.2, 0.3}, kSlot2{0.4, 0.5, 0.6}, kGrad{0.3, -0.7, 2.0};

Variable var_of(const xt::xarray<double>& v, const std::string& name) {
  return Variable(constant(v), {.trainable = false, .name = name});
}
}  // namespace

TEST_CASE("training_ops.updates_match_tf_equations") {
  Graph g;
  auto guard = g.as_default();
  Variable w = var_of(kVar, "w"), a = var_of(kSlot, "a"), b = var_of(kSlot2, "b"), c = var_of(kSlot, "c");
  const Tensor grad = constant(kGrad);
  const auto s = [](double v) { return scalar(v, float64); };
  Session sess;
  const auto reset = [&] { sess.run(global_variables_initializer()); };
  xt::xarray<double> wv = kVar, av = kSlot, bv = kSlot2, cv = kSlot, gv = kGrad;

  reset();
  sess.run(apply_gradient_descent(w, s(0.1), grad));
  CHECK(kiln::testing::allclose(sess.run(w), wv - 0.1 * gv, 1e-12));

  reset();
  sess.run(apply_momentum(w, a, s(0.1), grad, s(0.9), /*use_nesterov=*/true));
  {
    xt::xarray<double> acc = av * 0.9 + gv;
    CHECK(kiln::testing::allclose(sess.run(a), acc, 1e-12));
    CHECK(kiln::testing::allclose(sess.run(w), wv - (gv * 0.1 + acc * 0.9 * 0.1), 1e-12));
  }

  reset();
  sess.run(apply_adam(w, a, b, s(0.9 * 0.9), s(0.999 * 0.999), s(0.01), s(0.9), s(0.999), s(1e-8), grad));
  {
    const double lr_t = 0.01 * std::sqrt(1 - 0.999 * 0.999) / (1 - 0.9 * 0.9);
    xt::xarray<double> m = av + (gv - av) * 0.1, v = bv + (gv * gv - bv) * 0.001;
    CHECK(kiln::testing::allclose(sess.run(a), m, 1e-12));
    CHECK(kiln::testing::allclose(sess.run(b), v, 1e-12));
    CHECK(kiln::testing::allclose(sess.run(w), wv - lr_t * m / (xt::sqrt(v) + 1e-8), 1e-12));
  }

  reset();
  sess.run(apply_centered_rms_prop(w, a, b, c, s(0.01), s(0.9), s(0.5), s(1e-6), grad));
  {
    xt::xarray<double> mg = av + (gv - av) * 0.1, ms = bv + (gv * gv - bv) * 0.1;
    xt::xarray<double> mom = cv * 0.5 + 0.01 * gv / xt::sqrt(ms - mg * mg + 1e-6);
    CHECK(kiln::testing::allclose(sess.run(c), mom, 1e-12));
    CHECK(kiln::testing::allclose(sess.run(w), wv - mom, 1e-12));
  }

  reset();
  sess.run(apply_adagrad(w, a, s(0.1), grad));
  {
    xt::xarray<double> acc = av + gv * gv;
    CHECK(kiln::testing::allclose(sess.run(w), wv - 0.1 * gv / xt::sqrt(acc), 1e-12));
  }
}

TEST_CASE("training_ops.errors_name_the_variable") {
  Graph g;
  auto guard = g.as_default();
  Variable w = var_of(kVar, "w");
  CHECK_THROWS_AS(apply_gradient_descent(w, scalar(0.1, float64), constant(xt::xarray<double>{1.0, 2.0})), ValueError);
  CHECK_THROWS_AS(apply_gradient_descent(w, constant(xt::xarray<double>{0.1, 0.1}), constant(kGrad)), ValueError);
  CHECK_THROWS_AS(apply_gradient_descent(w, scalar(0.1, float32), constant(kGrad)), TypeError);
  Session sess;
  try {
    sess.run(apply_gradient_descent(w, scalar(0.1, float64), constant(kGrad)));
    FAIL("expected FailedPreconditionError");
  } catch (const FailedPreconditionError& e) {
    CHECK(contains(e.what(), "w"));
  }
}
