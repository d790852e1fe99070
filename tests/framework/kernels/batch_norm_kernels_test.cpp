#include "framework/kernels/batch_norm.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

namespace K = kiln::kernels;
using K::BnLayout;
using std::size_t;

namespace {

using Vec = std::vector<double>;
constexpr double kEps = 1e-3;
// NHWC, NCHW, then NHWC narrow and wide rows over several row blocks, NCHW planes over a block.
const BnLayout kLayouts[] = {{12, 11, 1}, {3, 5, 13}, {3000, 7, 1}, {600, 70, 1}, {2, 2, 20000}};

std::string name(BnLayout l) {
  return "[" + std::to_string(l.outer) + ", " + std::to_string(l.channels) + ", " +
         std::to_string(l.inner) + "]";
}
template <class T>
std::vector<T> randn(size_t n, double mean, double sd, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(mean, sd);
  std::vector<T> v(n);
  for (auto& e : v) e = T(d(gen));
  return v;
}
template <class T>
Vec to_d(const std::vector<T>& v) {
  return Vec(v.begin(), v.end());
}

// Calls f(channel, flat index) for every element, with the [outer, C, inner] indexing spelled out.
template <class F>
void each(BnLayout l, F f) {
  for (std::int64_t o = 0; o < l.outer; ++o)
    for (std::int64_t c = 0; c < l.channels; ++c)
      for (std::int64_t i = 0; i < l.inner; ++i)
        f(size_t(c), size_t((o * l.channels + c) * l.inner + i));
}

// Straightforward double-precision references.
struct Stats {
  Vec mean, var;
};
Stats ref_stats(const Vec& x, BnLayout l) {
  const double M = double(l.outer * l.inner);
  Stats s{Vec(size_t(l.channels)), Vec(size_t(l.channels))};
  each(l, [&](size_t c, size_t j) { s.mean[c] += x[j] / M; });
  each(l, [&](size_t c, size_t j) { s.var[c] += (x[j] - s.mean[c]) * (x[j] - s.mean[c]) / M; });
  return s;
}
Vec ref_forward(const Vec& x, const Vec& g, const Vec& b, const Stats& s, BnLayout l) {
  Vec y(x.size());
  each(l, [&](size_t c, size_t j) {
    y[j] = g[c] * (x[j] - s.mean[c]) / std::sqrt(s.var[c] + kEps) + b[c];
  });
  return y;
}
struct Grads {
  Vec dx, dg, db;
};
Grads ref_backward(const Vec& dy, const Vec& x, const Vec& g, const Stats& s, BnLayout l,
                   bool training) {
  const size_t C = size_t(l.channels);
  const double M = double(l.outer * l.inner);
  Grads r{Vec(x.size()), Vec(C), Vec(C)};
  Vec sdyx(C);
  each(l, [&](size_t c, size_t j) { r.db[c] += dy[j], sdyx[c] += dy[j] * (x[j] - s.mean[c]); });
  each(l, [&](size_t c, size_t j) {
    const double inv = 1 / std::sqrt(s.var[c] + kEps), xc = x[j] - s.mean[c];
    r.dx[j] = training ? g[c] * inv * (dy[j] - r.db[c] / M - xc * sdyx[c] / M * inv * inv)
                       : dy[j] * g[c] * inv;
  });
  for (size_t c = 0; c < C; ++c) r.dg[c] = sdyx[c] / std::sqrt(s.var[c] + kEps);
  return r;
}

// One assertion per array, on the worst element (error relative to max(1, |want|); NaN is worst).
template <class T>
void check_close(const std::vector<T>& got, const Vec& want, double tol) {
  REQUIRE(got.size() == want.size());
  size_t worst = 0;
  double err = 0;
  for (size_t j = 0; j < got.size() && !std::isnan(err); ++j) {
    const double e = std::abs(double(got[j]) - want[j]) / std::max(1.0, std::abs(want[j]));
    if (!(e <= err)) worst = j, err = e;
  }
  INFO("worst index " << worst << ": got " << got[worst] << ", want " << want[worst]);
  CHECK(err <= tol);
}
template <class T>
constexpr double kTol = sizeof(T) == 4 ? 1e-4 : 1e-10;

// Random inputs (x, gamma, beta, dy, population mean and variance) and the kernels' outputs.
template <class T>
struct Case {
  BnLayout l;
  unsigned seed;
  size_t C = size_t(l.channels), N = size_t(l.outer * l.channels * l.inner);
  std::vector<T> x = randn<T>(N, 0.5, 2, seed), g = randn<T>(C, 1, 0.5, seed + 1),
                 b = randn<T>(C, 0, 1, seed + 2), dy = randn<T>(N, 0, 1, seed + 3),
                 pm = randn<T>(C, 0.3, 1, seed + 4), pv = randn<T>(C, 2, 0.5, seed + 5);
  std::vector<T> y = std::vector<T>(N), dx = y, mean = std::vector<T>(C), var = mean, inv = mean,
                 dg = mean, db = mean;

  void forward_training() {
    K::fused_batch_norm_forward_training(x.data(), g.data(), b.data(), l, kEps, y.data(),
                                         mean.data(), var.data(), inv.data());
  }
  void forward_inference() {
    K::fused_batch_norm_forward_inference(x.data(), g.data(), b.data(), pm.data(), pv.data(), l,
                                          kEps, y.data());
  }
  void backward_training() {  // uses mean and inv of the last forward_training
    K::fused_batch_norm_backward_training(dy.data(), x.data(), g.data(), mean.data(), inv.data(), l,
                                          dx.data(), dg.data(), db.data());
  }
  void backward_inference() {
    K::fused_batch_norm_backward_inference(dy.data(), x.data(), g.data(), pm.data(), pv.data(), l,
                                           kEps, dx.data(), dg.data(), db.data());
  }
};

}  // namespace

TEST_CASE_TEMPLATE("kernels.batch_norm.forward_training_matches_reference", T, float, double) {
  for (const BnLayout l : kLayouts) {
    INFO(name(l));
    Case<T> k{l, 1};
    k.forward_training();
    const Stats s = ref_stats(to_d(k.x), l);
    Vec inv(k.C);
    for (size_t c = 0; c < k.C; ++c) inv[c] = 1 / std::sqrt(s.var[c] + kEps);
    check_close(k.mean, s.mean, kTol<T>), check_close(k.var, s.var, kTol<T>);
    check_close(k.inv, inv, kTol<T>);
    check_close(k.y, ref_forward(to_d(k.x), to_d(k.g), to_d(k.b), s, l), kTol<T>);
  }
}

TEST_CASE_TEMPLATE("kernels.batch_norm.forward_inference_matches_reference", T, float, double) {
  for (const BnLayout l : kLayouts) {
    INFO(name(l));
    Case<T> k{l, 7};
    k.forward_inference();
    const Stats pop{to_d(k.pm), to_d(k.pv)};
    check_close(k.y, ref_forward(to_d(k.x), to_d(k.g), to_d(k.b), pop, l), kTol<T>);
  }
}

TEST_CASE_TEMPLATE("kernels.batch_norm.backward_matches_reference", T, float, double) {
  for (const BnLayout l : kLayouts) {
    INFO(name(l));
    Case<T> k{l, 11};
    k.forward_training();
    k.backward_training();
    Grads r = ref_backward(to_d(k.dy), to_d(k.x), to_d(k.g), ref_stats(to_d(k.x), l), l, true);
    check_close(k.dx, r.dx, kTol<T>), check_close(k.dg, r.dg, kTol<T>);
    check_close(k.db, r.db, kTol<T>);

    k.backward_inference();
    r = ref_backward(to_d(k.dy), to_d(k.x), to_d(k.g), Stats{to_d(k.pm), to_d(k.pv)}, l, false);
    check_close(k.dx, r.dx, kTol<T>), check_close(k.dg, r.dg, kTol<T>);
    check_close(k.db, r.db, kTol<T>);
  }
}

TEST_CASE("kernels.batch_norm.gradients_match_finite_differences") {
  for (const BnLayout l : {BnLayout{6, 3, 1}, BnLayout{2, 3, 4}})
    for (const bool training : {true, false}) {
      INFO(name(l) << (training ? " training" : " inference"));
      Case<double> k{l, 23};  // loss = sum(y * dy), so dL/dy = dy
      k.forward_training();
      training ? k.backward_training() : k.backward_inference();
      const Grads got{k.dx, k.dg, k.db};
      auto loss = [&] {
        training ? k.forward_training() : k.forward_inference();
        double s = 0;
        for (size_t j = 0; j < k.N; ++j) s += k.y[j] * k.dy[j];
        return s;
      };
      // Central differences of the loss in each entry of p, against the analytic gradient.
      auto fd_check = [&](Vec& p, const Vec& grad) {
        const double h = 1e-5;
        for (size_t j = 0; j < p.size(); ++j) {
          const double p0 = p[j];
          p[j] = p0 + h;
          const double up = loss();
          p[j] = p0 - h;
          const double down = loss();
          p[j] = p0;
          CHECK(grad[j] == doctest::Approx((up - down) / (2 * h)).epsilon(1e-6).scale(1));
        }
      };
      fd_check(k.x, got.dx), fd_check(k.g, got.dg), fd_check(k.b, got.db);
    }
}

TEST_CASE("kernels.batch_norm.variance_accurate_with_large_channel_offset") {
  for (const BnLayout l : {BnLayout{20000, 16, 1}, BnLayout{8, 4, 10000}}) {
    INFO(name(l));
    Case<float> k{l, 5};
    k.x = randn<float>(k.N, 1e4, 1, 5);  // float32, mean 1e4, std 1
    k.forward_training();
    const Stats s = ref_stats(to_d(k.x), l);
    for (size_t c = 0; c < k.C; ++c) {
      CHECK(std::abs(k.var[c] - s.var[c]) / s.var[c] < 1e-3);
      CHECK(std::abs(k.mean[c] - s.mean[c]) < 1e-2);
    }
    check_close(k.y, ref_forward(to_d(k.x), to_d(k.g), to_d(k.b), s, l), 2e-3);
  }
}

TEST_CASE_TEMPLATE("kernels.batch_norm.single_value_per_channel_is_finite", T, float, double) {
  Case<T> k{BnLayout{1, 20, 1}, 31};  // outer * inner == 1
  k.forward_training();
  k.backward_training();
  for (size_t c = 0; c < k.C; ++c) {
    CHECK(k.var[c] == T(0));
    CHECK(k.mean[c] == k.x[c]);
    CHECK(std::isfinite(k.inv[c]));
    CHECK(k.y[c] == k.b[c]);
    CHECK(std::abs(k.dx[c]) < 1e-5);  // dy - mean(dy) == 0, up to rounding of the coefficients
    CHECK(k.dg[c] == T(0));
    CHECK(k.db[c] == k.dy[c]);
  }
}
