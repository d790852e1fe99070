// The kernels' thread-pool behaviour and max pooling's argmax: results bit-identical for 1, 2
// and 3 threads (the chunks depend only on the sizes), argmax values and NaN propagation,
// argmax checks, the gemm backend's self-description, and the scratch pools kernels work in.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "framework/errors.hpp"
#include "framework/kernels/batch_norm.hpp"
#include "framework/kernels/conv2d.hpp"
#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/gemm.hpp"
#include "framework/kernels/pooling.hpp"
#include "framework/kernels/scratch.hpp"
#include "framework/thread_pool.hpp"

namespace {

using i64 = std::int64_t;
namespace kk = kiln::kernels;
using kk::Padding;

std::vector<float> random_floats(i64 n, unsigned seed, float offset = 0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = offset + dist(gen);
  return v;
}

// Runs `compute` (which fills and returns its outputs) with 1, 2 and 3 threads and checks the
// results are bitwise equal; restores the thread count.
template <class F>
void check_same_for_any_thread_count(F compute) {
  const int keep = kiln::num_threads();
  kiln::set_num_threads(1);
  const auto want = compute();
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    kiln::set_num_threads(threads);
    CHECK(compute() == want);  // bitwise: float == compares values, and none is NaN
  }
  kiln::set_num_threads(keep);
}

TEST_CASE("kernels.threads.gemm_conv_pool_batch_norm_bit_identical_for_any_thread_count") {
  SUBCASE("gemm, large enough to be split") {  // 10.5M multiply-adds: kParallelWork is 2^23
    const i64 m = 600, n = 70, k = 250;
    const auto a = random_floats(m * k, 1), b = random_floats(k * n, 2);
    check_same_for_any_thread_count([&] {
      std::vector<float> c(static_cast<std::size_t>(m * n));
      kk::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
      return c;
    });
  }
  for (bool channels_first : {false, true}) {
    CAPTURE(channels_first);
    SUBCASE("conv2d forward and backprop") {
      const auto g = kk::make_conv2d_geometry(
          {.batch = 12, .in_h = 9, .in_w = 8, .in_c = 5, .out_c = 7, .kernel_h = 3, .kernel_w = 3,
           .channels_first = channels_first},
          Padding::same);
      const auto x = random_floats(g.input_size(), 3), f = random_floats(g.filter_size(), 4),
                 dy = random_floats(g.output_size(), 5);
      check_same_for_any_thread_count([&] {
        std::vector<float> y(g.output_size()), dx(g.input_size()), df(g.filter_size());
        kk::conv2d_forward(g, x.data(), f.data(), y.data());
        kk::conv2d_backprop_input(g, f.data(), dy.data(), dx.data());
        kk::conv2d_backprop_filter(g, x.data(), dy.data(), df.data());
        y.insert(y.end(), dx.begin(), dx.end());
        y.insert(y.end(), df.begin(), df.end());
        return y;
      });
    }
    SUBCASE("max and average pooling") {
      const auto g = kk::make_pool2d_geometry(
          {.batch = 40, .in_h = 10, .in_w = 10, .channels = 12, .window_h = 3, .window_w = 3,
           .stride_h = 2, .stride_w = 2, .channels_first = channels_first},
          Padding::same);
      const auto x = random_floats(g.input_size(), 6), dy = random_floats(g.output_size(), 7);
      check_same_for_any_thread_count([&] {
        std::vector<float> y(g.output_size()), dx(g.input_size()), ya(g.output_size());
        std::vector<i64> argmax(g.output_size());
        kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
        kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
        kk::avg_pool_forward(g, x.data(), ya.data());
        y.insert(y.end(), dx.begin(), dx.end());
        y.insert(y.end(), ya.begin(), ya.end());
        for (i64 a : argmax) y.push_back(static_cast<float>(a));
        return y;
      });
    }
    SUBCASE("batch norm training forward and backward") {
      // Enough elements per channel for several statistics blocks, offset 1e4 from zero.
      const kk::BnLayout l = channels_first ? kk::BnLayout{6, 5, 4000} : kk::BnLayout{6000, 5, 1};
      const i64 size = l.outer * l.channels * l.inner;
      const auto x = random_floats(size, 8, 1e4f), dy = random_floats(size, 9);
      const auto gamma = random_floats(5, 10), beta = random_floats(5, 11);
      check_same_for_any_thread_count([&] {
        std::vector<float> y(size), dx(size), stats(5 * 5);
        float* s = stats.data();
        kk::fused_batch_norm_forward_training(x.data(), gamma.data(), beta.data(), l, 1e-3,
                                              y.data(), s, s + 5, s + 10);
        kk::fused_batch_norm_backward_training(dy.data(), x.data(), gamma.data(), s, s + 10, l,
                                               dx.data(), s + 15, s + 20);
        y.insert(y.end(), dx.begin(), dx.end());
        y.insert(y.end(), stats.begin(), stats.end());
        return y;
      });
    }
  }
  SUBCASE("elementwise maps over many elements") {
    const auto a = random_floats(200000, 12), b = random_floats(200000, 13);
    check_same_for_any_thread_count([&] {
      std::vector<float> y(a.size());
      kk::map_binary(a.data(), 1, b.data(), 1, y.data(), y.size(), [](auto u, auto v) { return u * v + u; });
      return y;
    });
  }
}

TEST_CASE("kernels.elementwise.large_maps_cover_every_element") {
  // Sizes around the parallel threshold and chunk edges: every element is written exactly once.
  for (std::size_t n : {kk::kParallelElements - 1, kk::kParallelElements, kk::kParallelElements + 13}) {
    CAPTURE(n);
    std::vector<double> x(n), y(n, -1.0);
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<double>(i);
    kk::map_unary(x.data(), y.data(), n, [](auto v) { return v + v; });
    bool all = true;
    for (std::size_t i = 0; i < n; ++i) all = all && y[i] == 2.0 * static_cast<double>(i);
    CHECK(all);
  }
}

// ---------------------------------------------------------------------------------------------
// Max pooling's argmax

TEST_CASE("kernels.pooling.argmax_is_the_flat_input_index_of_the_first_maximum") {
  // One image 2x2, two channels, one 2x2 window; channel 0 [[1, 3], [3, 2]] (tie: the first 3,
  // pixel (0, 1)), channel 1 [[4, 0], [0, 0]] (pixel (0, 0)).
  const std::vector<float> nhwc = {1, 4, 3, 0, 3, 0, 2, 0};
  const std::vector<float> nchw = {1, 3, 3, 2, 4, 0, 0, 0};
  for (bool channels_first : {false, true}) {
    CAPTURE(channels_first);
    const auto g = kk::make_pool2d_geometry({.batch = 1, .in_h = 2, .in_w = 2, .channels = 2,
                                             .window_h = 2, .window_w = 2,
                                             .channels_first = channels_first},
                                            Padding::valid);
    std::vector<float> y(2);
    std::vector<i64> argmax(2);
    kk::max_pool_forward(g, (channels_first ? nchw : nhwc).data(), y.data(), argmax.data());
    CHECK(y == std::vector<float>{3, 4});
    // NHWC: element (h, w, c) is (h * 2 + w) * 2 + c; NCHW: c * 4 + h * 2 + w.
    CHECK(argmax == (channels_first ? std::vector<i64>{1, 4} : std::vector<i64>{2, 1}));
    const std::vector<float> dy = {10, 20};
    std::vector<float> dx(8, -1);
    kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
    std::vector<float> want(8, 0);
    want[static_cast<std::size_t>(argmax[0])] = 10, want[static_cast<std::size_t>(argmax[1])] = 20;
    CHECK(dx == want);
    // MaxPoolGradGrad reads gg at the chosen elements.
    std::vector<float> gg = {0, 1, 2, 3, 4, 5, 6, 7}, out(2);
    kk::max_pool_grad_grad(g, argmax.data(), gg.data(), out.data());
    CHECK(out == std::vector<float>{float(argmax[0]), float(argmax[1])});
  }
}

TEST_CASE("kernels.pooling.nan_anywhere_in_a_window_propagates_with_its_gradient") {
  // 17 channels: two full AVX2 float vectors and a scalar tail, in both layouts. Window 1x3 over
  // a 1x3 image; channel c has its NaN at column c % 3 (c % 4 == 3: no NaN, maximum at column 1),
  // and a larger value after the NaN where there is room.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const i64 C = 17;
  for (bool channels_first : {false, true}) {
    CAPTURE(channels_first);
    const auto g = kk::make_pool2d_geometry({.batch = 2, .in_h = 1, .in_w = 3, .channels = C,
                                             .window_h = 1, .window_w = 3,
                                             .channels_first = channels_first},
                                            Padding::valid);
    const auto at = [&](i64 n, i64 w, i64 c) {
      return channels_first ? (n * C + c) * 3 + w : (n * 3 + w) * C + c;
    };
    std::vector<float> x(g.input_size());
    for (i64 n = 0; n < 2; ++n)
      for (i64 c = 0; c < C; ++c) {
        const bool has_nan = c % 4 != 3;
        for (i64 w = 0; w < 3; ++w) x[at(n, w, c)] = float(w == 1 ? 5 : w);
        if (has_nan) x[at(n, c % 3, c)] = nan;
        if (has_nan && c % 3 == 0) x[at(n, 2, c)] = 9;  // greater than everything, after the NaN
      }
    std::vector<float> y(g.output_size()), dy(g.output_size(), 1), dx(g.input_size());
    std::vector<i64> argmax(g.output_size());
    kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
    kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
    for (i64 n = 0; n < 2; ++n)
      for (i64 c = 0; c < C; ++c) {
        CAPTURE(c);
        const i64 o = n * C + c;  // the output is 1x1 in both layouts
        const bool has_nan = c % 4 != 3;
        const i64 chosen = has_nan ? at(n, c % 3, c) : at(n, 1, c);
        CHECK(std::isnan(y[o]) == has_nan);
        CHECK(argmax[o] == chosen);
        CHECK(dx[chosen] == 1);
      }
  }
}

TEST_CASE("kernels.pooling.argmax_outside_its_image_throws") {
  const auto g = kk::make_pool2d_geometry({.batch = 2, .in_h = 2, .in_w = 2, .channels = 1,
                                           .window_h = 2, .window_w = 2},
                                          Padding::valid);
  std::vector<float> dy = {1, 2}, dx(8), out(2);
  const std::vector<i64> bad = {0, 3};  // image 1's output points into image 0
  CHECK_THROWS_AS(kk::max_pool_backward(g, bad.data(), dy.data(), dx.data()),
                  kiln::InvalidArgumentError);
  CHECK_THROWS_AS(kk::max_pool_grad_grad(g, bad.data(), dx.data(), out.data()),
                  kiln::InvalidArgumentError);
  const std::vector<i64> good = {3, 4};
  kk::max_pool_backward(g, good.data(), dy.data(), dx.data());
  CHECK(dx == std::vector<float>{0, 0, 0, 1, 2, 0, 0, 0});
}

// MaxPoolGrad as the scatter it is defined as (pooling.hpp): dx = 0, dx[argmax[o]] += dy[o].
template <class T>
std::vector<T> scattered(const std::vector<i64>& argmax, const std::vector<T>& dy, i64 input_size) {
  std::vector<T> dx(static_cast<std::size_t>(input_size), T(0));
  for (std::size_t o = 0; o < argmax.size(); ++o)
    if (argmax[o] != -1) dx[static_cast<std::size_t>(argmax[o])] += dy[o];
  return dx;
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST_CASE_TEMPLATE("kernels.pooling.backward_of_disjoint_windows_is_the_scatter_bit_for_bit", T, float, double) {
  // Disjoint windows (NHWC writes each pixel once from its window's outputs, pooling.cpp) and
  // others: VALID with rows and columns past the last window, SAME with clipped windows, a gap
  // between windows (stride 3), one window wider than its stride, a padded 3x3/3; channels
  // with and without full vectors. dy holds -0 (the scatter gives +0), NaN and infinity.
  struct Case {
    i64 in_h, in_w, channels, window, stride;
    Padding padding;
  };
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  for (const Case k : {Case{8, 8, 32, 2, 2, Padding::valid}, Case{9, 7, 9, 2, 2, Padding::valid},
                       Case{9, 7, 5, 2, 2, Padding::same}, Case{8, 7, 17, 2, 3, Padding::valid},
                       Case{3, 3, 8, 3, 1, Padding::valid}, Case{7, 8, 4, 3, 3, Padding::same},
                       Case{6, 6, 1, 2, 2, Padding::valid}})
    for (bool channels_first : {false, true}) {
      INFO(k.in_h << "x" << k.in_w << "x" << k.channels << " window " << k.window << " stride " << k.stride);
      CAPTURE(channels_first);
      const auto g = kk::make_pool2d_geometry(
          {.batch = 3, .in_h = k.in_h, .in_w = k.in_w, .channels = k.channels, .window_h = k.window,
           .window_w = k.window, .stride_h = k.stride, .stride_w = k.stride, .channels_first = channels_first},
          k.padding);
      std::mt19937 gen(7);
      std::normal_distribution<T> normal;
      std::vector<T> x(static_cast<std::size_t>(g.input_size())), y(static_cast<std::size_t>(g.output_size())),
          dy(y.size()), dx(x.size());
      for (T& v : x) v = normal(gen);
      for (std::size_t o = 0; o < dy.size(); ++o) dy[o] = o % 7 == 0 ? T(-0.0) : o % 11 == 0 ? nan : o % 13 == 0 ? inf : normal(gen);
      std::vector<i64> argmax(y.size());
      kk::max_pool_forward(g, x.data(), y.data(), argmax.data());
      std::fill(dx.begin(), dx.end(), T(7));  // every element is written
      kk::max_pool_backward(g, argmax.data(), dy.data(), dx.data());
      CHECK(same_bits(dx, scattered(argmax, dy, g.input_size())));
      // Gated by a ReluGrad (_MaxPoolGradRelu): features with NaN, -0, 0, negatives; ReluGrad(g, f)
      // is g where f > 0, else NaN where f is NaN, else g * 0 (g - g: NaN for NaN or infinite g).
      std::vector<T> f(x.size());
      for (std::size_t e = 0; e < f.size(); ++e) f[e] = e % 5 == 0 ? nan : e % 7 == 0 ? T(-0.0) : e % 3 == 0 ? T(0) : x[e];
      std::vector<T> gated = scattered(argmax, dy, g.input_size());
      for (std::size_t e = 0; e < f.size(); ++e) gated[e] = f[e] > 0 ? gated[e] : std::isnan(f[e]) ? f[e] : gated[e] - gated[e];
      std::fill(dx.begin(), dx.end(), T(7));
      kk::max_pool_backward_relu(g, argmax.data(), dy.data(), f.data(), dx.data());
      CHECK(same_bits(dx, gated));
      // Entries the forward would not write: image 1's first output points at the first element of
      // image 1 outside its window (or -1); image 2's last output -1. The scatter places them.
      const i64 oi = g.output_size() / 3, ii = g.input_size() / 3;
      std::vector<i64> odd = argmax;
      const auto o1 = static_cast<std::size_t>(oi);
      odd[o1] = odd[o1] == ii ? ii + ii - 1 : ii;
      odd[static_cast<std::size_t>(3 * oi - 1)] = -1;
      std::fill(dx.begin(), dx.end(), T(7));
      kk::max_pool_backward(g, odd.data(), dy.data(), dx.data());
      CHECK(same_bits(dx, scattered(odd, dy, g.input_size())));
      odd[o1] = 0;  // into image 0
      CHECK_THROWS_AS(kk::max_pool_backward(g, odd.data(), dy.data(), dx.data()), kiln::InvalidArgumentError);
    }
}

// ---------------------------------------------------------------------------------------------
// The gemm backend

TEST_CASE("kernels.gemm.backend_description_names_the_libraries_and_kernels") {
  const std::string d = kk::blas_backend_description();
  INFO(d);
  CHECK(d.find("oneDNN ") == 0);
  CHECK(d.find(" sgemm ") != std::string::npos);
  CHECK(d.find("OpenBLAS") != std::string::npos);
  CHECK(d.find("(float64)") != std::string::npos);
}

}  // namespace

TEST_CASE("kernels.scratch.a_pool_holds_what_was_taken_at_once_and_lets_outgrown_buffers_go") {
  kk::ScratchPool pool;
  kk::ScratchScope scope(&pool);
  {
    kk::Scratch<float> a(100), b(50);  // two at once: two buffers
  }
  CHECK(pool.free_bytes() == 600);
  {
    kk::Scratch<float> a(100);  // the 400-byte buffer again, not a new one
    CHECK(pool.free_bytes() == 200);
  }
  {
    kk::Scratch<float> a(1000);  // a larger batch: replaces the largest buffer, 400 bytes
    CHECK(pool.free_bytes() == 200);
  }
  CHECK(pool.free_bytes() == 4200);
  {
    kk::Scratch<float> a(1000), b(1000);  // takes the 4000, replaces the 200
  }
  CHECK(pool.free_bytes() == 8000);
}
