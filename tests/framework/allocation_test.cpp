// A steady-state run of the main job's training step allocates nothing on the heap beyond the
// vector of its results (issue 10; fetched values the caller let go serve the next runs). Every
// allocation of the process is counted while a run executes: the global operator new (the
// executor, shapes, std::vector) and malloc / posix_memalign (the buffers of xtensor's arrays,
// which xsimd's aligned allocator takes from posix_memalign). Not counted: what the BLAS library
// allocates inside its own calls (oneDNN's sgemm allocates its packing buffers in each call;
// kernels::in_backend_call() tells those apart).
//
// Its own test program (suite "alloc", release build only): replacing malloc does not mix with
// the sanitizers' allocators, so sanitizer builds compile the checks out.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include <kiln.hpp>

#include "examples/fashion_mnist_lib.hpp"
#include "framework/kernels/gemm.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KILN_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define KILN_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef KILN_COUNT_ALLOCATIONS
#define KILN_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};

void note_allocation() {
  if (counting.load(std::memory_order_relaxed) && !kiln::kernels::in_backend_call())
    allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if KILN_COUNT_ALLOCATIONS
// glibc's implementations, under their exported internal names.
extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_memalign(std::size_t, std::size_t);

extern "C" void* malloc(std::size_t n) {
  note_allocation();
  return __libc_malloc(n);
}
extern "C" int posix_memalign(void** p, std::size_t alignment, std::size_t n) {
  note_allocation();
  *p = __libc_memalign(alignment, n);
  return *p ? 0 : ENOMEM;
}
// operator new reaches malloc through libstdc++, which calls the malloc above: counted once.
#endif

using namespace kiln;

namespace {

// The allocations of each of `runs` runs of `fetches`, after `warmup` runs.
std::vector<long> allocations_per_run(Session& sess, const std::vector<GraphElement>& fetches, const FeedDict& feeds,
                                      int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) sess.run(fetches, feeds);
  std::vector<long> counts;
  counts.reserve(static_cast<std::size_t>(runs));
  for (int i = 0; i < runs; ++i) {
    allocations = 0;
    counting = true;
    {
      const auto results = sess.run(fetches, feeds);
      counting = false;
    }
    counts.push_back(allocations.load());
  }
  return counts;
}

// The main job's network (examples/fashion_mnist_lib: conv-BN-relu-pool x2, dense-BN-relu, dense,
// Adam with the UPDATE_OPS dependency) with one fixed batch of 64.
struct MainJobStep {
  Graph graph;
  examples::Model model;
  Operation init;
  FeedDict feeds;
  explicit MainJobStep(const std::string& data_format) {
    auto guard = graph.as_default();
    examples::FashionMnistConfig config;
    config.data_format = data_format;
    model = examples::build_model(config, 100);
    init = global_variables_initializer();
    const bool first = data_format == "channels_first";
    auto x = xt::xarray<float>::from_shape(first ? std::vector<std::size_t>{64, 1, 28, 28}
                                                 : std::vector<std::size_t>{64, 28, 28, 1});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 251) / 251.0f;
    auto labels = xt::xarray<std::int64_t>::from_shape({64});
    for (std::size_t i = 0; i < labels.size(); ++i) labels(i) = static_cast<std::int64_t>(i % 10);
    feeds = {{model.x, Array(x)}, {model.labels, Array(labels)}, {model.training, Array(true)}};
  }
};

// The vector of results a run returns.
constexpr long kResultsVector = 1;

}  // namespace

TEST_CASE("allocation.steady_state_training_step_allocates_only_its_results") {
#if !KILN_COUNT_ALLOCATIONS
  MESSAGE("skipped: allocation counting is compiled out under sanitizers");
  return;
#else
  const int saved_threads = num_threads();
  for (const char* format : {"channels_last", "channels_first"}) {
    MainJobStep step(format);
    Session sess(step.graph);
    sess.run(step.init);
    // Every run after the first finds the buffer its memory plan gave each output waiting.
    set_num_threads(1);
    INFO(std::string(format));
    for (const long n : allocations_per_run(sess, {step.model.train_op}, step.feeds, 3, 5))
      CHECK(n <= kResultsVector);  // the train op alone: only the (empty) result's vector
    const RunMemory m = sess.last_run_memory();
    INFO("planned ", m.planned_bytes, " of ", m.unshared_bytes, " bytes; outputs placed ", m.planned_outputs);
    CHECK(m.unplanned_outputs == 0);
    CHECK(m.planned_bytes < m.unshared_bytes);
    // A fetched value the caller let go serves the next run (the executor's free list).
    for (const long n : allocations_per_run(sess, {step.model.train_op, step.model.loss}, step.feeds, 3, 5))
      CHECK(n <= kResultsVector);
    // Two threads: the order of independent ops varies between runs, and so does which thread
    // runs which chunks. The memory plan holds for any order, and each op takes its scratch from
    // a pool of its own on the thread that runs it (kernels/scratch.hpp): still nothing to allocate.
    set_num_threads(2);
    for (const long n : allocations_per_run(sess, {step.model.train_op}, step.feeds, 3, 20)) CHECK(n <= kResultsVector);
    CHECK(sess.last_run_memory().unplanned_outputs == 0);

    // The counting itself works: a run of a new plan compiles it and allocates.
    allocations = 0;
    counting = true;
    sess.run(step.model.accuracy, step.feeds);
    counting = false;
    CHECK(allocations.load() > 10);
  }
  set_num_threads(saved_threads);
#endif
}
