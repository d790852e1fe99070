#pragma once
// STREAM-style triad a[i] = b[i] + s * c[i] over arrays far larger than the caches, split over
// `threads` threads (each thread first-touches its own part). One sample per pass:
// GB/s = 3 arrays * 4 bytes * n / time (STREAM's count: write-allocate traffic not included).
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include "bench/harness.hpp"

namespace bench {

inline Samples triad(const Config& c) {
  constexpr std::size_t n = std::size_t{1} << 24;  // 64 MB per array
  const auto threads = static_cast<std::size_t>(c.threads);
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), s(new float[n]);
  auto parallel = [&](auto&& body) {
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { body(n * t / threads, n * (t + 1) / threads); });
    for (auto& th : pool) th.join();
  };
  parallel([&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) a[i] = 0, b[i] = 1, s[i] = 2;
  });
  Samples out;
  for (int pass = 0; pass < std::max(c.iters, 5) + 1; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel([&](std::size_t lo, std::size_t hi) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = s.get();
      for (std::size_t i = lo; i < hi; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    });
    const double secs = seconds_since(t0);
    if (pass > 0) out.push_back(3.0 * sizeof(float) * static_cast<double>(n) / secs / 1e9);  // pass 0 warms up
  }
  return out;
}

}  // namespace bench
