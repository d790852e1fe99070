#include "framework/kernels/batch_norm.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace K = kiln::kernels;
using K::BnLayout;
using std::size_t;

namespace {

using Vec = std::vector<double>;
constexpr double kEps = 1e-3;
// NHWC, NCHW; then NHWC narrow and wide rows over several row blocks, NCHW planes in groups,
// NCHW planes longer than a block.
// NHWC narrow and wide rows ({70, 300, 1}: blocks of 64 and 6 rows, four rows at a time and the
// rest), NCHW planes small and large.
// NHWC rows of every kind the statistics walk: narrow (up to 64 float channels: groups of four
// vectors walked together, {900, 32} and {3000, 64} over several blocks; {500, 45}: a group, a
// vector and a scalar tail), wide ({600, 70}, {70, 300}); NCHW planes.
const BnLayout kLayouts[] = {{12, 11, 1},  {3, 5, 13},   {3000, 7, 1},  {600, 70, 1},  {900, 32, 1},
                             {500, 45, 1}, {3000, 64, 1}, {70, 300, 1}, {2, 5, 5000}, {2, 2, 20000}};

template <class T>
std::vector<T> randn(size_t n, double mean, double sd, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(mean, sd);
  std::vector<T> v(n);
  for (auto& e : v) e = T(d(gen));
  return v;
}

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

  void run(bool training, bool backward = true) {  // the backward uses this forward's statistics
    if (training) {
      K::fused_batch_norm_forward_training(x.data(), g.data(), b.data(), l, kEps, y.data(),
                                           mean.data(), var.data(), inv.data());
      if (backward)
        K::fused_batch_norm_backward_training(dy.data(), x.data(), g.data(), mean.data(),
                                              inv.data(), l, dx.data(), dg.data(), db.data());
    } else {
      K::fused_batch_norm_forward_inference(x.data(), g.data(), b.data(), pm.data(), pv.data(), l,
                                            kEps, y.data());
      if (backward)
        K::fused_batch_norm_backward_inference(dy.data(), x.data(), g.data(), pm.data(), pv.data(),
                                               l, kEps, dx.data(), dg.data(), db.data());
    }
  }
};

// Straightforward double-precision reference, with the [outer, C, inner] indexing spelled out:
// batch statistics (two-pass) in training, the population ones in inference.
struct Ref {
  Vec mean, var, inv, y, dx, dg, db;
};
template <class T>
Ref reference(const Case<T>& k, bool training) {
  const BnLayout l = k.l;
  const double M = double(l.outer * l.inner);
  Ref r;
  r.inv = r.dg = r.db = Vec(k.C), r.y = r.dx = Vec(k.N);
  r.mean = training ? Vec(k.C) : Vec(k.pm.begin(), k.pm.end());
  r.var = training ? Vec(k.C) : Vec(k.pv.begin(), k.pv.end());
  Vec sdyx(k.C);
  auto each = [&](auto f) {
    for (std::int64_t o = 0; o < l.outer; ++o)
      for (std::int64_t c = 0; c < l.channels; ++c)
        for (std::int64_t i = 0; i < l.inner; ++i)
          f(size_t(c), size_t((o * l.channels + c) * l.inner + i));
  };
  if (training) {
    each([&](size_t c, size_t j) { r.mean[c] += k.x[j] / M; });
    each([&](size_t c, size_t j) { r.var[c] += (k.x[j] - r.mean[c]) * (k.x[j] - r.mean[c]) / M; });
  }
  for (size_t c = 0; c < k.C; ++c) r.inv[c] = 1 / std::sqrt(r.var[c] + kEps);
  each([&](size_t c, size_t j) {
    const double xc = k.x[j] - r.mean[c];
    r.y[j] = k.g[c] * xc * r.inv[c] + k.b[c];
    r.db[c] += k.dy[j], sdyx[c] += k.dy[j] * xc;
  });
  each([&](size_t c, size_t j) {
    const double xc = k.x[j] - r.mean[c], inv = r.inv[c];
    r.dx[j] = training ? k.g[c] * inv * (k.dy[j] - r.db[c] / M - xc * sdyx[c] / M * inv * inv)
                       : k.dy[j] * k.g[c] * inv;
  });
  for (size_t c = 0; c < k.C; ++c) r.dg[c] = sdyx[c] * r.inv[c];
  return r;
}

// One assertion per array, on the worst element (error relative to max(1, |want|); NaN is worst).
template <class T>
void check_close(const char* what, const std::vector<T>& got, const Vec& want, double tol) {
  REQUIRE(got.size() == want.size());
  size_t worst = 0;
  double err = 0;
  for (size_t j = 0; j < got.size() && !std::isnan(err); ++j) {
    const double e = std::abs(double(got[j]) - want[j]) / std::max(1.0, std::abs(want[j]));
    if (!(e <= err)) worst = j, err = e;
  }
  INFO(what << "[" << worst << "]: got " << got[worst] << ", want " << want[worst]);
  CHECK(err <= tol);
}
template <class T>
constexpr double kTol = sizeof(T) == 4 ? 1e-4 : 1e-10;

}  // namespace

#define LAYOUT_INFO(l) INFO("layout [" << l.outer << ", " << l.channels << ", " << l.inner << "]")

TEST_CASE_TEMPLATE("kernels.batch_norm.matches_reference", T, float, double) {
  for (const BnLayout l : kLayouts)
    for (const bool training : {true, false}) {
      LAYOUT_INFO(l);
      INFO((training ? "training" : "inference"));
      Case<T> k{l, 1};
      k.run(training);
      const Ref r = reference(k, training);
      if (training) {  // the statistics the training forward writes
        check_close("mean", k.mean, r.mean, kTol<T>), check_close("var", k.var, r.var, kTol<T>);
        check_close("inv", k.inv, r.inv, kTol<T>);
      }
      check_close("y", k.y, r.y, kTol<T>), check_close("dx", k.dx, r.dx, kTol<T>);
      check_close("dgamma", k.dg, r.dg, kTol<T>), check_close("dbeta", k.db, r.db, kTol<T>);
    }
}

TEST_CASE("kernels.batch_norm.gradients_match_finite_differences") {
  for (const BnLayout l : {BnLayout{6, 3, 1}, BnLayout{2, 3, 4}})
    for (const bool training : {true, false}) {
      LAYOUT_INFO(l);
      INFO((training ? "training" : "inference"));
      Case<double> k{l, 23};  // loss = sum(y * dy), so dL/dy = dy
      k.run(training);
      const Vec dx = k.dx, dg = k.dg, db = k.db;
      // Central difference of the loss in p[j].
      auto fd = [&](Vec& p, size_t j) {
        const double p0 = p[j], h = 1e-5;
        double dl = 0;
        for (const double s : {1.0, -1.0}) {
          p[j] = p0 + s * h;
          k.run(training, false);
          for (size_t i = 0; i < k.N; ++i) dl += s * k.y[i] * k.dy[i];
        }
        p[j] = p0;
        return dl / (2 * h);
      };
      for (size_t j = 0; j < k.N; ++j) CHECK(dx[j] == doctest::Approx(fd(k.x, j)).epsilon(1e-6));
      for (size_t c = 0; c < k.C; ++c) {
        CHECK(dg[c] == doctest::Approx(fd(k.g, c)).epsilon(1e-6));
        CHECK(db[c] == doctest::Approx(fd(k.b, c)).epsilon(1e-6));
      }
    }
}

TEST_CASE("kernels.batch_norm.variance_accurate_with_large_channel_offset") {
  for (const BnLayout l : {BnLayout{20000, 16, 1}, BnLayout{20000, 64, 1}, BnLayout{8, 4, 10000}}) {
    LAYOUT_INFO(l);
    Case<float> k{l, 5};
    k.x = randn<float>(k.N, 1e4, 1, 5);  // float32, mean 1e4, std 1
    k.run(true, false);
    const Ref r = reference(k, true);
    for (size_t c = 0; c < k.C; ++c) {
      CHECK(std::abs(k.var[c] - r.var[c]) / r.var[c] < 1e-3);
      CHECK(std::abs(k.mean[c] - r.mean[c]) < 1e-2);
    }
    check_close("y", k.y, r.y, 2e-3);
  }
}

TEST_CASE("kernels.batch_norm.variance_accurate_when_each_block_starts_far_from_its_mean") {
  // Each block sums around the mean of its first rows (elements of a plane): data sorted within
  // each channel (its first rows are the smallest) and with a step (the first rows 1e4 above the
  // rest) put that shift far from the block's mean; float32, references in double.
  for (const BnLayout l : {BnLayout{20000, 16, 1}, BnLayout{20000, 64, 1}, BnLayout{8, 4, 10000}}) {
    LAYOUT_INFO(l);
    for (int pattern = 0; pattern < 2; ++pattern) {
      CAPTURE(pattern);
      Case<float> k{l, 9};
      for (int64_t o = 0; o < l.outer; ++o)
        for (int64_t c = 0; c < l.channels; ++c)
          for (int64_t i = 0; i < l.inner; ++i) {
            const int64_t r = l.inner == 1 ? o : i;  // position along the channel's blocks
            const double u = pattern == 0 ? 1e4 + 0.001 * double(r % 600) : (r % 600 < 64 ? 1e4 : 0.0) + double(r % 7);
            k.x[size_t((o * l.channels + c) * l.inner + i)] = float(u);
          }
      k.run(true, false);
      const Ref r = reference(k, true);
      for (size_t c = 0; c < k.C; ++c) {  // the mean within 1e-4 std, or an ulp of its float32 value
        CHECK(std::abs(k.var[c] - r.var[c]) / r.var[c] < 1e-4);
        CHECK(std::abs(k.mean[c] - r.mean[c]) <=
              std::max(1e-4 * std::sqrt(r.var[c]), std::abs(r.mean[c]) * double(std::numeric_limits<float>::epsilon())));
      }
    }
  }
}

TEST_CASE_TEMPLATE("kernels.batch_norm.single_value_per_channel_is_finite", T, float, double) {
  Case<T> k{BnLayout{1, 20, 1}, 31};  // outer * inner == 1: var 0, y = beta, dx = 0, dgamma = 0
  k.run(true);
  const Ref r = reference(k, true);  // check_close fails on NaN
  check_close("var", k.var, r.var, 0), check_close("inv", k.inv, r.inv, kTol<T>);
  check_close("y", k.y, r.y, kTol<T>), check_close("dx", k.dx, r.dx, kTol<T>);
  check_close("dgamma", k.dg, r.dg, 0), check_close("dbeta", k.db, r.db, 0);
}
