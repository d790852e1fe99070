#pragma once
// Test helpers for the plan's rewrites (framework/simplify.hpp): the op types a run executed,
// bit-for-bit comparison of results, and inputs holding every kind of float.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <kiln.hpp>

namespace kiln::testing {

/// The types of the ops a run executed, and its results.
struct Traced {
  std::vector<std::string> types;
  std::vector<Array> values;
  int count(const std::string& type) const {
    return static_cast<int>(std::count(types.begin(), types.end(), type));
  }
};

inline Traced run_traced(Session& sess, const std::vector<GraphElement>& fetches, const FeedDict& feeds = {}) {
  RunMetadata meta;
  Traced t;
  t.values = sess.run(fetches, feeds, RunOptions{.trace_level = RunOptions::full_trace}, &meta);
  for (const OpTrace& op : meta.step_stats) t.types.push_back(op.type);
  return t;
}

/// a and b hold the same bits (NaN where b has NaN).
template <class T>
void require_same_bits(const xt::xarray<T>& a, const xt::xarray<T>& b) {
  REQUIRE(a.shape() == b.shape());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    if (std::isnan(b.data()[i])) CHECK(std::isnan(a.data()[i]));
    else CHECK(a.data()[i] == b.data()[i]);
  }
}

/// Values with every kind of float: normal in [-10, 10), and for odd seeds -0 and denormals
/// (every 97th and 89th element).
inline xt::xarray<float> mixed(const std::vector<std::size_t>& shape, unsigned seed) {
  xt::xarray<float> a = xt::xarray<float>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto k = static_cast<unsigned>(i) * 2654435761u + seed * 40503u;
    a.data()[i] = static_cast<float>(k % 20011u) / 997.f - 10.f;
  }
  if (seed % 2) {
    for (std::size_t i = 5; i < a.size(); i += 97) a.data()[i] = -0.f;
    for (std::size_t i = 7; i < a.size(); i += 89) a.data()[i] = 3e-39f;
  }
  return a;
}

}  // namespace kiln::testing
