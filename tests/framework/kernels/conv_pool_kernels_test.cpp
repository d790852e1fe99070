// Tests of the raw-buffer gemm, conv2d and pooling kernels against direct-loop references
// written here, finite differences (double) and a few hand-computed golden values.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "framework/errors.hpp"
#include "framework/kernels/conv2d.hpp"
#include "framework/kernels/gemm.hpp"
#include "framework/kernels/pooling.hpp"

namespace {

using i64 = std::int64_t;
using kiln::kernels::Conv2DGeometry;
using kiln::kernels::Padding;
using kiln::kernels::Pool2DGeometry;
namespace kk = kiln::kernels;

template <class T>
std::vector<T> random_vector(i64 n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = static_cast<T>(dist(gen));
  return v;
}

// max |a - b| / max(1, max |b|): a relative error that tolerates values near zero.
template <class T>
double rel_error(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// ---------------------------------------------------------------------------------------------
// gemm

// Naive C = alpha op(A) op(B) + beta C, row-major with leading dimensions (reference only).
template <class T>
void naive_gemm(bool ta, bool tb, i64 m, i64 n, i64 k, T alpha, const std::vector<T>& a, i64 lda,
                const std::vector<T>& b, i64 ldb, T beta, std::vector<T>& c, i64 ldc) {
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) {
      double s = 0;
      for (i64 p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
      }
      c[i * ldc + j] = static_cast<T>(alpha * s + (beta == T(0) ? 0.0 : beta * c[i * ldc + j]));
    }
  }
}

TEST_CASE_TEMPLATE("kernels.gemm.matches_naive_all_transposes", T, float, double) {
  const i64 m = 5, n = 7, k = 4;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      // Leading dimensions larger than the rows need, to check they are honoured.
      const i64 lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      const auto a = random_vector<T>((ta ? k : m) * lda, 1);
      const auto b = random_vector<T>((tb ? n : k) * ldb, 2);
      auto c = random_vector<T>(m * ldc, 3);
      auto expected = c;
      kk::gemm(ta, tb, m, n, k, T(0.5), a.data(), lda, b.data(), ldb, T(2), c.data(), ldc);
      naive_gemm(ta, tb, m, n, k, T(0.5), a, lda, b, ldb, T(2), expected, ldc);
      CHECK(rel_error(c, expected) <= tolerance<T>());
    }
  }
}

TEST_CASE_TEMPLATE("kernels.gemm.edge_cases", T, float, double) {
  SUBCASE("beta 0 overwrites NaN") {
    const auto a = random_vector<T>(6, 4), b = random_vector<T>(6, 5);
    std::vector<T> c(4, std::numeric_limits<T>::quiet_NaN());
    std::vector<T> expected(4);
    kk::gemm(false, false, 2, 2, 3, T(1), a.data(), 3, b.data(), 2, T(0), c.data(), 2);
    naive_gemm(false, false, 2, 2, 3, T(1), a, 3, b, 2, T(0), expected, 2);
    CHECK(rel_error(c, expected) <= tolerance<T>());
  }
  SUBCASE("k == 0 scales C by beta") {
    std::vector<T> c = {1, 2, 3, 4};
    kk::gemm(false, false, 2, 2, 0, T(1), nullptr, 1, nullptr, 2, T(3), c.data(), 2);
    CHECK(c == std::vector<T>{3, 6, 9, 12});
    kk::gemm(false, false, 2, 2, 0, T(1), nullptr, 1, nullptr, 2, T(0), c.data(), 2);
    CHECK(c == std::vector<T>{0, 0, 0, 0});
  }
  SUBCASE("m == 0 does nothing") {
    kk::gemm(false, false, 0, 2, 3, T(1), nullptr, 3, nullptr, 2, T(0), nullptr, 2);
  }
  SUBCASE("bad leading dimension throws") {
    std::vector<T> a(6), b(6), c(4);
    CHECK_THROWS_AS(kk::gemm(false, false, 2, 2, 3, T(1), a.data(), 2, b.data(), 2, T(0),
                             c.data(), 2),
                    kiln::InvalidArgumentError);
  }
  SUBCASE("one BLAS thread") {
    kk::set_blas_threads(1);
    const auto a = random_vector<T>(12, 6), b = random_vector<T>(12, 7);
    std::vector<T> c(9), expected(9);
    kk::gemm(false, true, 3, 3, 4, T(1), a.data(), 4, b.data(), 4, T(0), c.data(), 3);
    naive_gemm(false, true, 3, 3, 4, T(1), a, 4, b, 4, T(0), expected, 3);
    CHECK(rel_error(c, expected) <= tolerance<T>());
  }
}

// ---------------------------------------------------------------------------------------------
// Geometry

TEST_CASE("kernels.geometry.window_dim_tf_rules") {
  using kk::window_dim;
  // SAME: out = ceil(in / stride), pad_total = max((out-1)*stride + e - in, 0), half before.
  auto d = window_dim(28, 5, 1, 1, Padding::same);
  CHECK(d.out == 28);
  CHECK(d.pad_before == 2);
  CHECK(d.pad_after == 2);
  d = window_dim(5, 3, 2, 1, Padding::same);
  CHECK(d.out == 3);
  CHECK(d.pad_before == 1);
  CHECK(d.pad_after == 1);
  d = window_dim(6, 3, 2, 1, Padding::same);  // odd pad_total: the extra pixel goes after
  CHECK(d.out == 3);
  CHECK(d.pad_before == 0);
  CHECK(d.pad_after == 1);
  d = window_dim(4, 1, 3, 1, Padding::same);  // pad_total clamps at 0
  CHECK(d.out == 2);
  CHECK(d.pad_before == 0);
  CHECK(d.pad_after == 0);
  d = window_dim(7, 3, 1, 2, Padding::same);  // dilation 2: effective window 5
  CHECK(d.out == 7);
  CHECK(d.pad_before == 2);
  CHECK(d.pad_after == 2);
  // VALID: out = (in - e + stride) / stride, no padding.
  d = window_dim(5, 3, 2, 1, Padding::valid);
  CHECK(d.out == 2);
  CHECK(d.pad_before == 0);
  CHECK(d.pad_after == 0);
  CHECK(window_dim(7, 3, 1, 2, Padding::valid).out == 3);
  CHECK(window_dim(28, 2, 2, 1, Padding::valid).out == 14);
  CHECK_THROWS_AS(window_dim(1, 3, 1, 1, Padding::valid), kiln::InvalidArgumentError);
  CHECK_THROWS_AS(window_dim(5, 0, 1, 1, Padding::same), kiln::InvalidArgumentError);
  CHECK_THROWS_AS(window_dim(5, 3, 0, 1, Padding::same), kiln::InvalidArgumentError);
}

TEST_CASE("kernels.geometry.golden_shapes") {
  // 28x28 SAME stride 1 keeps 28x28.
  auto c = kk::make_conv2d_geometry({.batch = 2, .in_h = 28, .in_w = 28, .in_c = 1, .out_c = 8,
                                     .kernel_h = 5, .kernel_w = 5},
                                    Padding::same);
  CHECK(c.out_h == 28);
  CHECK(c.out_w == 28);
  CHECK(c.pad_top == 2);
  CHECK(c.pad_left == 2);
  // 5x5 VALID kernel 3 stride 2 gives 2x2.
  c = kk::make_conv2d_geometry({.batch = 1, .in_h = 5, .in_w = 5, .in_c = 1, .out_c = 1,
                                .kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2},
                               Padding::valid);
  CHECK(c.out_h == 2);
  CHECK(c.out_w == 2);
  CHECK(c.pad_top == 0);
  CHECK(c.pad_left == 0);
  auto p = kk::make_pool2d_geometry({.batch = 1, .in_h = 28, .in_w = 28, .channels = 4,
                                     .window_h = 2, .window_w = 2, .stride_h = 2, .stride_w = 2},
                                    Padding::valid);
  CHECK(p.out_h == 14);
  CHECK(p.out_w == 14);
  p = kk::make_pool2d_geometry({.batch = 1, .in_h = 5, .in_w = 5, .channels = 1, .window_h = 3,
                                .window_w = 3, .stride_h = 2, .stride_w = 2},
                               Padding::same);
  CHECK(p.out_h == 3);
  CHECK(p.pad_top == 1);
  CHECK_THROWS_AS(kk::validate(Conv2DGeometry{.batch = -1}), kiln::InvalidArgumentError);
  CHECK_THROWS_AS(kk::validate(Pool2DGeometry{.stride_h = 0}), kiln::InvalidArgumentError);
}

// ---------------------------------------------------------------------------------------------
// Convolution references

i64 x_index(const Conv2DGeometry& g, i64 n, i64 h, i64 w, i64 c) {
  return g.channels_first ? ((n * g.in_c + c) * g.in_h + h) * g.in_w + w
                          : ((n * g.in_h + h) * g.in_w + w) * g.in_c + c;
}
i64 y_index(const Conv2DGeometry& g, i64 n, i64 h, i64 w, i64 c) {
  return g.channels_first ? ((n * g.out_c + c) * g.out_h + h) * g.out_w + w
                          : ((n * g.out_h + h) * g.out_w + w) * g.out_c + c;
}
i64 f_index(const Conv2DGeometry& g, i64 i, i64 j, i64 c, i64 k) {
  return ((i * g.kernel_w + j) * g.in_c + c) * g.out_c + k;
}

// Visits every (input element, filter element, output element) triple of the convolution sum
// y[n,oh,ow,k] = sum_{i,j,c} x[n, oh*sh - pt + i*dh, ow*sw - pl + j*dw, c] * f[i,j,c,k].
template <class F>
void for_each_term(const Conv2DGeometry& g, F&& f) {
  for (i64 n = 0; n < g.batch; ++n)
    for (i64 oh = 0; oh < g.out_h; ++oh)
      for (i64 ow = 0; ow < g.out_w; ++ow)
        for (i64 k = 0; k < g.out_c; ++k)
          for (i64 i = 0; i < g.kernel_h; ++i)
            for (i64 j = 0; j < g.kernel_w; ++j) {
              const i64 ih = oh * g.stride_h - g.pad_top + i * g.dilation_h;
              const i64 iw = ow * g.stride_w - g.pad_left + j * g.dilation_w;
              if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
              for (i64 c = 0; c < g.in_c; ++c)
                f(x_index(g, n, ih, iw, c), f_index(g, i, j, c, k), y_index(g, n, oh, ow, k));
            }
}

template <class T>
std::vector<T> naive_conv(const Conv2DGeometry& g, const std::vector<T>& x,
                          const std::vector<T>& f) {
  std::vector<double> y(static_cast<std::size_t>(g.output_size()), 0.0);
  for_each_term(g, [&](i64 xi, i64 fi, i64 yi) { y[yi] += static_cast<double>(x[xi]) * f[fi]; });
  return {y.begin(), y.end()};
}

// The adjoints of naive_conv: the same terms with the roles of the buffers exchanged.
template <class T>
std::vector<T> naive_conv_backprop_input(const Conv2DGeometry& g, const std::vector<T>& f,
                                         const std::vector<T>& dy) {
  std::vector<double> dx(static_cast<std::size_t>(g.input_size()), 0.0);
  for_each_term(g, [&](i64 xi, i64 fi, i64 yi) { dx[xi] += static_cast<double>(dy[yi]) * f[fi]; });
  return {dx.begin(), dx.end()};
}

template <class T>
std::vector<T> naive_conv_backprop_filter(const Conv2DGeometry& g, const std::vector<T>& x,
                                          const std::vector<T>& dy) {
  std::vector<double> df(static_cast<std::size_t>(g.filter_size()), 0.0);
  for_each_term(g, [&](i64 xi, i64 fi, i64 yi) { df[fi] += static_cast<double>(dy[yi]) * x[xi]; });
  return {df.begin(), df.end()};
}

std::string describe(const Conv2DGeometry& g) {
  std::ostringstream s;
  s << (g.channels_first ? "NCHW" : "NHWC") << " batch=" << g.batch << " in=" << g.in_h << "x"
    << g.in_w << "x" << g.in_c << " out=" << g.out_h << "x" << g.out_w << "x" << g.out_c
    << " kernel=" << g.kernel_h << "x" << g.kernel_w << " stride=" << g.stride_h << ","
    << g.stride_w << " dilation=" << g.dilation_h << "," << g.dilation_w << " pad=" << g.pad_top
    << "," << g.pad_left;
  return s.str();
}

// SAME and VALID x strides (1,1), (2,2), (2,1) x dilations 1 and 2 with a 3x2 kernel, plus 1x1
// kernels (stride 1 takes the no-im2col path, stride 2 does not) and a batch of 0.
std::vector<Conv2DGeometry> conv_geometries(bool channels_first, i64 in_h, i64 in_w, i64 in_c,
                                            i64 out_c) {
  std::vector<Conv2DGeometry> out;
  auto add = [&](Padding p, i64 batch, i64 kh, i64 kw, i64 sh, i64 sw, i64 d) {
    out.push_back(kk::make_conv2d_geometry(
        {.batch = batch, .in_h = in_h, .in_w = in_w, .in_c = in_c, .out_c = out_c,
         .kernel_h = kh, .kernel_w = kw, .stride_h = sh, .stride_w = sw, .dilation_h = d,
         .dilation_w = d, .channels_first = channels_first},
        p));
  };
  for (Padding p : {Padding::same, Padding::valid}) {
    for (auto [sh, sw] : {std::pair<i64, i64>{1, 1}, {2, 2}, {2, 1}}) {
      for (i64 d : {1, 2}) add(p, 2, 3, 2, sh, sw, d);
    }
    add(p, 2, 1, 1, 1, 1, 1);
    add(p, 2, 1, 1, 2, 2, 1);
  }
  add(Padding::same, 0, 3, 3, 1, 1, 1);
  return out;
}

template <class T>
void check_conv_against_naive(bool channels_first) {
  unsigned seed = 10;
  for (const Conv2DGeometry& g : conv_geometries(channels_first, 7, 6, 3, 4)) {
    INFO(describe(g));
    const auto x = random_vector<T>(g.input_size(), ++seed);
    const auto f = random_vector<T>(g.filter_size(), ++seed);
    const auto dy = random_vector<T>(g.output_size(), ++seed);

    std::vector<T> y(static_cast<std::size_t>(g.output_size()), T(99));
    kk::conv2d_forward(g, x.data(), f.data(), y.data());
    CHECK(rel_error(y, naive_conv(g, x, f)) <= tolerance<T>());

    std::vector<T> dx(static_cast<std::size_t>(g.input_size()), T(99));
    kk::conv2d_backprop_input(g, f.data(), dy.data(), dx.data());
    CHECK(rel_error(dx, naive_conv_backprop_input(g, f, dy)) <= tolerance<T>());

    std::vector<T> df(static_cast<std::size_t>(g.filter_size()), T(99));
    kk::conv2d_backprop_filter(g, x.data(), dy.data(), df.data());
    CHECK(rel_error(df, naive_conv_backprop_filter(g, x, dy)) <= tolerance<T>());

    // Adjoint identities: <conv(x, f), dy> = <x, dx(f, dy)> = <f, df(x, dy)>.
    const double lhs = dot(y, dy);
    const double scale = std::max(1.0, std::abs(lhs));
    CHECK(std::abs(lhs - dot(x, dx)) <= 10 * tolerance<T>() * scale);
    CHECK(std::abs(lhs - dot(f, df)) <= 10 * tolerance<T>() * scale);
  }
}

TEST_CASE_TEMPLATE("kernels.conv2d.forward_and_backprop_match_naive_nhwc", T, float, double) {
  check_conv_against_naive<T>(false);
}

TEST_CASE_TEMPLATE("kernels.conv2d.forward_and_backprop_match_naive_nchw", T, float, double) {
  check_conv_against_naive<T>(true);
}

TEST_CASE("kernels.conv2d.layouts_agree") {
  // The same data in NHWC and NCHW gives the same result, transposed.
  auto g = kk::make_conv2d_geometry({.batch = 2, .in_h = 6, .in_w = 5, .in_c = 3, .out_c = 2,
                                     .kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 1},
                                    Padding::same);
  auto gc = g;
  gc.channels_first = true;
  const auto x = random_vector<double>(g.input_size(), 77);
  const auto f = random_vector<double>(g.filter_size(), 78);
  std::vector<double> x_nchw(x.size()), y(g.output_size()), y_nchw(g.output_size());
  for (i64 n = 0; n < g.batch; ++n)
    for (i64 h = 0; h < g.in_h; ++h)
      for (i64 w = 0; w < g.in_w; ++w)
        for (i64 c = 0; c < g.in_c; ++c)
          x_nchw[x_index(gc, n, h, w, c)] = x[x_index(g, n, h, w, c)];
  kk::conv2d_forward(g, x.data(), f.data(), y.data());
  kk::conv2d_forward(gc, x_nchw.data(), f.data(), y_nchw.data());
  double diff = 0;
  for (i64 n = 0; n < g.batch; ++n)
    for (i64 h = 0; h < g.out_h; ++h)
      for (i64 w = 0; w < g.out_w; ++w)
        for (i64 k = 0; k < g.out_c; ++k)
          diff = std::max(
              diff, std::abs(y[y_index(g, n, h, w, k)] - y_nchw[y_index(gc, n, h, w, k)]));
  CHECK(diff <= 1e-12);
}

TEST_CASE("kernels.conv2d.golden_values") {
  // x = [[1,2,3],[4,5,6],[7,8,9]], a 2x2 filter of ones: window sums.
  std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, f = {1, 1, 1, 1};
  auto g = kk::make_conv2d_geometry({.batch = 1, .in_h = 3, .in_w = 3, .in_c = 1, .out_c = 1,
                                     .kernel_h = 2, .kernel_w = 2},
                                    Padding::valid);
  std::vector<double> y(4);
  kk::conv2d_forward(g, x.data(), f.data(), y.data());
  CHECK(y == std::vector<double>{12, 16, 24, 28});
  // SAME: pad_total = 1 goes to the bottom/right.
  g = kk::make_conv2d_geometry({.batch = 1, .in_h = 3, .in_w = 3, .in_c = 1, .out_c = 1,
                                .kernel_h = 2, .kernel_w = 2},
                               Padding::same);
  y.assign(9, 0);
  kk::conv2d_forward(g, x.data(), f.data(), y.data());
  CHECK(y == std::vector<double>{12, 16, 9, 24, 28, 15, 15, 17, 9});
}

// L(x, f) = sum(conv(x, f) * w); its gradients are backprop_input(dy = w) and
// backprop_filter(dy = w). Central differences are exact up to rounding because L is linear.
TEST_CASE("kernels.conv2d.backprop_matches_finite_differences") {
  for (bool channels_first : {false, true}) {
    unsigned seed = 100;
    for (const Conv2DGeometry& g : conv_geometries(channels_first, 5, 4, 2, 3)) {
      INFO(describe(g));
      auto x = random_vector<double>(g.input_size(), ++seed);
      auto f = random_vector<double>(g.filter_size(), ++seed);
      const auto w = random_vector<double>(g.output_size(), ++seed);
      std::vector<double> y(static_cast<std::size_t>(g.output_size()));
      auto loss = [&] {
        kk::conv2d_forward(g, x.data(), f.data(), y.data());
        return dot(y, w);
      };
      const double eps = 1e-6;
      auto numeric = [&](std::vector<double>& v) {
        std::vector<double> grad(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) {
          const double keep = v[i];
          v[i] = keep + eps;
          const double up = loss();
          v[i] = keep - eps;
          const double down = loss();
          v[i] = keep;
          grad[i] = (up - down) / (2 * eps);
        }
        return grad;
      };
      std::vector<double> dx(static_cast<std::size_t>(g.input_size()));
      std::vector<double> df(static_cast<std::size_t>(g.filter_size()));
      kk::conv2d_backprop_input(g, f.data(), w.data(), dx.data());
      kk::conv2d_backprop_filter(g, x.data(), w.data(), df.data());
      CHECK(rel_error(dx, numeric(x)) <= 1e-7);
      CHECK(rel_error(df, numeric(f)) <= 1e-7);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Pooling references

i64 px_index(const Pool2DGeometry& g, i64 n, i64 h, i64 w, i64 c) {
  return g.channels_first ? ((n * g.channels + c) * g.in_h + h) * g.in_w + w
                          : ((n * g.in_h + h) * g.in_w + w) * g.channels + c;
}
i64 py_index(const Pool2DGeometry& g, i64 n, i64 h, i64 w, i64 c) {
  return g.channels_first ? ((n * g.channels + c) * g.out_h + h) * g.out_w + w
                          : ((n * g.out_h + h) * g.out_w + w) * g.channels + c;
}

// Calls f(y_index, window input indices in row-major order) for every output element.
template <class F>
void for_each_window(const Pool2DGeometry& g, F&& f) {
  std::vector<i64> window;
  for (i64 n = 0; n < g.batch; ++n)
    for (i64 c = 0; c < g.channels; ++c)
      for (i64 oh = 0; oh < g.out_h; ++oh)
        for (i64 ow = 0; ow < g.out_w; ++ow) {
          window.clear();
          for (i64 i = 0; i < g.window_h; ++i)
            for (i64 j = 0; j < g.window_w; ++j) {
              const i64 h = oh * g.stride_h - g.pad_top + i, w = ow * g.stride_w - g.pad_left + j;
              if (h >= 0 && h < g.in_h && w >= 0 && w < g.in_w)
                window.push_back(px_index(g, n, h, w, c));
            }
          f(py_index(g, n, oh, ow, c), window);
        }
}

// Index of the first maximal element of a window (TF's tie-breaking).
template <class T>
i64 naive_argmax(const std::vector<T>& x, const std::vector<i64>& window) {
  i64 best = window.at(0);
  for (i64 i : window)
    if (x[i] > x[best]) best = i;
  return best;
}

template <class T>
std::vector<T> naive_max_pool(const Pool2DGeometry& g, const std::vector<T>& x) {
  std::vector<T> y(static_cast<std::size_t>(g.output_size()));
  for_each_window(g, [&](i64 o, const std::vector<i64>& win) { y[o] = x[naive_argmax(x, win)]; });
  return y;
}
template <class T>
std::vector<T> naive_max_pool_backward(const Pool2DGeometry& g, const std::vector<T>& x,
                                       const std::vector<T>& dy) {
  std::vector<T> dx(static_cast<std::size_t>(g.input_size()), T(0));
  for_each_window(g,
                  [&](i64 o, const std::vector<i64>& win) { dx[naive_argmax(x, win)] += dy[o]; });
  return dx;
}
template <class T>
std::vector<T> naive_avg_pool(const Pool2DGeometry& g, const std::vector<T>& x) {
  std::vector<T> y(static_cast<std::size_t>(g.output_size()));
  for_each_window(g, [&](i64 o, const std::vector<i64>& win) {
    double s = 0;
    for (i64 i : win) s += x[i];
    y[o] = static_cast<T>(s / static_cast<double>(win.size()));
  });
  return y;
}
template <class T>
std::vector<T> naive_avg_pool_backward(const Pool2DGeometry& g, const std::vector<T>& dy) {
  std::vector<double> dx(static_cast<std::size_t>(g.input_size()), 0.0);
  for_each_window(g, [&](i64 o, const std::vector<i64>& win) {
    for (i64 i : win) dx[i] += static_cast<double>(dy[o]) / static_cast<double>(win.size());
  });
  return {dx.begin(), dx.end()};
}

std::string describe(const Pool2DGeometry& g) {
  std::ostringstream s;
  s << (g.channels_first ? "NCHW" : "NHWC") << " in=" << g.in_h << "x" << g.in_w << "x"
    << g.channels << " out=" << g.out_h << "x" << g.out_w << " window=" << g.window_h << "x"
    << g.window_w << " stride=" << g.stride_h << "," << g.stride_w << " pad=" << g.pad_top << ","
    << g.pad_left;
  return s.str();
}

// Rows of 6 and of 37 input columns: the NCHW max pool takes the outputs of a row's full windows
// a vector at a time (8 float or 4 double lanes along the row), the others one at a time, and
// images of short rows by channels when they have a vector of channels (9: a vector and a tail).
std::vector<Pool2DGeometry> pool_geometries(bool channels_first, i64 channels = 3) {
  std::vector<Pool2DGeometry> out;
  for (i64 in_w : {6, 37})
    for (Padding p : {Padding::same, Padding::valid})
      for (auto [wh, ww] : {std::pair<i64, i64>{3, 2}, {2, 2}, {1, 1}, {2, 3}})
        for (auto [sh, sw] : {std::pair<i64, i64>{1, 1}, {2, 2}, {1, 2}, {1, 3}})
          out.push_back(kk::make_pool2d_geometry(
              {.batch = 2, .in_h = 7, .in_w = in_w, .channels = channels, .window_h = wh,
               .window_w = ww, .stride_h = sh, .stride_w = sw, .channels_first = channels_first},
              p));
  return out;
}

// Distinct values (a shuffled grid with spacing 0.05), so that max pooling has no ties and
// finite differences with eps << spacing never change an argmax.
template <class T>
std::vector<T> distinct_values(i64 n, unsigned seed) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) v[i] = static_cast<T>(0.05 * static_cast<double>(i - n / 2));
  std::shuffle(v.begin(), v.end(), std::mt19937(seed));
  return v;
}

template <class T>
void check_pool_against_naive(bool channels_first) {
  unsigned seed = 200;
  std::vector<Pool2DGeometry> geometries = pool_geometries(channels_first);
  for (const Pool2DGeometry& g : pool_geometries(channels_first, 9)) geometries.push_back(g);
  for (const Pool2DGeometry& g : geometries) {
    INFO(describe(g));
    // Small integers make ties common, exercising the first-maximum rule.
    auto x = random_vector<T>(g.input_size(), ++seed);
    for (auto& e : x) e = std::round(e * 2);
    const auto dy = random_vector<T>(g.output_size(), ++seed);

    std::vector<T> y(static_cast<std::size_t>(g.output_size()), T(99));
    std::vector<i64> argmax(y.size());
    kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
    CHECK(y == naive_max_pool(g, x));
    std::vector<T> dx(static_cast<std::size_t>(g.input_size()), T(99));
    kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
    CHECK(rel_error(dx, naive_max_pool_backward(g, x, dy)) <= tolerance<T>());

    const auto xa = random_vector<T>(g.input_size(), ++seed);
    kk::avg_pool_forward(g, xa.data(), y.data());
    CHECK(rel_error(y, naive_avg_pool(g, xa)) <= tolerance<T>());
    kk::avg_pool_backward(g, dy.data(), dx.data());
    CHECK(rel_error(dx, naive_avg_pool_backward(g, dy)) <= tolerance<T>());
  }
}

TEST_CASE_TEMPLATE("kernels.pooling.forward_and_backward_match_naive_nhwc", T, float, double) {
  check_pool_against_naive<T>(false);
}

TEST_CASE_TEMPLATE("kernels.pooling.forward_and_backward_match_naive_nchw", T, float, double) {
  check_pool_against_naive<T>(true);
}

TEST_CASE("kernels.pooling.backward_matches_finite_differences") {
  for (bool channels_first : {false, true}) {
    unsigned seed = 300;
    for (const Pool2DGeometry& g : pool_geometries(channels_first)) {
      INFO(describe(g));
      auto x = distinct_values<double>(g.input_size(), ++seed);
      const auto w = random_vector<double>(g.output_size(), ++seed);
      std::vector<double> y(static_cast<std::size_t>(g.output_size()));
      std::vector<double> dx(static_cast<std::size_t>(g.input_size()));
      std::vector<i64> argmax(y.size());
      for (bool is_max : {true, false}) {
        CAPTURE(is_max);
        auto loss = [&] {
          if (is_max) {
            kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
          } else {
            kk::avg_pool_forward(g, x.data(), y.data());
          }
          return dot(y, w);
        };
        std::vector<double> numeric(x.size());
        const double eps = 1e-4;  // far below the 0.05 spacing of the values
        for (std::size_t i = 0; i < x.size(); ++i) {
          const double keep = x[i];
          x[i] = keep + eps;
          const double up = loss();
          x[i] = keep - eps;
          const double down = loss();
          x[i] = keep;
          numeric[i] = (up - down) / (2 * eps);
        }
        if (is_max) {
          kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
          kk::max_pool_backward(g, argmax.data(), w.data(), dx.data());
        } else {
          kk::avg_pool_backward(g, w.data(), dx.data());
        }
        CHECK(rel_error(dx, numeric) <= 1e-8);
      }
    }
  }
}

// Float lanes hold pixel indices exactly up to 2^24: the argmax of a float image with more pixels
// (one row of 2^24 + 5 here, windows of 4 with the maximum last) must still name the exact pixel,
// whose index past 2^24 a float cannot hold when odd.
TEST_CASE("kernels.pooling.max_pool_argmax_is_exact_past_2_24_pixels") {
  for (bool channels_first : {false, true}) {
    CAPTURE(channels_first);
    const i64 width = (i64{1} << 24) + 5;
    const auto g = kk::make_pool2d_geometry({.batch = 1, .in_h = 1, .in_w = width, .channels = 1,
                                             .window_h = 1, .window_w = 4, .stride_h = 1, .stride_w = 4,
                                             .channels_first = channels_first},
                                            Padding::valid);
    std::vector<float> x(static_cast<std::size_t>(width), 0.0f), y(static_cast<std::size_t>(g.out_w));
    for (i64 i = 3; i < width; i += 4) x[static_cast<std::size_t>(i)] = 1.0f;
    std::vector<i64> argmax(y.size());
    kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
    const i64 last = g.out_w - 1;
    CHECK(y[static_cast<std::size_t>(last)] == 1.0f);
    CHECK(argmax[static_cast<std::size_t>(last)] == 4 * last + 3);  // 2^24 + 3
    CHECK(argmax[static_cast<std::size_t>(last - 1)] == 4 * last - 1);
  }
}

// max_pool_backward's argmax comes from the graph (MaxPool's second output) or from a caller: -1
// (an empty window) adds nothing, and an entry outside its own image throws before it could write
// outside dx or into another chunk's image.
TEST_CASE("kernels.pooling.max_pool_backward_checks_argmax") {
  const auto g = kk::make_pool2d_geometry({.batch = 2, .in_h = 2, .in_w = 2, .channels = 1,
                                           .window_h = 2, .window_w = 2, .stride_h = 2, .stride_w = 2},
                                          Padding::valid);
  const std::vector<double> dy = {3, 5};
  std::vector<double> dx(8, 99.0);
  std::vector<i64> argmax = {2, -1};  // image 1's window empty
  kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
  CHECK(dx == std::vector<double>{0, 0, 3, 0, 0, 0, 0, 0});
  for (i64 bad : {i64{4}, i64{-2}, i64{8}, std::numeric_limits<i64>::min()}) {  // image 1's; below; past dx
    CAPTURE(bad);
    argmax = {bad, 5};
    CHECK_THROWS_WITH_AS(kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data()),
                         doctest::Contains(("MaxPoolGrad: argmax[0] = " + std::to_string(bad) +
                                            " is outside its image's input elements [0, 4)").c_str()),
                         kiln::InvalidArgumentError);
  }
  argmax = {1, 3};  // image 1 naming image 0's element
  CHECK_THROWS_WITH_AS(kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data()),
                       doctest::Contains("MaxPoolGrad: argmax[1] = 3 is outside its image's input elements [4, 8)"),
                       kiln::InvalidArgumentError);
}

TEST_CASE("kernels.pooling.golden_values_and_ties") {
  SUBCASE("avg SAME divides by the number of valid elements") {
    // x = [[1,2],[3,4]], 2x2 window, stride 1, SAME: pad_total 1 goes to the bottom/right.
    const auto g = kk::make_pool2d_geometry({.batch = 1, .in_h = 2, .in_w = 2, .channels = 1,
                                             .window_h = 2, .window_w = 2},
                                            Padding::same);
    std::vector<double> x = {1, 2, 3, 4}, y(4), dx(4);
    kk::avg_pool_forward(g, x.data(), y.data());
    CHECK(y == std::vector<double>{2.5, 3, 3.5, 4});
    const std::vector<double> dy = {4, 2, 2, 1};
    kk::avg_pool_backward(g, dy.data(), dx.data());
    // dx[0] = 4/4; dx[1] = 4/4 + 2/2; dx[2] = 4/4 + 2/2; dx[3] = 4/4 + 2/2 + 2/2 + 1/1.
    CHECK(dx == std::vector<double>{1, 2, 2, 4});
  }
  SUBCASE("max ties route the gradient to the first element") {
    for (bool channels_first : {false, true}) {
      const auto g = kk::make_pool2d_geometry({.batch = 1, .in_h = 2, .in_w = 2, .channels = 2,
                                               .window_h = 2, .window_w = 2,
                                               .channels_first = channels_first},
                                              Padding::valid);
      const std::vector<float> x(8, 1.0f), dy = {3, 5};
      std::vector<float> y(2), dx(8);
      std::vector<i64> argmax(2);
      kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
      kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
      const std::vector<float> expected =
          channels_first ? std::vector<float>{3, 0, 0, 0, 5, 0, 0, 0}
                         : std::vector<float>{3, 5, 0, 0, 0, 0, 0, 0};
      CHECK(dx == expected);
    }
  }
  SUBCASE("max SAME ignores padding, even for negative inputs") {
    const auto g = kk::make_pool2d_geometry({.batch = 1, .in_h = 3, .in_w = 3, .channels = 1,
                                             .window_h = 2, .window_w = 2, .stride_h = 2,
                                             .stride_w = 2},
                                            Padding::same);
    REQUIRE(g.out_h == 2);
    const std::vector<double> x = {-9, -8, -7, -6, -5, -4, -3, -2, -1};
    std::vector<double> y(4);
    std::vector<i64> argmax(4);
    kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
    CHECK(y == std::vector<double>{-5, -4, -2, -1});
    CHECK(argmax == std::vector<i64>{4, 5, 7, 8});
  }
  SUBCASE("a NaN first in its window propagates and takes the gradient") {
    const auto g = kk::make_pool2d_geometry({.batch = 1, .in_h = 1, .in_w = 3, .channels = 1,
                                             .window_h = 1, .window_w = 3},
                                            Padding::valid);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> x = {nan, 2, 1}, dy = {7};
    std::vector<double> y(1), dx(3);
    std::vector<i64> argmax(1);
    kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
    CHECK(std::isnan(y[0]));
    kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
    CHECK(dx[0] == 7);
    CHECK(dx[1] == 0);
    CHECK(dx[2] == 0);
  }
}

}  // namespace
