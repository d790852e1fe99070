// NaN propagates through every kernel that compares (issue 11): maximum(NaN, x) = NaN as in NumPy
// and TF, on both the xsimd path (the first 64 - 64 % lanes elements) and the scalar tail. Inputs
// have 67 elements with NaNs in the vectorised part and in the tail; every other element is
// checked against the plain formula.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>

#include <kiln.hpp>

using namespace kiln;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t kN = 67;
const std::vector<std::size_t> kNaNAt{0, 5, 17, 33, 40, 65};

bool is_nan_at(std::size_t i) { return std::find(kNaNAt.begin(), kNaNAt.end(), i) != kNaNAt.end(); }

// -3.3 .. 10: crosses 0 and 6 (relu6), NaN at kNaNAt.
xt::xarray<double> values_with_nans() {
  xt::xarray<double> x = xt::xarray<double>::from_shape({kN});
  for (std::size_t i = 0; i < kN; ++i) x(i) = is_nan_at(i) ? kNaN : -3.3 + 0.2 * static_cast<double>(i);
  return x;
}

Array as(DType t, const xt::xarray<double>& v) {
  if (t == float32) return Array(xt::xarray<float>(xt::cast<float>(v)));
  return Array(v);
}

// y = f(x) elementwise: NaN exactly at the NaN inputs, else the reference within float precision.
void check_unary(DType t, const std::function<Tensor(const Tensor&)>& op,
                 const std::function<double(double)>& reference) {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(t, {static_cast<std::int64_t>(kN)}, "x");
  Session sess;
  const Array xv = as(t, values_with_nans());
  const auto xd = xv.to_double();  // the values as rounded to t
  const auto y = sess.run(op(x), {{x, xv}}).to_double();
  for (std::size_t i = 0; i < kN; ++i) {
    CAPTURE(i);
    if (is_nan_at(i))
      CHECK(std::isnan(y(i)));
    else
      CHECK(y(i) == doctest::Approx(reference(xd(i))).epsilon(1e-5));
  }
}

}  // namespace

TEST_CASE("nan_propagation.activations") {
  for (DType t : {float32, float64}) {
    CAPTURE(t);
    check_unary(t, [](const Tensor& x) { return nn::relu(x); }, [](double v) { return std::max(v, 0.0); });
    check_unary(t, [](const Tensor& x) { return nn::relu6(x); },
                [](double v) { return std::min(std::max(v, 0.0), 6.0); });
    check_unary(t, [](const Tensor& x) { return nn::elu(x); },
                [](double v) { return v > 0 ? v : std::expm1(v); });
    check_unary(t, [](const Tensor& x) { return nn::softplus(x); },
                [](double v) { return std::log1p(std::exp(v)); });
    check_unary(t, [](const Tensor& x) { return nn::sigmoid(x); },
                [](double v) { return 1 / (1 + std::exp(-v)); });
    check_unary(t, [](const Tensor& x) { return nn::tanh(x); }, [](double v) { return std::tanh(v); });
  }
}

TEST_CASE("nan_propagation.maximum_minimum_clip") {
  for (DType t : {float32, float64}) {
    CAPTURE(t);
    // NaN on either side, against a tensor and against a broadcast scalar.
    check_unary(t, [](const Tensor& x) { return maximum(x, scalar_like(1.0, x)); },
                [](double v) { return std::max(v, 1.0); });
    check_unary(t, [](const Tensor& x) { return maximum(scalar_like(1.0, x), x); },
                [](double v) { return std::max(v, 1.0); });
    check_unary(t, [](const Tensor& x) { return minimum(x, scalar_like(1.0, x)); },
                [](double v) { return std::min(v, 1.0); });
    check_unary(t, [](const Tensor& x) { return minimum(scalar_like(1.0, x), x); },
                [](double v) { return std::min(v, 1.0); });
    check_unary(t, [](const Tensor& x) { return maximum(zeros_like(x), x); },
                [](double v) { return std::max(v, 0.0); });
    check_unary(t, [](const Tensor& x) { return minimum(x, zeros_like(x)); },
                [](double v) { return std::min(v, 0.0); });
    check_unary(t, [](const Tensor& x) { return clip_by_value(x, -1.0, 2.0); },
                [](double v) { return std::min(std::max(v, -1.0), 2.0); });
  }
  // A NaN bound: every element is NaN (np.clip with a NaN bound).
  Graph g;
  auto guard = g.as_default();
  Tensor x = constant(Array(xt::xarray<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  Session sess;
  const auto y = sess.run(clip_by_value(x, scalar(0.0), scalar(kNaN))).to_double();
  CHECK(std::all_of(y.begin(), y.end(), [](double v) { return std::isnan(v); }));
}

TEST_CASE("nan_propagation.reductions_and_argmax") {
  Graph g;
  auto guard = g.as_default();
  // Rows: a NaN first, a NaN last, no NaN; reduced along each axis.
  xt::xarray<double> v{{kNaN, 1, 5, 2}, {3, 9, 0, kNaN}, {4, -1, 7, 6}};
  for (DType t : {float32, float64}) {
    CAPTURE(t);
    Tensor x = constant(as(t, v));
    Session sess;
    const auto rows = sess.run({reduce_max(x, {1}), reduce_min(x, {1}), argmax(x, 1)});
    const auto mx = rows[0].to_double(), mn = rows[1].to_double(), am = rows[2].to_double();
    CHECK(std::isnan(mx(0)));
    CHECK(std::isnan(mx(1)));
    CHECK(mx(2) == 7);
    CHECK(std::isnan(mn(0)));
    CHECK(std::isnan(mn(1)));
    CHECK(mn(2) == -1);
    // np.argmax: the first NaN counts as the maximum.
    CHECK(am == xt::xarray<double>{0, 3, 2});
    const auto cols = sess.run({reduce_max(x, {0}), argmax(x, 0)});
    CHECK(std::isnan(cols[0].to_double()(0)));
    CHECK(std::isnan(cols[0].to_double()(3)));
    CHECK(cols[0].to_double()(1) == 9);
    CHECK(cols[1].to_double() == xt::xarray<double>{0, 1, 2, 1});
    CHECK(std::isnan(sess.run(reduce_max(x)).to_double().data()[0]));
  }
}

TEST_CASE("nan_propagation.max_pool") {
  Graph g;
  auto guard = g.as_default();
  // [1, 4, 4, 2] NHWC, 2x2 windows: channel 0 has a NaN in the first window (not at its first
  // element), channel 1 one in the last window.
  xt::xarray<float> v = xt::xarray<float>::from_shape({1, 4, 4, 2});
  for (std::size_t i = 0; i < v.size(); ++i) v.data()[i] = static_cast<float>(i % 7);
  v(0, 1, 1, 0) = std::numeric_limits<float>::quiet_NaN();
  v(0, 3, 2, 1) = std::numeric_limits<float>::quiet_NaN();
  Tensor x = constant(Array(v));
  Session sess;
  const auto nhwc = sess.run(nn::max_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1}, "VALID")).to_double();
  const auto nchw = sess.run(transpose(nn::max_pool(transpose(x, {0, 3, 1, 2}), {1, 1, 2, 2},
                                                    {1, 1, 2, 2}, "VALID", "NCHW"),
                                       {0, 2, 3, 1}))
                        .to_double();
  for (const auto* y : {&nhwc, &nchw}) {
    CHECK(std::isnan((*y)(0, 0, 0, 0)));
    CHECK(std::isnan((*y)(0, 1, 1, 1)));
    CHECK(std::count_if(y->begin(), y->end(), [](double d) { return std::isnan(d); }) == 2);
  }
}

TEST_CASE("nan_propagation.gated_gradients") {
  // ReluGrad(g, y) / Relu6Grad(g, x) are g where the unit passes, else g * 0 (TF): NaN where g or
  // the op's value is NaN, 0 elsewhere in the blocked region.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {static_cast<std::int64_t>(kN)}, "x");
  Tensor w = placeholder(float32, {static_cast<std::int64_t>(kN)}, "w");
  const auto xv = values_with_nans();
  xt::xarray<float> wv = xt::ones<float>({kN});
  wv(2) = std::numeric_limits<float>::quiet_NaN();  // x(2) < 0: blocked, but NaN * 0 is NaN
  const auto grads = gradients({reduce_sum(nn::relu(x) * w), reduce_sum(nn::relu6(x) * w)}, {x});
  Session sess;
  const auto dx = sess.run(*grads[0], {{x, as(float32, xv)}, {w, Array(wv)}}).to_double();
  for (std::size_t i = 0; i < kN; ++i) {
    CAPTURE(i);
    const double xi = xv(i);
    if (is_nan_at(i) || i == 2)
      CHECK(std::isnan(dx(i)));
    else
      CHECK(dx(i) == (xi > 0 ? 1 : 0) + (xi > 0 && xi < 6 ? 1 : 0));
  }
}

TEST_CASE("nan_propagation.dense_relu_dense_cross_entropy") {
  // One NaN input element makes the loss NaN (issue 11: it used to be finite).
  Graph g;
  auto guard = g.as_default();
  set_random_seed(3);
  Tensor x = placeholder(float32, {-1, 64}, "x");
  Tensor labels = placeholder(int64, {-1}, "labels");
  Tensor h = nn::relu(layers::dense(x, 32));
  Tensor logits = layers::dense(h, 10);
  Tensor loss = reduce_mean(nn::sparse_softmax_cross_entropy_with_logits(labels, logits));
  Session sess;
  sess.run(global_variables_initializer());
  xt::xarray<float> xv = xt::ones<float>({4, 64});
  const xt::xarray<std::int64_t> lv{1, 2, 3, 4};
  CHECK(std::isfinite(sess.run(loss, {{x, xv}, {labels, lv}}).scalar<float>()));
  xv(2, 37) = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(sess.run(loss, {{x, xv}, {labels, lv}}).scalar<float>()));
}
