// MaxPool and AvgPool with their gradient ops (MaxPoolGrad, MaxPoolGradGrad, AvgPoolGrad): values
// against hand-computed cases and naive loops from TF's definitions, both data formats, ties,
// build- and run-time errors, and float64 gradient checks. (Conv2D: conv_ops_test.cpp.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "tests/framework/conv_pool_ops_support.hpp"

using namespace kiln;
using namespace kiln::testing::conv_pool_ops;

namespace {

// Distinct values (no ties in max pooling), shuffled.
Arr distinct(const std::vector<std::size_t>& shape, unsigned seed) {
  Arr a = Arr::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = 0.1 * static_cast<double>(i) - 1;
  std::mt19937 rng(seed);
  std::shuffle(a.begin(), a.end(), rng);
  return a;
}

// Max or average over the in-image elements of each window, NHWC.
Arr naive_pool(const Arr& x, i64 kh, i64 kw, i64 sh, i64 sw, bool same, bool max) {
  const i64 N = i64(x.shape()[0]), H = i64(x.shape()[1]), W = i64(x.shape()[2]),
            C = i64(x.shape()[3]);
  const Dim dh = tf_dim(H, kh, sh, 1, same), dw = tf_dim(W, kw, sw, 1, same);
  Arr y = Arr::from_shape({std::size_t(N), std::size_t(dh.out), std::size_t(dw.out), std::size_t(C)});
  for (i64 n = 0; n < N; ++n)
    for (i64 oh = 0; oh < dh.out; ++oh)
      for (i64 ow = 0; ow < dw.out; ++ow)
        for (i64 ch = 0; ch < C; ++ch) {
          double acc = max ? -1e300 : 0;
          int count = 0;
          for (i64 ih = oh * sh - dh.pad; ih < oh * sh - dh.pad + kh; ++ih)
            for (i64 iw = ow * sw - dw.pad; iw < ow * sw - dw.pad + kw; ++iw)
              if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                acc = max ? std::max(acc, x(n, ih, iw, ch)) : acc + x(n, ih, iw, ch);
                ++count;
              }
          y(n, oh, ow, ch) = max ? acc : acc / count;
        }
  return y;
}

}  // namespace

// ---------------------------------------------------------------- pooling values and shapes

TEST_CASE("pool.hand_computed_max_and_average") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // x = 0..15 as a 4x4 image; 2x2 windows, stride 2: max = bottom-right of each window,
  // average = (a + a+1 + a+4 + a+5) / 4 = a + 2.5 for the top-left a.
  Arr x16 = Arr::from_shape({1, 4, 4, 1});
  for (int i = 0; i < 16; ++i) x16.data()[i] = i;
  Tensor x = constant(x16);
  CHECK(near_eq(sess.run(nn::max_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1}, "VALID")),
                 image({{5, 7}, {13, 15}})));
  CHECK(near_eq(sess.run(nn::avg_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1}, "VALID")),
                 image({{2.5, 4.5}, {10.5, 12.5}})));
  // x = 1..9 as 3x3, 3x3 windows, stride 2, SAME: out 2, pad_total = 2, one row/column before.
  // Windows clipped to rows/cols {0,1} and {1,2}: max 5 6 8 9; averages over the 4 in-image
  // elements only (padding excluded): (1+2+4+5)/4 = 3, (2+3+5+6)/4 = 4, 6, 7.
  Arr x9 = Arr::from_shape({1, 3, 3, 1});
  for (int i = 0; i < 9; ++i) x9.data()[i] = i + 1;
  for (DType t : {float32, float64}) {
    CAPTURE(t);
    Tensor xt9 = cast(constant(x9), t);
    CHECK(near_eq(sess.run(nn::max_pool(xt9, {1, 3, 3, 1}, {1, 2, 2, 1}, "SAME")),
                   image({{5, 6}, {8, 9}})));
    CHECK(near_eq(sess.run(nn::avg_pool(xt9, {1, 3, 3, 1}, {1, 2, 2, 1}, "SAME")),
                   image({{3, 4}, {6, 7}})));
  }
}

TEST_CASE("pool.matches_naive_loops_in_both_formats") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  const Arr xv = uniform({2, 5, 7, 3}, 8);
  struct Case {
    i64 kh, kw, sh, sw;
    bool same;
  };
  for (const Case c : {Case{2, 2, 2, 2, false}, Case{3, 3, 2, 2, true}, Case{3, 2, 1, 2, false},
                       Case{2, 3, 3, 1, true}}) {
    CAPTURE(c.kh);
    CAPTURE(c.same);
    const std::string pad = c.same ? "SAME" : "VALID";
    for (bool max : {true, false}) {
      CAPTURE(max);
      const Arr want = naive_pool(xv, c.kh, c.kw, c.sh, c.sw, c.same, max);
      const auto pool = max ? nn::max_pool : nn::avg_pool;
      Tensor x = placeholder(float64, {-1, 5, 7, 3});
      Tensor y = pool(x, {c.kh, c.kw}, {c.sh, c.sw}, pad, "NHWC", "");
      CHECK(y.shape() == Shape{-1, i64(want.shape()[1]), i64(want.shape()[2]), 3});
      CHECK(near_eq(sess.run(y, {{x, xv}}), want, 1e-12, 1e-12));
      Tensor xc = placeholder(float64, {-1, 3, 5, 7});
      Tensor yc = pool(xc, {1, 1, c.kh, c.kw}, {1, 1, c.sh, c.sw}, pad, "NCHW", "");
      CHECK(yc.shape() == Shape{-1, 3, i64(want.shape()[1]), i64(want.shape()[2])});
      CHECK(near_eq(sess.run(yc, {{xc, to_nchw(xv)}}), to_nchw(want), 1e-12, 1e-12));
    }
  }
}

TEST_CASE("pool.gradient_values_ties_go_to_the_first_maximum") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // One 2x2 window holding [[1, 3], [3, 2]]: the first maximum (row-major) gets the gradient.
  Tensor x = constant(image({{1, 3}, {3, 2}}));
  Tensor y = nn::max_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1}, "VALID");
  Tensor dx = *gradients({y}, {x}, {constant(image({{5}}))})[0];
  CHECK(dx.op().type() == "MaxPoolGrad");
  CHECK(near_eq(sess.run(dx), image({{0, 5}, {0, 0}})));
  // Overlapping 2x2 windows, stride 1, on [[1 2 3] [4 9 5] [6 7 8]]: 9 is every window's max, so
  // it collects all four gradients 1 + 2 + 3 + 4.
  Tensor x3 = constant(image({{1, 2, 3}, {4, 9, 5}, {6, 7, 8}}));
  Tensor y3 = nn::max_pool(x3, {2, 2}, {1, 1}, "VALID");
  Tensor dx3 = *gradients({y3}, {x3}, {constant(image({{1, 2}, {3, 4}}))})[0];
  CHECK(near_eq(sess.run(dx3), image({{0, 0, 0}, {0, 10, 0}, {0, 0, 0}})));
  // Average, 2x2 windows, stride 1, SAME on 2x2: windows clipped to 4, 2, 2, 1 elements, so
  // dx[0,0] = 1/4, dx[0,1] = 1/4 + 1/2, dx[1,0] = 1/4 + 1/2, dx[1,1] = 1/4 + 1/2 + 1/2 + 1 for
  // an all-ones dy.
  Tensor x2 = constant(image({{1, 2}, {3, 4}}));
  Tensor a2 = nn::avg_pool(x2, {2, 2}, {1, 1}, "SAME");
  Tensor da2 = *gradients(reduce_sum(a2), {x2})[0];
  CHECK(da2.op().type() == "AvgPoolGrad");
  CHECK(da2.shape() == Shape{1, 2, 2, 1});
  CHECK(near_eq(sess.run(da2), image({{0.25, 0.75}, {0.75, 2.25}})));
}

TEST_CASE("pool.build_and_run_time_errors_name_the_op") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 6, 6, 2}, "x");
  const auto value_error = [](auto fn, const std::string& part, const std::string& type) {
    const std::string m = message_of<ValueError>(fn);
    INFO(m);
    CHECK(contains(m, part));
    CHECK(contains(m, type));
  };
  value_error([&] { nn::max_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1}, "Valid"); }, "padding must be",
              "MaxPool");
  value_error([&] { nn::avg_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1}, "VALID", "NCWH"); }, "data_format",
              "AvgPool");
  value_error([&] { nn::max_pool(x, {2, 2, 2, 1}, {1, 2, 2, 1}, "VALID"); },
              "ksize in the batch and channel dimensions must be 1", "MaxPool");
  value_error([&] { nn::max_pool(x, {1, 2, 2, 1}, {1, 2, 2, 1, 1}, "VALID"); },
              "strides must have 4 entries", "MaxPool");
  value_error([&] { nn::avg_pool(x, {1, 7, 2, 1}, {1, 1, 1, 1}, "VALID"); },
              "Negative dimension size caused by subtracting 7 from 6", "AvgPool");
  value_error([&] { nn::max_pool(placeholder(float32, {6, 6, 2}), {2, 2}, {2, 2}, "VALID"); },
              "input must be 4-dimensional", "MaxPool");
  CHECK_THROWS_AS(nn::max_pool(placeholder(int32, {1, 4, 4, 1}), {2}, {2}, "VALID"), TypeError);
  // Run time.
  Tensor xu = placeholder(float64, {-1, -1, -1, 1});
  Tensor y = nn::avg_pool(xu, {3, 3}, {1, 1}, "VALID", "NHWC", "pool");
  Session sess;
  const std::string m = message_of<InvalidArgumentError>(
      [&] { sess.run(y, {{xu, Arr(xt::zeros<double>({1, 2, 5, 1}))}}); });
  CHECK(contains(m, "AvgPool 'pool'"));
  CHECK(contains(m, "subtracting 3 from 2"));
}

// ---------------------------------------------------------------- gradient checks (float64)

TEST_CASE("pool.gradient_checks") {
  Graph g;
  auto guard = g.as_default();
  // Distinct values spaced 0.1 apart: finite differences (step 1e-6) never change the maxima.
  const Arr xv = distinct({2, 4, 5, 2}, 21);
  Tensor x = placeholder(float64, {2, 4, 5, 2});
  SUBCASE("MaxPool, overlapping SAME windows") {
    check_grad(nn::max_pool(x, {3, 3}, {2, 2}, "SAME"), {{x, xv}});
  }
  SUBCASE("MaxPool NCHW") {
    Tensor xc = placeholder(float64, {2, 2, 4, 5});
    check_grad(nn::max_pool(xc, {1, 1, 2, 2}, {1, 1, 2, 2}, "VALID", "NCHW"), {{xc, to_nchw(xv)}});
  }
  SUBCASE("AvgPool") {
    check_grad(nn::avg_pool(x, {2, 3}, {1, 2}, "SAME"), {{x, xv}});
  }
  SUBCASE("AvgPool NCHW") {
    Tensor xc = placeholder(float64, {2, 2, 4, 5});
    check_grad(nn::avg_pool(xc, {1, 1, 3, 2}, {1, 1, 1, 2}, "VALID", "NCHW"), {{xc, to_nchw(xv)}});
  }
  SUBCASE("MaxPoolGrad and MaxPoolGradGrad") {
    Tensor y = nn::max_pool(x, {2, 2}, {1, 2}, "VALID");  // [2, 3, 2, 2]
    Tensor dy = placeholder(float64, {2, 3, 2, 2});
    Tensor dx = *gradients({y}, {x}, {dy})[0];
    REQUIRE(dx.op().type() == "MaxPoolGrad");
    // Linear in dy; zero in x (the chosen elements do not move under small steps).
    check_grad(dx, {{dy, uniform({2, 3, 2, 2}, 22)}, {x, xv}});
    Tensor h = placeholder(float64, {2, 4, 5, 2});
    Tensor ddy = *gradients({dx}, {dy}, {h})[0];
    REQUIRE(ddy.op().type() == "MaxPoolGradGrad");
    CHECK(ddy.shape() == Shape{2, 3, 2, 2});
    check_grad(ddy, {{h, uniform({2, 4, 5, 2}, 23)}, {x, xv}});
  }
  SUBCASE("AvgPoolGrad") {
    Tensor y = nn::avg_pool(x, {3, 2}, {2, 2}, "SAME");  // [2, 2, 3, 2]
    Tensor dy = placeholder(float64, {2, 2, 3, 2});
    Tensor dx = *gradients({y}, {x}, {dy})[0];
    REQUIRE(dx.op().type() == "AvgPoolGrad");
    check_grad(dx, {{dy, uniform({2, 2, 3, 2}, 24)}});
  }
}

TEST_CASE("pool.max_pool_grad_grad_picks_the_chosen_element") {
  Graph g;
  auto guard = g.as_default();
  Session sess;
  // Window [[1, 3], [3, 2]] chooses its first 3 (position (0, 1)): MaxPoolGradGrad reads h there.
  Tensor x = constant(image({{1, 3}, {3, 2}}));
  Tensor dy = placeholder(float64, {1, 1, 1, 1});
  Tensor dx = *gradients({nn::max_pool(x, {2, 2}, {2, 2}, "VALID")}, {x}, {dy})[0];
  Tensor ddy = *gradients({dx}, {dy}, {constant(image({{10, 20}, {30, 40}}))})[0];
  CHECK(near_eq(sess.run(ddy, {{dy, image({{1}})}}), image({{20}})));
}
