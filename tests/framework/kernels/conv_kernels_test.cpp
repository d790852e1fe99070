// Tests of the window geometry (TF's SAME/VALID rules) and the raw-buffer conv2d kernels against
// direct-loop references written here, adjoint identities, finite differences (double) and a few
// hand-computed golden values. (gemm: gemm_kernels_test.cpp; pooling: pool_kernels_test.cpp.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "framework/errors.hpp"
#include "framework/kernels/conv2d.hpp"
#include "framework/kernels/pooling.hpp"
#include "tests/framework/kernels/kernel_test_support.hpp"

namespace {

using i64 = std::int64_t;
using kiln::kernels::Conv2DGeometry;
using kiln::kernels::Padding;
using kiln::kernels::Pool2DGeometry;
namespace kk = kiln::kernels;
using namespace kiln::testing::kernel_buffers;

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

}  // namespace
