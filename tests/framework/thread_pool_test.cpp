// The library's thread pool: parallel_for covers every item once, splits independently of the
// thread count, nests without deadlock and carries exceptions back to the caller; a process exits
// whatever its workers are doing.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "framework/thread_pool.hpp"

using namespace kiln;

namespace {
// Restores the pool size a test changed.
struct ThreadsGuard {
  int saved = num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};
}  // namespace

TEST_CASE("thread_pool.parallel_for_covers_each_item_once") {
  ThreadsGuard guard;
  for (int threads : {1, 2, 4}) {
    set_num_threads(threads);
    for (std::int64_t n : {0, 1, 7, 64, 1000, 100003}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      parallel_for(n, 16, [&](std::int64_t b, std::int64_t e) {
        for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)].fetch_add(1);
      });
      bool once = true;
      for (auto& h : hits) once &= h.load() == 1;
      CHECK_MESSAGE(once, "n = " << n << ", threads = " << threads);
    }
  }
}

TEST_CASE("thread_pool.chunks_do_not_depend_on_the_thread_count") {
  ThreadsGuard guard;
  const auto bounds = [](int threads) {
    set_num_threads(threads);
    std::vector<std::pair<std::int64_t, std::int64_t>> seen(64, {-1, -1});
    parallel_for(10007, 100, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t c = 0; c < parallel_chunk_count(10007, 100); ++c)
        if (parallel_chunk_begin(10007, 100, c) == b) seen[static_cast<std::size_t>(c)] = {b, e};
    });
    return seen;
  };
  CHECK(bounds(1) == bounds(3));
  CHECK(parallel_chunk_count(10007, 100) == 64);
  CHECK(parallel_chunk_begin(10007, 100, 64) == 10007);
}

TEST_CASE("thread_pool.nested_parallel_for_and_exceptions") {
  ThreadsGuard guard;
  set_num_threads(2);
  std::atomic<std::int64_t> total{0};
  parallel_for(8, 1, [&](std::int64_t b, std::int64_t e) {
    for (auto i = b; i < e; ++i)
      parallel_for(100, 10, [&](std::int64_t ib, std::int64_t ie) { total.fetch_add(ie - ib); });
  });
  CHECK(total.load() == 800);
  CHECK_THROWS_AS(parallel_for(100, 1,
                               [](std::int64_t b, std::int64_t) {
                                 if (b >= 50) throw InvalidArgumentError("chunk failed");
                               }),
                  InvalidArgumentError);
  CHECK_THROWS_AS(set_num_threads(0), ValueError);
}

TEST_CASE("thread_pool.a_process_exits_while_its_worker_spins_for_work") {
  // The pool is destroyed at exit; a worker that was spinning for work with the lock released
  // when it was told to stop must see that before it sleeps: it slept, and the exit waited for it
  // forever (19 of 30 processes, found in review). Twenty processes, each given 60 s (timeout
  // exits 124).
  const std::string command =
      "for i in $(seq 20); do timeout 60 '" KILN_POOL_EXIT_PROGRAM "' || exit 1; done";
  CHECK(std::system(command.c_str()) == 0);
}
