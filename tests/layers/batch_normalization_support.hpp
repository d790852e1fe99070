#pragma once
// Test helpers for the batch-normalization layer tests: random arrays, references in double from
// the formulas of ../shared/BATCH_NORM.md sections 2-5 (statistics, normalization), comparisons.
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xmath.hpp>

#include "framework/array.hpp"
#include "framework/graph.hpp"
#include "tests/support/approx.hpp"

namespace kiln::testing::batch_norm {

using Arr = xt::xarray<double>;
using Dims = std::vector<std::size_t>;

// kiln::testing::allclose under a name that argument-dependent lookup cannot confuse with
// xt::allclose when the expected value is an xtensor expression.
inline bool approx_eq(const Array& actual, const Arr& expected, double rtol, double atol) {
  return kiln::testing::allclose(actual, expected, rtol, atol);
}

inline Arr normal(const Dims& shape, double mean, double sd, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(mean, sd);
  Arr a = Arr::from_shape(shape);
  for (auto& v : a) v = n(rng);
  return a;
}

inline xt::xarray<float> f32(const Arr& a) {
  xt::xarray<float> r = xt::xarray<float>::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = static_cast<float>(a.data()[i]);
  return r;
}

// Mean and biased variance over every axis but `keep`, with the reduced axes kept as size 1.
struct Stats {
  Arr mean, var;
};
inline Stats stats(const Arr& x, const Dims& keep) {
  const auto& sh = x.shape();
  Dims ks(sh.size(), 1);
  for (auto k : keep) ks[k] = sh[k];
  Stats s{xt::zeros<double>(ks), xt::zeros<double>(ks)};
  const auto key = [&](std::size_t i) {
    Dims idx(sh.size());
    for (std::size_t d = sh.size(); d-- > 0;) idx[d] = i % sh[d], i /= sh[d];
    std::size_t k = 0;
    for (std::size_t d = 0; d < sh.size(); ++d) k = k * ks[d] + (ks[d] == 1 ? 0 : idx[d]);
    return k;
  };
  const double per = static_cast<double>(x.size() / s.mean.size());
  for (std::size_t i = 0; i < x.size(); ++i) s.mean.data()[key(i)] += x.data()[i] / per;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = x.data()[i] - s.mean.data()[key(i)];
    s.var.data()[key(i)] += d * d / per;
  }
  return s;
}
inline Arr normalized(const Arr& x, const Stats& s, double eps) { return (x - s.mean) / xt::sqrt(s.var + eps); }
inline Arr shaped(Arr a, const Dims& shape) {
  a.reshape(shape);
  return a;
}
inline Arr flat(Arr a) {
  a.reshape({a.size()});
  return a;
}

inline bool has_op_type(const Graph& g, const std::string& type) {
  for (const auto& op : g.operations())
    if (op.type() == type) return true;
  return false;
}

inline constexpr double kEps = 1e-3;

}  // namespace kiln::testing::batch_norm
