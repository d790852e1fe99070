#include "framework/thread_pool.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "framework/errors.hpp"

namespace kiln {

namespace {

int default_threads() {
  if (const char* env = std::getenv("KILN_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

thread_local int tls_thread_index = 0;

// A FIFO of tasks in a ring buffer that only grows (a std::deque allocates as it moves).
class TaskQueue {
 public:
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  void push(detail::PoolTask t) {
    if (size_ == ring_.size()) grow();
    ring_[(head_ + size_) % ring_.size()] = t;
    ++size_;
  }
  detail::PoolTask pop() {
    const detail::PoolTask t = ring_[head_];
    head_ = (head_ + 1) % ring_.size();
    --size_;
    return t;
  }
  /// Removes the tasks whose argument is `arg`, keeping the others' order; returns how many.
  int remove(void* arg) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < size_; ++i) {
      const detail::PoolTask t = ring_[(head_ + i) % ring_.size()];
      if (t.arg != arg) ring_[(head_ + kept++) % ring_.size()] = t;
    }
    const auto removed = static_cast<int>(size_ - kept);
    size_ = kept;
    return removed;
  }

 private:
  void grow() {
    std::vector<detail::PoolTask> bigger(std::max<std::size_t>(64, 2 * ring_.size()));
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) % ring_.size()];
    ring_.swap(bigger);
    head_ = 0;
  }
  std::vector<detail::PoolTask> ring_;
  std::size_t head_ = 0, size_ = 0;
};

// Workers wait on work_cv_; threads that help while waiting for their own work wait on help_cv_.
// Workers beyond the current size park on park_cv_ and take no tasks.
class Pool {
 public:
  static Pool& instance() {
    static Pool pool;
    return pool;
  }
  ~Pool() {
    {
      std::lock_guard lk(m_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    park_cv_.notify_all();
    help_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  int size() const { return size_.load(std::memory_order_relaxed); }
  void resize(int n) {
    std::lock_guard lk(m_);
    size_.store(n, std::memory_order_relaxed);
    park_cv_.notify_all();
    work_cv_.notify_all();
  }
  void post(detail::PoolTask t) {
    std::lock_guard lk(m_);
    start_workers_locked();
    queue_.push(t);
    queued_.store(queue_.size(), std::memory_order_release);
    if (workers_sleeping_ > 0) work_cv_.notify_one();  // a spinning worker sees queued_ without it
    if (helpers_waiting_ > 0) help_cv_.notify_all();
  }
  /// Removes the queued tasks whose argument is `arg`; returns how many.
  int cancel(void* arg) {
    std::lock_guard lk(m_);
    const int removed = queue_.remove(arg);
    queued_.store(queue_.size(), std::memory_order_release);
    return removed;
  }
  void help_until(FunctionRef<bool()> done) {
    std::unique_lock lk(m_);
    while (!done()) {
      if (!queue_.empty()) {
        const detail::PoolTask t = pop_locked();
        lk.unlock();
        t.run(t.arg, t.index);
        lk.lock();
        continue;
      }
      ++helpers_waiting_;
      help_cv_.wait(lk);
      --helpers_waiting_;
    }
  }
  void wake_all() {
    std::lock_guard lk(m_);
    help_cv_.notify_all();
  }

 private:
  Pool() : size_(default_threads()) {}

  void start_workers_locked() {
    const int want = size_.load(std::memory_order_relaxed) - 1;
    while (static_cast<int>(threads_.size()) < want) {
      const int index = static_cast<int>(threads_.size()) + 1;
      threads_.emplace_back([this, index] { worker(index); });
    }
  }

  void worker(int index) {
    tls_thread_index = index;
    std::unique_lock lk(m_);
    for (;;) {
      if (stopping_) return;
      if (index >= size_.load(std::memory_order_relaxed)) {
        park_cv_.wait(lk);
        continue;
      }
      if (queue_.empty()) {
        // A task posted, or the pool stopped or shrunk, after the spin's last look (while the
        // lock was free) found no sleeper to notify: look again, under the lock, before sleeping.
        if (spin_for_work(lk) || !queue_.empty() || stopping_ ||
            index >= size_.load(std::memory_order_relaxed))
          continue;
        ++workers_sleeping_;
        work_cv_.wait(lk);
        --workers_sleeping_;
        continue;
      }
      const detail::PoolTask t = pop_locked();
      lk.unlock();
      t.run(t.arg, t.index);
      lk.lock();
    }
  }

  detail::PoolTask pop_locked() {
    const detail::PoolTask t = queue_.pop();
    queued_.store(queue_.size(), std::memory_order_release);
    return t;
  }

  // An idle worker spins a little before it sleeps (releasing the lock meanwhile): a task posted
  // soon after, as the executor and parallel_for do many times per step, then starts without a
  // futex wake-up (tens of microseconds). True when work arrived; the lock is held again.
  bool spin_for_work(std::unique_lock<std::mutex>& lk) {
    constexpr auto kSpin = std::chrono::microseconds(50);
    lk.unlock();
    const auto until = std::chrono::steady_clock::now() + kSpin;
    bool work = false;
    for (int i = 0; !work; ++i) {
      work = queued_.load(std::memory_order_acquire) > 0;
      if (!work && (i & 63) == 63 && std::chrono::steady_clock::now() >= until) break;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    lk.lock();
    return work;
  }

  std::mutex m_;
  std::condition_variable work_cv_, help_cv_, park_cv_;
  std::atomic<std::size_t> queued_{0};  // queue_.size(), readable without the lock
  int workers_sleeping_ = 0;
  TaskQueue queue_;
  std::vector<std::thread> threads_;
  std::atomic<int> size_;
  int helpers_waiting_ = 0;
  bool stopping_ = false;
};

constexpr std::int64_t kMaxChunks = 64;

// One parallel_for call. Lives on the caller's stack: the caller cancels the helper tasks that
// have not started and waits (under done_m) for those that have, so no task outlives it. Its
// chunks are dealt in contiguous ranges, one per participant (the caller is 0, helper task h is
// h + 1): each runs its own range from the front, then takes what is left of the others'. So consecutive loops over the same data give each thread the same part
// (it stays in that core's cache), and a helper that starts late or never loses nothing.
struct ForJob {
  struct alignas(64) Range {
    std::atomic<std::int64_t> next{0};
    std::int64_t end = 0;
  };
  FunctionRef<void(std::int64_t, std::int64_t, int)>* fn;
  std::int64_t n, grain, chunks;
  int parts = 1;
  std::array<Range, kMaxChunks> ranges;  // parts <= chunks <= kMaxChunks
  std::atomic<bool> failed{false};
  std::mutex done_m;
  std::condition_variable done_cv;
  int active = 0;  // helper tasks posted and not finished (guarded by done_m)
  std::exception_ptr error;

  void deal(int participants) {
    parts = participants;
    for (int p = 0; p < parts; ++p) {
      ranges[static_cast<std::size_t>(p)].next.store(chunks * p / parts, std::memory_order_relaxed);
      ranges[static_cast<std::size_t>(p)].end = chunks * (p + 1) / parts;
    }
  }
  // Participant `self` (0: the caller, 1..: helper tasks; the index fn receives) works through
  // the ranges from the one of its thread: range (pool thread index mod parts). Tying a range to
  // a thread rather than to a role keeps each part of a tensor on one core from one loop to the
  // next whichever thread runs the op (the executor runs ops on any thread): a loop over the
  // output of another loop reads what its own core wrote. With ranges dealt by role, an op run on
  // the worker had the worker take the first half and the next op, run by the caller, gave that
  // half to the caller: every such pair moved half the tensor between cores.
  void run_chunks(int self) {
    const int home = tls_thread_index % parts;
    for (int k = 0; k < parts; ++k) {
      Range& r = ranges[static_cast<std::size_t>((home + k) % parts)];
      for (;;) {
        const std::int64_t i = r.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= r.end) break;
        if (failed.load(std::memory_order_relaxed)) continue;
        try {
          (*fn)(parallel_chunk_begin(n, grain, i), parallel_chunk_begin(n, grain, i + 1), self);
        } catch (...) {
          std::lock_guard lk(done_m);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
    }
  }
  static void helper(void* arg, std::int64_t index) {
    auto* job = static_cast<ForJob*>(arg);
    job->run_chunks(static_cast<int>(index) + 1);
    std::lock_guard lk(job->done_m);
    if (--job->active == 0) job->done_cv.notify_all();
  }
};

}  // namespace

int num_threads() { return Pool::instance().size(); }

void set_num_threads(int n) {
  if (n < 1) throw ValueError("set_num_threads: the number of threads must be >= 1, got " + std::to_string(n));
  Pool::instance().resize(n);
}

std::int64_t parallel_chunk_count(std::int64_t n, std::int64_t grain) {
  if (n <= 0) return 0;
  grain = std::max<std::int64_t>(1, grain);
  return std::clamp<std::int64_t>(n / grain, 1, kMaxChunks);
}

std::int64_t parallel_chunk_begin(std::int64_t n, std::int64_t grain, std::int64_t chunk) {
  const std::int64_t chunks = parallel_chunk_count(n, grain);
  // Even split; the first n % chunks chunks get one item more.
  const std::int64_t base = n / chunks, extra = n % chunks;
  return chunk * base + std::min(chunk, extra);
}

void parallel_for(std::int64_t n, std::int64_t grain, FunctionRef<void(std::int64_t, std::int64_t)> fn) {
  parallel_for_workers(n, grain, Pool::instance().size(),
                       [&](std::int64_t begin, std::int64_t end, int) { fn(begin, end); });
}

void parallel_for_workers(std::int64_t n, std::int64_t grain, int workers,
                          FunctionRef<void(std::int64_t, std::int64_t, int)> fn) {
  const std::int64_t chunks = parallel_chunk_count(n, grain);
  if (chunks == 0) return;
  Pool& pool = Pool::instance();
  const int helpers = static_cast<int>(std::min<std::int64_t>({chunks, pool.size(), std::max(workers, 1)}) - 1);
  if (helpers <= 0) {
    for (std::int64_t i = 0; i < chunks; ++i)
      fn(parallel_chunk_begin(n, grain, i), parallel_chunk_begin(n, grain, i + 1), 0);
    return;
  }
  ForJob job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.chunks = chunks;
  job.active = helpers;
  job.deal(helpers + 1);
  for (int h = 0; h < helpers; ++h) pool.post({&ForJob::helper, &job, h});
  job.run_chunks(0);
  const int cancelled = pool.cancel(&job);
  {
    std::unique_lock lk(job.done_m);
    job.active -= cancelled;
    job.done_cv.wait(lk, [&] { return job.active == 0; });
  }
  if (job.error) std::rethrow_exception(job.error);
}

namespace detail {
void pool_post(PoolTask task) { Pool::instance().post(task); }
void pool_help_until(FunctionRef<bool()> done) { Pool::instance().help_until(done); }
void pool_wake_all() { Pool::instance().wake_all(); }
int pool_thread_index() { return tls_thread_index; }
}  // namespace detail

}  // namespace kiln
