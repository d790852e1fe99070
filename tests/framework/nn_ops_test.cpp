// nn ops: values against hand-computed or formula-computed references (the source is named at each
// check), numerical stability at logits of +-1000, errors (type, and a message naming the op), and
// one gradient check per differentiable op, first and second order.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::check_grad;
using kiln::testing::column;
using kiln::testing::contains;

using kiln::testing::message_of;

namespace {

// Elementwise reference from a scalar formula.
xt::xarray<double> map(const xt::xarray<double>& x, const std::function<double(double)>& f) {
  xt::xarray<double> y = x;
  for (auto& v : y) v = f(v);
  return y;
}

bool all_finite(const Array& a) {
  const auto v = a.to_double();
  return std::all_of(v.begin(), v.end(), [](double d) { return std::isfinite(d); });
}

}  // namespace

TEST_CASE("nn.activation_values") {
  Graph g;
  auto guard = g.as_default();
  const xt::xarray<double> xv{-2.0, -0.5, 0.25, 3.0, 7.0};
  Session sess;
  for (DType t : {float32, float64}) {
    CAPTURE(t);
    Tensor x = cast(constant(xv), t);
    const double tol = t == float32 ? 1e-6 : 1e-12;
    // References: the std:: formulas of TF's definitions, in double.
    CHECK(kiln::testing::allclose(sess.run(nn::relu(x)), {0, 0, 0.25, 3, 7}));
    CHECK(kiln::testing::allclose(sess.run(nn::relu6(x)), {0, 0, 0.25, 3, 6}));
    CHECK(kiln::testing::allclose(sess.run(nn::elu(x)),
                                  map(xv, [](double v) { return v > 0 ? v : std::expm1(v); }), tol,
                                  tol));
    CHECK(kiln::testing::allclose(sess.run(nn::sigmoid(x)),
                                  map(xv, [](double v) { return 1 / (1 + std::exp(-v)); }), tol,
                                  tol));
    CHECK(kiln::testing::allclose(sess.run(nn::tanh(x)),
                                  map(xv, [](double v) { return std::tanh(v); }), tol, tol));
    CHECK(kiln::testing::allclose(sess.run(nn::softplus(x)),
                                  map(xv, [](double v) { return std::log(1 + std::exp(v)); }), tol,
                                  tol));
  }
  CHECK(nn::relu(placeholder(float32, {-1, 3})).shape() == Shape{-1, 3});
}

TEST_CASE("nn.activations_are_stable_at_extremes") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = constant(xt::xarray<float>{-1000, -100, 100, 1000});
  Session sess;
  // Limits: sigmoid -> 0/1, tanh -> -1/1, softplus(x) -> 0 / x, elu -> -1.
  CHECK(kiln::testing::allclose(sess.run(nn::sigmoid(x)), {0, 0, 1, 1}));
  CHECK(kiln::testing::allclose(sess.run(nn::tanh(x)), {-1, -1, 1, 1}));
  CHECK(kiln::testing::allclose(sess.run(nn::softplus(x)), {0, 0, 100, 1000}));
  CHECK(kiln::testing::allclose(sess.run(nn::elu(x)), {-1, -1, 100, 1000}));
  const auto grads = gradients({nn::sigmoid(x), nn::softplus(x), nn::tanh(x), nn::elu(x)}, {x});
  CHECK(all_finite(sess.run(*grads[0])));
}

TEST_CASE("nn.softmax_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Hand-computed: e^1, e^2, e^3 = 2.718281828, 7.389056099, 20.08553692, sum 30.19287485,
  // log(sum) = 3.40760596.
  Tensor x = constant(xt::xarray<float>{{1, 2, 3}, {1000, 0, -1000}});
  CHECK(kiln::testing::allclose(sess.run(nn::softmax(x)),
                                {{0.0900305732, 0.2447284711, 0.6652409558}, {1, 0, 0}}));
  CHECK(kiln::testing::allclose(sess.run(nn::log_softmax(x)),
                                {{-2.40760596, -1.40760596, -0.40760596}, {0, -1000, -2000}}));
  // The same along axis 0 of the transpose.
  Tensor xt_ = constant(xt::xarray<double>{{1, 1000}, {2, 0}, {3, -1000}});
  CHECK(kiln::testing::allclose(sess.run(nn::softmax(xt_, 0)),
                                {{0.0900305732, 1}, {0.2447284711, 0}, {0.6652409558, 0}}));
  CHECK(kiln::testing::allclose(sess.run(nn::log_softmax(xt_, -2)),
                                {{-2.40760596, 0}, {-1.40760596, -1000}, {-0.40760596, -2000}}));
  // A middle axis of a 3-D tensor against the formula exp(x) / sum exp(x) computed here.
  xt::xarray<double> v = xt::xarray<double>::from_shape({2, 3, 4});
  for (std::size_t i = 0; i < v.size(); ++i) v.data()[i] = std::sin(1.7 * double(i));
  xt::xarray<double> ref = v;
  for (std::size_t a = 0; a < 2; ++a)
    for (std::size_t c = 0; c < 4; ++c) {
      double s = 0;
      for (std::size_t b = 0; b < 3; ++b) s += std::exp(v(a, b, c));
      for (std::size_t b = 0; b < 3; ++b) ref(a, b, c) = std::exp(v(a, b, c)) / s;
    }
  CHECK(kiln::testing::allclose(sess.run(nn::softmax(constant(v), 1)), ref, 1e-12, 1e-14));
  CHECK(kiln::testing::allclose(sess.run(nn::log_softmax(constant(v), 1)),
                                map(ref, [](double p) { return std::log(p); }), 1e-12, 1e-14));
  // float32 keeps the small log-sum term: log_softmax([10, 0])[0] = -log(1 + e^-10) =
  // -4.5398899e-5.
  CHECK(kiln::testing::allclose(sess.run(nn::log_softmax(constant(xt::xarray<float>{10, 0}))),
                                {-4.5398899e-5, -10.0000454}, 1e-5, 0));
}

TEST_CASE("nn.softmax_errors_name_the_op") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3});
  const auto msg = message_of<ValueError>([&] { nn::softmax(x, 2, "probs"); });
  CHECK(contains(msg, "probs"));
  CHECK(contains(msg, "Softmax"));
  CHECK(contains(msg, "[2,3]"));
  CHECK_THROWS_AS(nn::log_softmax(placeholder(float32, {}), -1), ValueError);
  CHECK(contains(message_of<TypeError>([&] { nn::relu(placeholder(int32, {2})); }), "Relu"));
  // Rank known only at run time.
  Tensor u = placeholder(float32);
  Session sess;
  const auto run_msg = message_of<InvalidArgumentError>([&] {
    sess.run(nn::softmax(u, 3, "late"), {{u, xt::xarray<float>{1, 2}}});
  });
  CHECK(contains(run_msg, "late"));
}

TEST_CASE("nn.sparse_softmax_cross_entropy_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  Tensor logits = constant(xt::xarray<float>{{1, 2, 3}, {1000, 0, -1000}, {1, 2, 3}});
  // Hand-computed: -log_softmax at the label ([-2.4076, -1.4076, -0.4076] of row 0; [0, -1000,
  // -2000]).
  for (DType lt : {int32, int64}) {
    Tensor labels = cast(constant(xt::xarray<std::int32_t>{2, 1, 0}), lt);
    Tensor loss = nn::sparse_softmax_cross_entropy_with_logits(labels, logits);
    CHECK(loss.op().type() == "SparseSoftmaxCrossEntropyWithLogits");
    CHECK(loss.shape() == Shape{3});
    const auto out = sess.run({loss, loss.op().output(1)});
    CHECK(kiln::testing::allclose(out[0], {0.40760596, 1000, 2.40760596}));
    // backprop = softmax - one_hot.
    CHECK(kiln::testing::allclose(out[1], {{0.0900305732, 0.2447284711, 0.6652409558 - 1},
                                           {1, -1, 0},
                                           {0.0900305732 - 1, 0.2447284711, 0.6652409558}}));
  }
  // Higher rank: labels [2, 1], logits [2, 1, 3].
  xt::xarray<std::int64_t> l3v{2, 0};
  l3v.reshape({2, 1});
  Tensor l3 = constant(l3v);
  Tensor x3 = constant(xt::xarray<double>{{{1, 2, 3}}, {{1, 2, 3}}});
  CHECK(kiln::testing::allclose(sess.run(nn::sparse_softmax_cross_entropy_with_logits(l3, x3)),
                                column({0.40760596, 2.40760596})));
  // Gradients at +-1000 stay finite.
  Tensor lp = placeholder(float32, {-1, 3});
  Tensor loss =
      nn::sparse_softmax_cross_entropy_with_logits(constant(xt::xarray<std::int32_t>{0, 2}), lp);
  CHECK(loss.shape() == Shape{2});
  const Array dx = sess.run(*gradients(loss, {lp})[0],
                            {{lp, xt::xarray<float>{{1000, -1000, 0}, {-1000, 1000, 0}}}});
  CHECK(kiln::testing::allclose(dx, {{0, 0, 0}, {0, 1, -1}}));
}

TEST_CASE("nn.sparse_softmax_cross_entropy_errors") {
  Graph g;
  auto guard = g.as_default();
  Tensor logits = placeholder(float32, {2, 3});
  Tensor labels = placeholder(int32, {2});
  Tensor loss = nn::sparse_softmax_cross_entropy_with_logits(labels, logits, "xent");
  Session sess;
  const xt::xarray<float> lv{{1, 2, 3}, {4, 5, 6}};
  for (std::int32_t bad : {3, -1}) {
    const auto msg = message_of<InvalidArgumentError>([&] {
      sess.run(loss, {{logits, lv}, {labels, xt::xarray<std::int32_t>{0, bad}}});
    });
    CHECK(contains(msg, "xent"));
    CHECK(contains(msg, "label value of " + std::to_string(bad)));
  }
  const auto rank_msg = message_of<ValueError>([&] {
    nn::sparse_softmax_cross_entropy_with_logits(placeholder(int32, {2, 1}), logits, "bad_rank");
  });
  CHECK(contains(rank_msg, "bad_rank"));
  CHECK(contains(rank_msg, "SparseSoftmaxCrossEntropyWithLogits"));
  CHECK_THROWS_AS(nn::sparse_softmax_cross_entropy_with_logits(placeholder(int32, {3}), logits),
                  ValueError);
  CHECK_THROWS_AS(nn::sparse_softmax_cross_entropy_with_logits(placeholder(float32, {2}), logits),
                  TypeError);
}

TEST_CASE("nn.softmax_cross_entropy_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Hand-computed: row 0 -log_softmax[2] = 0.40760596; row 1 0.5 * 0 + 0.5 * 1000 = 500.
  Tensor labels = constant(xt::xarray<float>{{0, 0, 1}, {0.5, 0.5, 0}});
  Tensor logits = constant(xt::xarray<float>{{1, 2, 3}, {1000, 0, -1000}});
  Tensor loss = nn::softmax_cross_entropy_with_logits(labels, logits);
  CHECK(loss.op().type() == "SoftmaxCrossEntropyWithLogits");
  const auto out = sess.run({loss, loss.op().output(1)});
  CHECK(kiln::testing::allclose(out[0], {0.40760596, 500}));
  CHECK(kiln::testing::allclose(out[1],
                                {{0.0900305732, 0.2447284711, 0.6652409558 - 1}, {0.5, -0.5, 0}}));
  const auto msg = message_of<ValueError>([&] {
    nn::softmax_cross_entropy_with_logits(placeholder(float32, {2, 4}), logits, "dense_xent");
  });
  CHECK(contains(msg, "dense_xent"));
  CHECK(contains(msg, "SoftmaxCrossEntropyWithLogits"));
  CHECK_THROWS_AS(nn::softmax_cross_entropy_with_logits(placeholder(float64, {2, 3}), logits),
                  TypeError);
}

TEST_CASE("nn.sigmoid_cross_entropy_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Reference: the textbook form -z log(sigmoid(x)) - (1 - z) log(1 - sigmoid(x)) in double.
  const xt::xarray<double> xv{-3, -0.5, 0.0, 0.7, 2.5}, zv{0.0, 1.0, 0.3, 0.6, 1.0};
  xt::xarray<double> ref = xv;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double s = 1 / (1 + std::exp(-xv(i)));
    ref(i) = -zv(i) * std::log(s) - (1 - zv(i)) * std::log(1 - s);
  }
  CHECK(kiln::testing::allclose(
      sess.run(nn::sigmoid_cross_entropy_with_logits(constant(zv), constant(xv))), ref, 1e-12,
      1e-14));
  // Stable form at the extremes: max(x, 0) - x z + log1p(e^-|x|) = 1000, 1000, 0, 0.
  Tensor x = constant(xt::xarray<float>{1000, -1000, 1000, -1000});
  Tensor z = constant(xt::xarray<float>{0, 1, 1, 0});
  CHECK(kiln::testing::allclose(sess.run(nn::sigmoid_cross_entropy_with_logits(z, x)),
                                {1000, 1000, 0, 0}));
  CHECK(all_finite(sess.run(*gradients(nn::sigmoid_cross_entropy_with_logits(z, x), {x})[0])));
  CHECK(contains(message_of<ValueError>([&] {
                   nn::sigmoid_cross_entropy_with_logits(placeholder(float32, {3}),
                                                         placeholder(float32, {4}), "sxent");
                 }),
                 "sxent"));
  CHECK_THROWS_AS(nn::sigmoid_cross_entropy_with_logits(placeholder(float64, {4}), x), TypeError);
}

TEST_CASE("nn.l2_loss_and_bias_add_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Hand-computed: (1 + 4 + 9 + 16) / 2 = 15.
  Tensor l2 = nn::l2_loss(constant(xt::xarray<double>{{1, -2}, {3, 4}}));
  CHECK(l2.shape() == Shape{});
  CHECK(sess.run(l2).scalar<double>() == 15.0);
  // NHWC adds b along the last dimension, NCHW along dimension 1.
  Tensor x = constant(xt::xarray<float>{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}});
  Tensor b = constant(xt::xarray<float>{10, 20});
  CHECK(kiln::testing::allclose(sess.run(nn::bias_add(x, b)),
                                {{{11, 22}, {13, 24}}, {{15, 26}, {17, 28}}}));
  CHECK(kiln::testing::allclose(sess.run(nn::bias_add(x, b, "NCHW")),
                                {{{11, 12}, {23, 24}}, {{15, 16}, {27, 28}}}));
  CHECK(kiln::testing::allclose(sess.run(nn::bias_add(constant(xt::xarray<float>{{1, 2}}), b)),
                                {{11, 22}}));
  // BiasAddGrad sums over all but the channel: NHWC [1+3+5+7, 2+4+6+8], NCHW [1+2+5+6, 3+4+7+8].
  CHECK(kiln::testing::allclose(sess.run(*gradients(nn::bias_add(x, b) * x, {b})[0]), {16, 20}));
  CHECK(kiln::testing::allclose(sess.run(*gradients(nn::bias_add(x, b, "NCHW") * x, {b})[0]),
                                {14, 22}));
}

TEST_CASE("nn.bias_add_errors") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4, 4, 3});
  const auto msg = message_of<ValueError>([&] {
    nn::bias_add(x, placeholder(float32, {3, 1}), "NHWC", "bias");
  });
  CHECK(contains(msg, "bias"));
  CHECK(contains(msg, "BiasAdd"));
  CHECK(contains(msg, "1-D"));
  CHECK(contains(message_of<ValueError>([&] { nn::bias_add(x, placeholder(float32, {4})); }),
                 "BiasAdd"));
  CHECK(nn::bias_add(x, placeholder(float32, {4}), "NCHW").shape() == Shape{-1, 4, 4, 3});
  CHECK_THROWS_AS(nn::bias_add(x, placeholder(float32, {3}), "NCHW"), ValueError);
  CHECK_THROWS_AS(nn::bias_add(x, placeholder(float32, {3}), "NWHC"), ValueError);
  CHECK_THROWS_AS(nn::bias_add(placeholder(float32, {3}), placeholder(float32, {3})), ValueError);
  CHECK_THROWS_AS(nn::bias_add(x, placeholder(float64, {3})), TypeError);
  // Sizes known only at run time.
  Tensor u = placeholder(float32, {-1, -1});
  Tensor ub = placeholder(float32, {-1});
  Session sess;
  const auto run_msg = message_of<InvalidArgumentError>([&] {
    sess.run(nn::bias_add(u, ub, "NHWC", "late_bias"),
             {{u, xt::xarray<float>{{1, 2}}}, {ub, xt::xarray<float>{1, 2, 3}}});
  });
  CHECK(contains(run_msg, "late_bias"));
}

TEST_CASE("nn.moments_values_and_accuracy") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Hand-computed: columns [1, 3] and [2, 4]: mean [2, 3], biased variance [1, 1].
  Tensor x = constant(xt::xarray<float>{{1, 2}, {3, 4}});
  auto [mean, variance] = nn::moments(x, {0});
  CHECK(mean.shape() == Shape{2});
  CHECK(kiln::testing::allclose(sess.run(mean), {2, 3}));
  CHECK(kiln::testing::allclose(sess.run(variance), {1, 1}));
  auto [mk, vk] = nn::moments(x, {-1}, true);
  CHECK(vk.shape() == Shape{2, 1});
  CHECK(kiln::testing::allclose(sess.run(mk), column({1.5, 3.5})));
  CHECK(kiln::testing::allclose(sess.run(vk), column({0.25, 0.25})));
  auto [ma, va] = nn::moments(x, {});
  CHECK(ma.shape() == Shape{});
  CHECK(kiln::testing::allclose(sess.run(va), xt::xarray<double>(1.25)));
  CHECK_THROWS_AS(nn::moments(x, {2}), ValueError);

  // Channels offset by 1e4 (NHWC-like [N, C]) in float32: the reference is computed in double from
  // the same float32 values. A one-pass E[x^2] - E[x]^2 would lose every digit here.
  const std::size_t n = 1000, channels = 3;
  xt::xarray<float> v = xt::xarray<float>::from_shape({n, channels});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t c = 0; c < channels; ++c)
      v(i, c) = static_cast<float>(1e4 * double(c + 1) + std::sin(0.37 * double(i * channels + c)));
  xt::xarray<double> ref_mean = xt::zeros<double>({channels}),
                     ref_var = xt::zeros<double>({channels});
  for (std::size_t c = 0; c < channels; ++c) {
    for (std::size_t i = 0; i < n; ++i) ref_mean(c) += v(i, c);
    ref_mean(c) /= double(n);
    for (std::size_t i = 0; i < n; ++i)
      ref_var(c) += (v(i, c) - ref_mean(c)) * (v(i, c) - ref_mean(c));
    ref_var(c) /= double(n);
  }
  auto [m32, v32] = nn::moments(constant(v), {0});
  CHECK(kiln::testing::allclose(sess.run(m32), ref_mean, 1e-6, 0));
  CHECK(kiln::testing::allclose(sess.run(v32), ref_var, 1e-4, 0));
}

TEST_CASE("nn.batch_normalization_values") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Reference: (x - mean) / sqrt(var + eps) * scale + offset per channel, in double.
  const xt::xarray<double> xv{{1, 2, 3}, {4, 5, 6}}, mv{2.5, 3.0, 4.0}, vv{2.25, 1.0, 4.0},
      ov{0.1, -0.2, 0.3}, sv{1.5, 0.5, 2.0};
  const double eps = 1e-3;
  xt::xarray<double> full = xv, plain = xv;
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t c = 0; c < 3; ++c) {
      plain(i, c) = (xv(i, c) - mv(c)) / std::sqrt(vv(c) + eps);
      full(i, c) = plain(i, c) * sv(c) + ov(c);
    }
  Tensor x = constant(xv), m = constant(mv), v = constant(vv);
  CHECK(kiln::testing::allclose(
      sess.run(nn::batch_normalization(x, m, v, constant(ov), constant(sv), eps)), full, 1e-12,
      1e-14));
  CHECK(kiln::testing::allclose(
      sess.run(nn::batch_normalization(x, m, v, std::nullopt, std::nullopt, eps)), plain, 1e-12,
      1e-14));
}

TEST_CASE("nn.dropout") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(7);
  Tensor x = placeholder(float32, {-1, 50});
  const xt::xarray<float> ones = xt::ones<float>({20, 50});
  Tensor y = nn::dropout(x, 0.25);
  CHECK(y.shape() == Shape{-1, 50});
  Session sess;
  const auto a = sess.run(y, {{x, ones}}).as<float>();
  const auto b = sess.run(y, {{x, ones}}).as<float>();
  // Each element is 0 or 1 / 0.75; about 75 % kept; a new mask each run.
  std::size_t kept = 0;
  for (float e : a) {
    CHECK((e == 0.0f || std::abs(e - 1 / 0.75f) < 1e-6f));
    kept += e != 0.0f;
  }
  CHECK(kept > 650);
  CHECK(kept < 850);
  CHECK(a != b);
  // Seeded graphs reproduce their masks in a new session.
  Session again;
  CHECK(again.run(y, {{x, ones}}).as<float>() == a);
  // noise_shape {-1, 1}: whole rows kept or dropped.
  const auto rows = sess.run(nn::dropout(x, 0.5, {-1, 1}, 3), {{x, ones}}).as<float>();
  for (std::size_t i = 0; i < 20; ++i)
    for (std::size_t j = 1; j < 50; ++j) CHECK(rows(i, j) == rows(i, 0));
  // dy/dx = mask / keep: fetched in the same run as y, so the same mask.
  const auto both = sess.run({y, *gradients(y, {x})[0]}, {{x, ones}});
  CHECK(both[0].as<float>() == both[1].as<float>());
  CHECK(nn::dropout(x, 0.0) == x);
  for (double rate : {1.0, -0.1, 1.5, std::nan("")})
    CHECK(contains(message_of<ValueError>([&] { nn::dropout(x, rate); }), "dropout"));
  CHECK_THROWS_AS(nn::dropout(placeholder(int32, {3}), 0.5), ValueError);
  CHECK(contains(message_of<ValueError>([&] {
                   nn::dropout(x, 0.5, {1, 49}, {}, "drop");
                 }),
                 "drop"));
  CHECK_THROWS_AS(nn::dropout(x, 0.5, {1, 1, 50}), ValueError);
}

TEST_CASE("nn.gradients") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2, 4}, "x");
  // Kink-free for relu (0) and relu6 (0, 6).
  const Array xv = xt::xarray<double>{{-1.3, -0.4, 0.3, 0.9}, {1.7, -2.2, 2.5, 6.8}};
  check_grad(nn::relu(x), {{x, xv}});
  check_grad(nn::relu6(x), {{x, xv}});
  check_grad(nn::elu(x), {{x, xv}});
  check_grad(nn::sigmoid(x), {{x, xv}});
  check_grad(nn::tanh(x), {{x, xv}});
  check_grad(nn::softplus(x), {{x, xv}});
  check_grad(nn::softmax(x), {{x, xv}});
  check_grad(nn::softmax(x, 0), {{x, xv}});
  check_grad(nn::log_softmax(x), {{x, xv}});
  check_grad(nn::log_softmax(x, 0), {{x, xv}});
  check_grad(nn::l2_loss(x), {{x, xv}});

  Tensor labels = placeholder(float64, {2, 4}, "labels");
  const Array lv =
      xt::xarray<double>{{0.1, 0.2, 0.3, 0.4}, {0.7, 0.0, 0.2, 0.4}};  // row 1 sums to 1.3
  check_grad(
      nn::sparse_softmax_cross_entropy_with_logits(constant(xt::xarray<std::int64_t>{3, 0}), x),
      {{x, xv}});
  check_grad(nn::softmax_cross_entropy_with_logits(labels, x), {{x, xv}, {labels, lv}});
  check_grad(nn::sigmoid_cross_entropy_with_logits(labels, x), {{x, xv}, {labels, lv}});

  Tensor b4 = placeholder(float64, {4}, "b4"), b2 = placeholder(float64, {2}, "b2");
  Tensor x4 = placeholder(float64, {2, 2, 3}, "x4");
  const Array b4v = xt::xarray<double>{0.5, -1, 2, 0.25}, b2v = xt::xarray<double>{-0.5, 1.5};
  const Array x4v = xt::xarray<double>{{{1, 2, 3}, {4, 5, 6}}, {{-1, -2, -3}, {0.5, 0.25, 2}}};
  check_grad(nn::bias_add(x, b4), {{x, xv}, {b4, b4v}});
  check_grad(nn::bias_add(x4, b2, "NCHW"), {{x4, x4v}, {b2, b2v}});

  auto [mean, variance] = nn::moments(x4, {0, 2});
  check_grad(mean, {{x4, x4v}});
  check_grad(variance, {{x4, x4v}});
  auto [mean1, variance1] = nn::moments(x, {-1}, true);
  check_grad(variance1 + mean1, {{x, xv}});

  Tensor m = placeholder(float64, {4}, "m"), v = placeholder(float64, {4}, "v");
  Tensor off = placeholder(float64, {4}, "off"), sc = placeholder(float64, {4}, "sc");
  const Array mv = xt::xarray<double>{0.1, -0.2, 0.3, 1.0},
              vv = xt::xarray<double>{0.5, 1.5, 2.0, 0.8};
  const Array ov = xt::xarray<double>{0.0, 0.5, -0.5, 1.0},
              sv = xt::xarray<double>{1.2, 0.7, -0.3, 2.0};
  check_grad(nn::batch_normalization(x, m, v, off, sc, 1e-3),
             {{x, xv}, {m, mv}, {v, vv}, {off, ov}, {sc, sv}});
  check_grad(nn::batch_normalization(x, m, v, std::nullopt, std::nullopt, 1e-3),
             {{x, xv}, {m, mv}, {v, vv}});
}

TEST_CASE("nn.second_order_gradients") {
  // Gradient ops' own gradients: d/dx and d/d(grad_y) of gradients(f(x), x, grad_y).
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2, 4}, "x");
  Tensor gy = placeholder(float64, {2, 4}, "gy");
  const Array xv = xt::xarray<double>{{-1.3, -0.4, 0.3, 0.9}, {1.7, -2.2, 2.5, 6.8}};
  const Array gv = xt::xarray<double>{{0.5, -1.0, 2.0, 0.3}, {-0.7, 1.1, 0.4, -1.5}};
  const auto second = [&](const Tensor& y) {
    const Tensor dx = *gradients({y}, {x}, {gy})[0];
    check_grad(dx, {{x, xv}, {gy, gv}});
  };
  second(nn::relu(x));      // ReluGrad
  second(nn::relu6(x));     // Relu6Grad
  second(nn::elu(x));       // EluGrad
  second(nn::sigmoid(x));   // SigmoidGrad
  second(nn::tanh(x));      // TanhGrad
  second(nn::softplus(x));  // SoftplusGrad
  second(nn::softmax(x));
  second(nn::log_softmax(x));

  // Cross entropies: the gradient reaches the backprop output (second output).
  Tensor gl = placeholder(float64, {2}, "gl");
  const Array glv = xt::xarray<double>{0.7, -1.3};
  Tensor sparse =
      nn::sparse_softmax_cross_entropy_with_logits(constant(xt::xarray<std::int32_t>{1, 2}), x);
  check_grad(*gradients({sparse}, {x}, {gl})[0], {{x, xv}, {gl, glv}});
  Tensor labels = placeholder(float64, {2, 4}, "labels");
  const Array lv = xt::xarray<double>{{0.1, 0.2, 0.3, 0.4}, {0.7, 0.0, 0.2, 0.4}};
  Tensor dense = nn::softmax_cross_entropy_with_logits(labels, x);
  check_grad(*gradients({dense}, {x}, {gl})[0], {{x, xv}, {labels, lv}, {gl, glv}});
  check_grad(*gradients({dense}, {labels}, {gl})[0], {{x, xv}, {gl, glv}});

  // BiasAddGrad: linear in its input.
  Tensor b = placeholder(float64, {4}, "b");
  check_grad(*gradients({nn::bias_add(x, b)}, {b}, {gy})[0], {{gy, gv}});
  Tensor x4 = placeholder(float64, {2, 3, 2}, "x4"), g4 = placeholder(float64, {2, 3, 2}, "g4");
  const Array g4v = xt::xarray<double>{{{1, 2}, {3, 4}, {5, 6}}, {{-1, 0.5}, {0.25, 2}, {-3, 1}}};
  Tensor b3 = placeholder(float64, {3}, "b3");
  check_grad(*gradients({nn::bias_add(x4, b3, "NCHW")}, {b3}, {g4})[0], {{g4, g4v}});
}

TEST_CASE("nn.gradients_float32") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Tensor b = placeholder(float32, {3}, "b");
  const Array xv = xt::xarray<float>{{-1.3f, 0.4f, 2.1f}, {0.7f, -0.2f, 1.5f}};
  const Array bv = xt::xarray<float>{0.5f, -1.0f, 0.25f};
  GradientCheckOptions opt;
  opt.delta = 1e-3;
  check_grad(nn::softmax(x), {{x, xv}}, 1e-2, opt);
  check_grad(nn::log_softmax(x), {{x, xv}}, 1e-2, opt);
  check_grad(nn::sigmoid(x), {{x, xv}}, 1e-2, opt);
  check_grad(nn::tanh(x), {{x, xv}}, 1e-2, opt);
  check_grad(nn::softplus(x), {{x, xv}}, 1e-2, opt);
  check_grad(nn::bias_add(x, b), {{x, xv}, {b, bv}}, 1e-2, opt);
  check_grad(
      nn::sparse_softmax_cross_entropy_with_logits(constant(xt::xarray<std::int32_t>{2, 0}), x),
      {{x, xv}}, 1e-2, opt);
}
