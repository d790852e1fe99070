#pragma once
// What the Conv2D and pooling op tests share: NHWC arrays of double (random, an image from its
// rows, transposed to NCHW), their comparison with a result, TF's window arithmetic, and the
// helpers of tests/support they use.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

#include <xtensor/xmanipulation.hpp>

#include "framework/array.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

namespace kiln::testing::conv_pool_ops {

using Arr = xt::xarray<double>;
using i64 = std::int64_t;
using kiln::testing::check_grad;
using kiln::testing::contains;
using kiln::testing::message_of;

// kiln::testing::allclose under a name that argument-dependent lookup cannot confuse with
// xt::allclose when the expected value is an xtensor expression.
inline bool near_eq(const Array& actual, const Arr& expected, double rtol = 1e-5, double atol = 1e-6) {
  return kiln::testing::allclose(actual, expected, rtol, atol);
}

inline Arr uniform(const std::vector<std::size_t>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Arr a = Arr::from_shape(shape);
  for (auto& v : a) v = u(rng);
  return a;
}

// A [1, H, W, 1] image from its rows (nested one-element braces are ambiguous for xt::xarray).
inline Arr image(std::initializer_list<std::initializer_list<double>> rows) {
  Arr a = Arr::from_shape({1, rows.size(), rows.begin()->size(), 1});
  std::size_t i = 0;
  for (const auto& r : rows)
    for (const double v : r) a.data()[i++] = v;
  return a;
}

inline Arr to_nchw(const Arr& a) { return xt::transpose(a, {0, 3, 1, 2}); }

// One spatial dimension under TF's rules (GetWindowedOutputSizeVerbose): SAME out = ceil(in / s),
// pad_total = max((out - 1) s + e - in, 0), pad_top = pad_total / 2; VALID out = (in - e + s) / s.
struct Dim {
  i64 out, pad;
};
inline Dim tf_dim(i64 in, i64 k, i64 s, i64 d, bool same) {
  const i64 e = (k - 1) * d + 1;
  if (!same) return {(in - e + s) / s, 0};
  const i64 out = (in + s - 1) / s;
  return {out, std::max<i64>((out - 1) * s + e - in, 0) / 2};
}

}  // namespace kiln::testing::conv_pool_ops
