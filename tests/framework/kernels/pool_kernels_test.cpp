// Tests of the raw-buffer max and average pooling kernels against direct-loop references written
// here, finite differences (double), argmax checks and hand-computed golden values with ties.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "framework/errors.hpp"
#include "framework/kernels/pooling.hpp"
#include "tests/framework/kernels/kernel_test_support.hpp"

namespace {

using i64 = std::int64_t;
using kiln::kernels::Padding;
using kiln::kernels::Pool2DGeometry;
namespace kk = kiln::kernels;
using namespace kiln::testing::kernel_buffers;

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
