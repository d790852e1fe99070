#pragma once
// Test helpers: approximate comparison of arrays, and a one-line gradient check.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "autodiff/gradient_checker.hpp"
#include "framework/array.hpp"
#include "framework/session.hpp"

namespace kiln::testing {

/// Every element of `actual` within atol + rtol*|expected| of `expected`, shapes equal.
inline bool allclose(const Array& actual, const xt::xarray<double>& expected, double rtol = 1e-5, double atol = 1e-6) {
  const auto a = actual.to_double();
  if (a.shape() != expected.shape()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(a.data()[i] - expected.data()[i]) <= atol + rtol * std::abs(expected.data()[i]))) return false;
  return true;
}

/// CHECKs that the symbolic gradient of y matches central differences within `tol`.
inline void check_grad(const Tensor& y, const FeedDict& xs, double tol = 1e-6, GradientCheckOptions options = {}) {
  const auto r = check_gradients(y, xs, options);
  INFO(r.report);
  CHECK(r.max_error < tol);
}

/// allclose under a name that argument-dependent lookup cannot confuse with xt::allclose when the
/// expected value is an xtensor expression.
inline bool near_eq(const Array& actual, const xt::xarray<double>& expected, double rtol = 1e-5,
                    double atol = 1e-6) {
  return allclose(actual, expected, rtol, atol);
}

/// float32 gradient checks: a larger finite-difference step.
inline const GradientCheckOptions kFloat32{.delta = 1e-3, .extra_feeds = {}};

/// An [n, 1] array from values (nested one-element braces are ambiguous for xt::xarray).
inline xt::xarray<double> column(const std::vector<double>& v) {
  xt::xarray<double> c = xt::xarray<double>::from_shape({v.size(), 1});
  std::copy(v.begin(), v.end(), c.begin());
  return c;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Whether the session's last run executed the op named `op`.
inline bool ran(const Session& s, const std::string& op) {
  const auto ops = s.last_run_ops();
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

}  // namespace kiln::testing
