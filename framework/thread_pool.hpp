#pragma once
// The library's one thread pool: the executor runs ready ops on it, kernels split their loops on it.
//
//   kiln::parallel_for(rows, 64, [&](std::int64_t begin, std::int64_t end) {
//     for (auto r = begin; r < end; ++r) normalize_row(r);
//   });
//
// Size: `set_num_threads(n)` (TF's intra_op_parallelism_threads), else the environment variable
// KILN_NUM_THREADS, else the machine's hardware threads. n counts the calling thread: n = 1 runs
// everything on the caller, n = 2 adds one worker.
//
// Determinism: parallel_for splits [0, n) into chunks that depend only on n and the grain, never on
// the thread count, so a kernel that reduces per chunk and combines the chunks in index order gives
// bit-identical results for any number of threads.
//
// Affinity: the chunks are dealt in contiguous ranges, one per thread taking part, each starting
// on the range of its pool thread (range = thread index mod ranges); a thread whose range is done
// takes chunks from the others. So two loops over the same n and grain give each thread the same
// elements whichever thread called them, and what one loop wrote stays on its core for the next.
//
// Thread safety: every function here may be called from any thread, including from inside a task
// running on the pool (nested parallel_for never deadlocks: the caller works through the chunks
// itself and only waits for chunks other threads have already started).
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace kiln {

/// A non-owning reference to a callable: what parallel_for takes instead of std::function, which
/// may allocate for a lambda capturing more than two references. Valid while the callable lives
/// (for the duration of the call that receives it).
template <class Signature>
class FunctionRef;
template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> && std::is_invocable_r_v<R, F&, Args...>)
  FunctionRef(F&& f)  // NOLINT: converts like std::function
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

/// The number of threads parallel work uses (the caller included); at least 1.
int num_threads();
/// Sets the pool size used from now on; n >= 1 (ValueError otherwise). Waits for no running work:
/// work already submitted finishes on the threads it started on.
void set_num_threads(int n);

/// fn(begin, end) over a partition of [0, n) into chunks of at least `grain` items (at most 64
/// chunks), on up to num_threads() threads. Returns when every chunk has run. The first exception a
/// chunk throws is rethrown here after the other chunks finished or were skipped.
void parallel_for(std::int64_t n, std::int64_t grain, FunctionRef<void(std::int64_t, std::int64_t)> fn);

/// parallel_for on at most `workers` threads whose body also learns which one runs it:
/// fn(begin, end, worker), 0 <= worker < workers (the calling thread is worker 0). A worker runs
/// its chunks one after the other, so per-worker memory taken before the loop (workers * size,
/// e.g. one im2col buffer each) serves every chunk: nothing is taken inside the loop, and what
/// is taken does not depend on how the chunks were shared out.
void parallel_for_workers(std::int64_t n, std::int64_t grain, int workers,
                          FunctionRef<void(std::int64_t, std::int64_t, int)> fn);

/// The chunks parallel_for(n, grain, ...) uses: count, and the bounds of chunk i.
std::int64_t parallel_chunk_count(std::int64_t n, std::int64_t grain);
std::int64_t parallel_chunk_begin(std::int64_t n, std::int64_t grain, std::int64_t chunk);

namespace detail {
/// A unit of work on the pool: a plain function pointer and its argument (no allocation).
struct PoolTask {
  void (*run)(void* arg, std::int64_t index) = nullptr;
  void* arg = nullptr;
  std::int64_t index = 0;
};

/// Posts a task to run on a worker (or on a thread that helps while it waits). Allocates only when
/// the queue grows past its largest size so far.
void pool_post(PoolTask task);
/// Runs queued tasks on the calling thread until done() is true; sleeps while the queue is empty.
/// Whoever makes done() true must call pool_wake_all() afterwards.
void pool_help_until(FunctionRef<bool()> done);
void pool_wake_all();
/// A small dense index of the calling thread (0 for threads outside the pool), for traces.
int pool_thread_index();
}  // namespace detail

}  // namespace kiln
