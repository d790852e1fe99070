// Run by thread_pool_test (a process of its own): parallel loops on a pool of two, then exit at
// once, so the pool is destroyed while its worker may still be spinning for work. Exits 0.
#include <atomic>
#include <cstdint>

#include "framework/thread_pool.hpp"

int main() {
  kiln::set_num_threads(2);
  std::atomic<long> items{0};
  for (int i = 0; i < 2000; ++i)
    kiln::parallel_for(2, 1, [&](std::int64_t begin, std::int64_t end) { items += end - begin; });
  return items.load() == 4000 ? 0 : 1;
}
