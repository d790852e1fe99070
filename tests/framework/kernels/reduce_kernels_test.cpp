// Pairwise summation (framework/kernels/reduce.hpp) and the accuracy it buys where sums are long:
// the references are exact sums (integers, or values whose float64 sum is exact) and, for batch
// norm, the same graph evaluated in float64.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <kiln.hpp>

#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/reduce.hpp"

using namespace kiln;

TEST_CASE("reduce_kernels.pairwise_sum_matches_exact_sums") {
  // 1 + 2^-24 (float32 ulp at 1 is 2^-23): added one by one in float32 every term after the first
  // rounds away; pairwise in float32 keeps them, as the float64 accumulation does.
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 127u, 128u, 129u, 1000u, 100003u}) {
    CAPTURE(n);
    std::vector<float> x(n, 1.0f + 0x1.0p-24f);  // rounds to 1.0f: ties to even
    std::vector<float> y(n, 0x1.0p-24f);
    if (n) y[0] = 1.0f;
    CHECK(kernels::pairwise_sum<double>(x.data(), n) == static_cast<double>(n));
    // 1 + (n - 1) 2^-24 is exact in double for these n.
    const double exact = n ? 1.0 + static_cast<double>(n - 1) * 0x1.0p-24 : 0.0;
    CHECK(kernels::pairwise_sum<double>(y.data(), n) == exact);
    // In float32 itself, pairwise loses at most the terms added one by one into the accumulator
    // that holds the 1 (within one block of 128: about 16 + 7), naive loses all n - 1.
    const float pw = kernels::pairwise_sum<float>(y.data(), n);
    CHECK(std::abs(static_cast<double>(pw) - exact) <= 32 * 0x1.0p-24);
  }
}

TEST_CASE("reduce_kernels.sums_of_products_are_the_sums_of_the_stored_products_bit_for_bit") {
  // A ProductOf<float> source (the plan's _SumOfProducts) has its own vectorised leaves: each
  // product rounded to float, then the same additions in the same order as the generic code on
  // the stored products, for every length around the leaf and split boundaries; NaN, infinities,
  // -0 and denormal products too.
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.f, 100.f);
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 15u, 16u, 17u, 127u, 128u, 129u, 200u, 263u, 1000u, 4099u}) {
    CAPTURE(n);
    std::vector<float> a(n), b(n), p(n);
    for (std::size_t i = 0; i < n; ++i) a[i] = normal(gen), b[i] = normal(gen);
    if (n > 20) a[3] = 1e-30f, b[3] = 1e-10f, a[11] = -0.f, b[17] = 3e38f, a[17] = 10.f;  // denormal, -0, overflow
    for (std::size_t i = 0; i < n; ++i) p[i] = a[i] * b[i];
    const double fused = kernels::pairwise_sum<double>(kernels::ProductOf<float>{a.data(), b.data()}, n);
    const double stored = kernels::pairwise_sum<double>(p.data(), n);
    if (std::isnan(stored)) CHECK(std::isnan(fused));
    else CHECK(fused == stored);
    if (n > 20) {
      b[5] = std::numeric_limits<float>::quiet_NaN();
      CHECK(std::isnan(kernels::pairwise_sum<double>(kernels::ProductOf<float>{a.data(), b.data()}, n)));
    }
  }
}

TEST_CASE("reduce_kernels.sum_rows_and_axes") {
  // x [5, 300, 3] of small integers: every order gives the exact sum, so this checks the indexing
  // of the recursion (blocks of 128 rows, odd halves) against a plain loop.
  const std::size_t a = 5, n = 300, b = 3;
  std::vector<std::int32_t> x(a * n * b);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::int32_t>((i * 37) % 11) - 5;
  const auto mid = kernels::reduce_sum<std::int64_t>(x.data(), {a, n, b}, {0, 1, 0});
  const auto outer = kernels::reduce_sum<std::int64_t>(x.data(), {a, n, b}, {1, 0, 1});
  const auto all = kernels::reduce_sum<std::int64_t>(x.data(), {a, n, b}, {1, 1, 1});
  std::vector<std::int64_t> mid_ref(a * b, 0), outer_ref(n, 0);
  std::int64_t all_ref = 0;
  for (std::size_t i = 0; i < a; ++i)
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t k = 0; k < b; ++k) {
        const auto v = x[(i * n + j) * b + k];
        mid_ref[i * b + k] += v;
        outer_ref[j] += v;
        all_ref += v;
      }
  CHECK(mid == mid_ref);
  CHECK(outer == outer_ref);
  REQUIRE(all.size() == 1);
  CHECK(all[0] == all_ref);
}

// The order sum_rows promises, one column at a time: leaves of up to 128 rows added in order
// from zero, larger runs split in halves (n / 2 and the rest) whose sums are added.
double column_sum_in_order(const std::vector<float>& x, std::size_t first, std::size_t n, std::size_t inner,
                           std::size_t column) {
  if (n <= kernels::kPairwiseBlock) {
    double s = 0;
    for (std::size_t r = first; r < first + n; ++r) s += static_cast<double>(x[r * inner + column]);
    return s;
  }
  const std::size_t half = n / 2;
  const double left = column_sum_in_order(x, first, half, inner, column);
  return left + column_sum_in_order(x, first + half, n - half, inner, column);
}

TEST_CASE("reduce_kernels.sum_rows_adds_each_column_in_the_pairwise_order") {
  // Narrow rows (columns in register groups) and wide ones (rows streamed in column chunks of
  // 2048 doubles, four rows at a time): either way each column's sum is bit for bit the pairwise
  // order's. 300 rows split into leaves of 75 (not a multiple of four); 2100 columns cross a chunk.
  std::mt19937 gen(11);
  std::normal_distribution<float> d(0.f, 1.f);
  for (const std::size_t inner : {std::size_t{3}, std::size_t{40}, kernels::kStreamColumns, std::size_t{100}, std::size_t{2100}}) {
    CAPTURE(inner);
    const std::size_t n = 300;
    std::vector<float> x(n * inner);
    // Magnitudes from 2^-30 to 2^30: their float64 sums round, so a different order shows.
    std::uniform_int_distribution<int> exponent(-30, 30);
    for (float& v : x) v = std::ldexp(d(gen), exponent(gen));
    std::vector<double> y(inner, -1.0);
    kernels::sum_rows(x.data(), n, inner, y.data());
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < inner; ++i) mismatches += y[i] != column_sum_in_order(x, 0, n, inner, i);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("reduce_kernels.float32_sums_of_many_terms") {
  // 2^20 values of 0.1f: added one by one in float32 the sum drifts by about 1e-3 relative;
  // pairwise in double it is the float64 sum of the same float32 values rounded once.
  Graph g;
  auto guard = g.as_default();
  const std::size_t n = std::size_t{1} << 20;
  xt::xarray<float> v = xt::xarray<float>::from_shape({n / 2, 2});
  v.fill(0.1f);
  const double tenth = static_cast<double>(0.1f);
  const auto f32 = [](double d) { return static_cast<double>(static_cast<float>(d)); };
  Tensor x = constant(Array(v));
  Tensor s = placeholder(float32, {1}, "s");     // x * s: d/ds is SumToShape over all of x
  Tensor bias = placeholder(float32, {2}, "bias");  // d/dbias: BiasAddGrad(x), 2^19 rows
  const auto grads = gradients({reduce_sum(x * s), reduce_sum(nn::bias_add(x, bias) * x)}, {s, bias});
  Session sess;
  const FeedDict feeds{{s, xt::xarray<float>{1}}, {bias, xt::xarray<float>{0, 0}}};
  const auto out = sess.run({reduce_sum(x), reduce_mean(x), *grads[0], *grads[1], nn::l2_loss(x)}, feeds);
  CHECK(out[0].to_double()() == f32(tenth * static_cast<double>(n)));
  CHECK(out[1].to_double()() == f32(tenth));
  CHECK(out[2].to_double()(0) == f32(tenth * static_cast<double>(n)));
  CHECK(out[3].to_double() == xt::xarray<double>{f32(tenth * static_cast<double>(n / 2)),
                                                  f32(tenth * static_cast<double>(n / 2))});
  CHECK(out[4].to_double()() == f32(tenth * tenth * static_cast<double>(n) / 2));
}

TEST_CASE("reduce_kernels.split_sums_are_the_sequential_sums_bit_for_bit") {
  // sum_middle splits large sums across the pool (rows into subtrees of the pairwise recursion, or
  // independent outputs): the results must be sum_rows' exactly, for 1, 2 and 3 threads.
  std::mt19937 gen(7);
  std::normal_distribution<float> d(1e3f, 1.f);
  const int before = num_threads();
  for (const std::array<std::size_t, 3>& shape : {std::array<std::size_t, 3>{1, 50177, 32}, {1, 100003, 3}, {1, 300, 1000},
                                 {1, 257, 256}, {4, 9000, 16}, {64, 784, 1}}) {
    const std::size_t outer = shape[0], n = shape[1], inner = shape[2];
    CAPTURE(outer);
    CAPTURE(n);
    CAPTURE(inner);
    std::vector<float> x(outer * n * inner);
    for (float& v : x) v = d(gen);
    std::vector<double> ref(outer * inner);
    for (std::size_t o = 0; o < outer; ++o) kernels::sum_rows(x.data() + o * n * inner, n, inner, ref.data() + o * inner);
    for (int t : {1, 2, 3}) {
      set_num_threads(t);
      std::vector<double> y(outer * inner, -1.0);
      kernels::sum_middle(x.data(), outer, n, inner, y.data());
      CHECK(y == ref);
    }
  }
  set_num_threads(before);
}

TEST_CASE("reduce_kernels.broadcast_sources_sum_as_their_stored_values_bit_for_bit") {
  // The plan's _SumOfCenteredProducts and _SumOfScaledValues sum (a - m) * b and a * m, m
  // broadcast, without storing them: in column rows (m per column: wide rows streamed, chunked,
  // narrow ones in column groups), in constant runs (m per plane or row: stepped row by row), or
  // formed a block at a time (m along other axes), on 1 to 3 threads. Each must be the sum of the
  // stored values bit for bit; the values hold NaN, infinities, -0 and denormals, and a spans
  // 2^-40 to 2^40 times its normal draw, so that the double sums round and any change in the
  // order of the additions shows in the bits.
  struct Case {
    kernels::Dims dims;
    kernels::AxisMask mask;
    kernels::Extents m;
  };
  const std::vector<Case> cases{{{3000, 64}, {1, 0}, {64}},      {{300, 2500}, {1, 0}, {2500}}, {{2000, 32}, {1, 0}, {32}},
                                {{50177, 32}, {1, 0}, {32}},     {{4, 3, 200}, {1, 0, 1}, {3, 1}}, {{5, 7}, {0, 1}, {5, 1}},
                                {{64, 8, 196}, {1, 0, 1}, {8, 1}}, {{4, 6, 5}, {1, 0, 1}, {4, 1, 5}}, {{6, 400}, {1, 1}, {}}};
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.f, 10.f);
  const int before = num_threads();
  for (const Case& c : cases) {
    CAPTURE(c.dims.size());
    CAPTURE(c.dims[0]);
    const kernels::Extents sx(c.dims.begin(), c.dims.end());
    std::vector<std::size_t> xs(c.dims.begin(), c.dims.end()), ms(c.m.begin(), c.m.end());
    xt::xarray<float> a = xt::xarray<float>::from_shape(xs), b = xt::xarray<float>::from_shape(xs);
    xt::xarray<float> m = xt::xarray<float>::from_shape(ms);
    std::uniform_int_distribution<int> exponent(-40, 40);
    for (float& v : a) v = std::ldexp(normal(gen), exponent(gen));
    for (float& v : b) v = normal(gen);
    for (float& v : m) v = normal(gen);
    a.data()[3] = std::numeric_limits<float>::quiet_NaN(), a.data()[10] = std::numeric_limits<float>::infinity();
    b.data()[10] = 0.f, a.data()[12] = -0.f, b.data()[14] = 1e-40f;
    const xt::xarray<float> centered = (a - m) * b, scaled = a * m;
    kernels::BroadcastLoops l = kernels::broadcast_loops(c.m, sx, sx);
    if (l.dims.empty()) l.dims = {1}, l.st_a = {0};
    const auto same = [](const std::vector<double>& x, const std::vector<double>& y) {
      REQUIRE(x.size() == y.size());
      for (std::size_t i = 0; i < x.size(); ++i)
        if (std::isnan(y[i])) CHECK(std::isnan(x[i]));
        else CHECK(x[i] == y[i]);
    };
    const std::vector<double> want_centered = kernels::reduce_sum<double>(centered.data(), c.dims, c.mask);
    const std::vector<double> want_scaled = kernels::reduce_sum<double>(scaled.data(), c.dims, c.mask);
    const auto sum_of = [&](auto source) {
      std::vector<double> out(kernels::kept_size(c.dims, c.mask), -1.0);
      kernels::reduce_sum<double>(source, c.dims, c.mask, out.data());
      return out;
    };
    for (int t : {1, 2, 3}) {
      CAPTURE(t);
      set_num_threads(t);
      same(sum_of(kernels::CenteredProducts<float>{a.data(), b.data(), m.data(), &l.dims, &l.st_a}), want_centered);
      same(sum_of(kernels::ScaledValues<float>{a.data(), nullptr, m.data(), &l.dims, &l.st_a}), want_scaled);
    }
  }
  set_num_threads(before);
}
