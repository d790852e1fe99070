// Regularizers (Keras scale convention), constraints (Keras definitions), losses (tf.losses means
// with unit weights) and metrics::accuracy against formulas evaluated here with plain doubles.
#include <doctest/doctest.h>

#include <cmath>

#include <kiln.hpp>

#include "tests/support/approx.hpp"

using namespace kiln;

namespace {

Initializer values(xt::xarray<double> v) {
  return [v](const Shape&, DType dtype) {
    Tensor t = constant(v);
    return dtype == float64 ? t : cast(t, dtype);
  };
}

template <class E, class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception of the expected type>";
}

}  // namespace

TEST_CASE("regularizers.losses_equal_their_formulas") {
  Graph graph;
  auto guard = graph.as_default();
  const xt::xarray<double> a{{1.0, -2.0}, {0.5, 3.0}};
  const xt::xarray<double> b{-1.5, 0.25};
  Variable wa = get_variable("a", {2, 2}, {.dtype = float64, .initializer = values(a), .regularizer = regularizers::l2(0.1)});
  get_variable("b", {2}, {.dtype = float64, .initializer = values(b), .regularizer = regularizers::l1(0.3)});
  get_variable("c", {2}, {.dtype = float64, .initializer = values(b), .regularizer = regularizers::l1_l2(0.2, 0.4)});
  get_variable("d", {2}, {.dtype = float64, .initializer = values(b)});  // no regularizer

  double sq_a = 0, abs_b = 0, sq_b = 0;
  for (double x : a) sq_a += x * x;
  for (double x : b) {
    abs_b += std::abs(x);
    sq_b += x * x;
  }
  const double la = 0.1 * sq_a;               // Keras: scale * sum(w^2), no 1/2
  const double lb = 0.3 * abs_b;              // scale * sum(|w|)
  const double lc = 0.2 * abs_b + 0.4 * sq_b;  // l1 * sum(|w|) + l2 * sum(w^2)

  const auto reg = losses::get_regularization_losses();
  REQUIRE(reg.size() == 3);
  CHECK(reg[0].shape() == Shape{});
  CHECK(reg[0].name().rfind("a/Regularizer/", 0) == 0);
  Tensor total = losses::get_regularization_loss();
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(reg[0]).scalar<double>() == doctest::Approx(la).epsilon(1e-14));
  CHECK(sess.run(reg[1]).scalar<double>() == doctest::Approx(lb).epsilon(1e-14));
  CHECK(sess.run(reg[2]).scalar<double>() == doctest::Approx(lc).epsilon(1e-14));
  CHECK(sess.run(total).scalar<double>() == doctest::Approx(la + lb + lc).epsilon(1e-14));
  CHECK(losses::get_regularization_losses("b").size() == 1);

  // TF1 contrib's l2_regularizer(s) = s * l2_loss(w) = s/2 * sum(w^2): ported as l2(s / 2).
  CHECK(sess.run(regularizers::l2(0.1 / 2)(wa.value())).scalar<double>() ==
        doctest::Approx(sess.run(nn::l2_loss(wa.value()) * 0.1).scalar<double>()).epsilon(1e-14));
  CHECK(error_of<ValueError>([] { regularizers::l2(-0.1); }) == "Setting a scale less than 0 on a regularizer: -0.1");
}

TEST_CASE("regularizers.empty_collection_gives_zero") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor zero = losses::get_regularization_loss();
  CHECK(zero.dtype() == float32);
  CHECK(zero.shape() == Shape{});
  Session sess;
  CHECK(sess.run(zero).scalar<float>() == 0.0f);
  CHECK(losses::get_regularization_losses().empty());
}

TEST_CASE("regularizers.gradient_reaches_the_variable") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w = get_variable("w", {2}, {.dtype = float64, .initializer = values({1.0, -2.0}), .regularizer = regularizers::l2(0.5)});
  Operation train_op = train::GradientDescentOptimizer(0.1).minimize(losses::get_regularization_loss());
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(train_op);  // g = 2 * 0.5 * w = w: w <- 0.9 w
  CHECK(kiln::testing::allclose(sess.run(w), {0.9, -1.8}, 1e-14, 0));
}

namespace {
// Keras's constraint formulas along axis 0 of a [rows, cols] matrix, in doubles.
xt::xarray<double> by_column(const xt::xarray<double>& w, const std::function<double(double)>& desired) {
  xt::xarray<double> r = w;
  for (std::size_t j = 0; j < w.shape()[1]; ++j) {
    double n = 0;
    for (std::size_t i = 0; i < w.shape()[0]; ++i) n += w(i, j) * w(i, j);
    n = std::sqrt(n);
    for (std::size_t i = 0; i < w.shape()[0]; ++i) r(i, j) = w(i, j) * (desired(n) / (1e-7 + n));
  }
  return r;
}
}  // namespace

TEST_CASE("constraints.keras_definitions") {
  Graph graph;
  auto guard = graph.as_default();
  const xt::xarray<double> w{{3.0, 0.1, -0.3}, {4.0, -0.2, 0.4}};  // column norms 5, 0.2236, 0.5
  Tensor t = constant(w);
  Session sess;
  CHECK(kiln::testing::allclose(sess.run(constraints::max_norm(2.0)(t)),
                 by_column(w, [](double n) { return std::clamp(n, 0.0, 2.0); }), 1e-12, 1e-15));
  CHECK(kiln::testing::allclose(sess.run(constraints::unit_norm()(t)), by_column(w, [](double) { return 1.0; }), 1e-12, 1e-15));
  CHECK(kiln::testing::allclose(sess.run(constraints::min_max_norm(0.3, 1.0, 0.5)(t)),
                 by_column(w, [](double n) { return 0.5 * std::clamp(n, 0.3, 1.0) + 0.5 * n; }), 1e-12, 1e-15));
  CHECK(kiln::testing::allclose(sess.run(constraints::min_max_norm()(t)),
                 by_column(w, [](double n) { return std::clamp(n, 0.0, 1.0); }), 1e-12, 1e-15));
  CHECK(kiln::testing::allclose(sess.run(constraints::non_neg()(t)), {{3.0, 0.1, 0.0}, {4.0, 0.0, 0.4}}, 0, 0));
  // axis 1: the norms of the rows.
  const xt::xarray<double> wt = xt::transpose(w);
  const xt::xarray<double> expect_rows = xt::transpose(by_column(w, [](double n) { return std::min(n, 2.0); }));
  CHECK(kiln::testing::allclose(sess.run(constraints::max_norm(2.0, {1})(constant(wt))), expect_rows, 1e-12, 1e-15));
  // All axes: one norm for the whole tensor.
  Tensor whole = constraints::unit_norm({0, 1})(t);
  double n = 0;
  for (double x : w) n += x * x;
  CHECK(kiln::testing::allclose(sess.run(whole), xt::xarray<double>(w / (1e-7 + std::sqrt(n))), 1e-12, 1e-15));
}

TEST_CASE("constraints.applied_by_the_optimizer") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w = get_variable("w", {2}, {.dtype = float64, .initializer = values({1.0, 1.0}),
                                       .constraint = constraints::max_norm(1.0)});
  Tensor loss = w.value() * -10.0;  // g = -10: w grows to 2, then is projected to norm 1
  Operation train_op = train::GradientDescentOptimizer(0.1).minimize(loss);
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(train_op);
  const double v = 2.0 * (1.0 / (1e-7 + std::sqrt(8.0)));
  CHECK(kiln::testing::allclose(sess.run(w), {v, v}, 1e-12, 0));
  // Not applied by anything else: assigning outside the optimizer leaves the value as is.
  sess.run(assign(w, constant(xt::xarray<double>{5.0, 5.0})));
  CHECK(kiln::testing::allclose(sess.run(w), {5.0, 5.0}, 0, 0));
}

namespace {
double logsumexp(const std::vector<double>& x) {
  const double m = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  return m + std::log(s);
}
}  // namespace

TEST_CASE("losses.values_and_collection") {
  Graph graph;
  auto guard = graph.as_default();
  const std::vector<std::vector<double>> z{{1.0, 2.0, 3.0}, {1.0, 1.0, 1.0}, {-2.0, 0.5, 4.0}};
  Tensor logits = constant(xt::xarray<double>{{1.0, 2.0, 3.0}, {1.0, 1.0, 1.0}, {-2.0, 0.5, 4.0}});
  Tensor labels = constant(xt::xarray<std::int64_t>{2, 0, 1});
  const std::vector<std::vector<double>> onehot{{0, 0, 1}, {1, 0, 0}, {0.25, 0.75, 0}};
  Tensor onehot_t = constant(xt::xarray<double>{{0, 0, 1}, {1, 0, 0}, {0.25, 0.75, 0}});
  Tensor sparse = losses::sparse_softmax_cross_entropy(labels, logits);
  Tensor dense = losses::softmax_cross_entropy(onehot_t, logits);
  Tensor multi = losses::sigmoid_cross_entropy(constant(xt::xarray<std::int32_t>{{0, 1, 1}, {1, 0, 0}, {0, 0, 1}}), logits);
  Tensor mse = losses::mean_squared_error(onehot_t, logits);

  double e_sparse = 0, e_dense = 0, e_sig = 0, e_mse = 0;
  const int mlab[3][3] = {{0, 1, 1}, {1, 0, 0}, {0, 0, 1}};
  const std::int64_t lab[3] = {2, 0, 1};
  for (std::size_t n = 0; n < 3; ++n) {
    const double lse = logsumexp(z[n]);
    e_sparse += lse - z[n][static_cast<std::size_t>(lab[n])];
    for (std::size_t k = 0; k < 3; ++k) {
      const double x = z[n][k];
      e_dense += -onehot[n][k] * (x - lse);
      e_sig += std::max(x, 0.0) - x * mlab[n][k] + std::log(1 + std::exp(-std::abs(x)));
      e_mse += (x - onehot[n][k]) * (x - onehot[n][k]);
    }
  }
  Session sess;
  CHECK(sess.run(sparse).scalar<double>() == doctest::Approx(e_sparse / 3).epsilon(1e-12));  // mean over the batch
  CHECK(sess.run(dense).scalar<double>() == doctest::Approx(e_dense / 3).epsilon(1e-12));
  CHECK(sess.run(multi).scalar<double>() == doctest::Approx(e_sig / 9).epsilon(1e-12));  // mean over elements
  CHECK(sess.run(mse).scalar<double>() == doctest::Approx(e_mse / 9).epsilon(1e-12));

  const auto collected = losses::get_losses();
  REQUIRE(collected.size() == 4);
  CHECK(collected[0] == sparse);
  CHECK(collected[3] == mse);
  CHECK(sparse.op().name() == "sparse_softmax_cross_entropy_loss/value");
  CHECK(sess.run(losses::get_total_loss()).scalar<double>() ==
        doctest::Approx((e_sparse + e_dense) / 3 + (e_sig + e_mse) / 9).epsilon(1e-12));

  // softmax_cross_entropy sends no gradient to the labels (TF's stop_gradient).
  auto g = gradients(dense, {onehot_t, logits});
  CHECK_FALSE(g[0]);
  CHECK(g[1]);

  CHECK_THROWS_AS(losses::mean_squared_error(constant(xt::xarray<double>{1.0, 2.0}), logits), ValueError);
  CHECK_THROWS_AS(losses::sparse_softmax_cross_entropy(constant(xt::xarray<std::int64_t>{0, 1}), logits), ValueError);
}

TEST_CASE("losses.float32_mean_squared_error_gradient") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor p = placeholder(float32, {2, 2}, "p");
  Tensor loss = losses::mean_squared_error(constant(xt::xarray<float>{{0, 1}, {2, 3}}), p);
  auto g = gradients(loss, {p});
  Session sess;
  // d/dp mean((p - y)^2) = 2 (p - y) / 4
  CHECK(kiln::testing::allclose(sess.run(*g[0], {{p, xt::xarray<float>{{1, 1}, {1, 1}}}}), {{0.5, 0.0}, {-0.5, -1.0}}));
}

TEST_CASE("losses.metrics_accuracy") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor labels = constant(xt::xarray<std::int64_t>{0, 1, 2, 1});
  Tensor acc = metrics::accuracy(labels, constant(xt::xarray<std::int64_t>{0, 2, 2, 1}));
  Tensor acc32 = metrics::accuracy(labels, constant(xt::xarray<std::int32_t>{1, 1, 0, 0}));
  CHECK(acc.dtype() == float32);
  Session sess;
  CHECK(sess.run(acc).scalar<float>() == 0.75f);
  CHECK(sess.run(acc32).scalar<float>() == 0.25f);
  CHECK_THROWS_AS(metrics::accuracy(labels, constant(xt::xarray<std::int64_t>{0, 1})), ValueError);
}
