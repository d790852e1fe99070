#pragma once
// kiln's work items (bench/work_items.hpp), one registering function per family.
#include <cstdint>
#include <random>
#include <vector>

#include <kiln.hpp>

#include "bench/harness.hpp"

namespace bench::kiln_items {

void add_batch_norm(Registry& items);      // batch_norm.cpp
void add_models(Registry& items);          // models.cpp: CNN step, its peak RSS, MLP step
void add_overhead(Registry& items);        // overhead.cpp
void add_fashion_mnist(Registry& items);   // fashion_mnist.cpp

/// Standard-normal float32 values of `shape`, the same for a given seed.
inline xt::xarray<float> random_array(const std::vector<std::size_t>& shape, unsigned seed) {
  auto a = xt::xarray<float>::from_shape(shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (float& v : a) v = normal(rng);
  return a;
}

/// Integer class labels in [0, classes).
inline xt::xarray<std::int64_t> random_labels(std::size_t n, int classes, unsigned seed) {
  auto a = xt::xarray<std::int64_t>::from_shape({n});
  std::mt19937 rng(seed);
  for (auto& v : a) v = static_cast<std::int64_t>(rng() % static_cast<unsigned>(classes));
  return a;
}

}  // namespace bench::kiln_items
