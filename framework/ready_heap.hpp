#pragma once
// The executor's per-run bookkeeping that must not allocate in a steady-state run: the ready
// queue a worker drains (lowest plan index first, its storage from a per-frame pool) and a small
// buffer for an op's input and output pointers. Internal to framework/executor.cpp; a HeapPool is
// thread-safe, a ReadyHeap and a SmallBuffer belong to one thread.
#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace kiln::detail {

// n value-initialized elements: on the stack up to N, on the heap past it. Only the n elements
// are constructed (an op with two inputs clears two pointers, not N: clearing all of them cost
// a quarter of the per-op overhead).
template <class T, std::size_t N>
class SmallBuffer {
 public:
  explicit SmallBuffer(std::size_t n) : n_(n) {
    if (n > N)
      heap_.resize(n);
    else
      std::uninitialized_value_construct_n(local(), n);
  }
  ~SmallBuffer() {
    if (n_ <= N) std::destroy_n(local(), n_);
  }
  SmallBuffer(const SmallBuffer&) = delete;
  SmallBuffer& operator=(const SmallBuffer&) = delete;
  T* data() { return n_ > N ? heap_.data() : local(); }
  T& operator[](std::size_t i) { return data()[i]; }

 private:
  T* local() { return std::launder(reinterpret_cast<T*>(storage_)); }
  std::size_t n_;
  alignas(T) unsigned char storage_[N * sizeof(T)];
  std::vector<T> heap_;
};

// Storage for the ready heaps of one frame's run_from calls: each holds every step, and the
// frame makes one for each thread that may work on its run at once, and two more (a kernel's
// parallel_for may run another op's task on its thread), so no run allocates for them.
class HeapPool {
 public:
  HeapPool(std::size_t steps, std::size_t heaps) : steps_(steps) {
    free_.reserve(heaps + 16);
    for (std::size_t i = 0; i < heaps; ++i) free_.push_back(make());
  }
  std::vector<int> take() {
    std::lock_guard lk(mutex_);
    if (free_.empty()) return make();
    std::vector<int> h = std::move(free_.back());
    free_.pop_back();
    return h;
  }
  void give(std::vector<int> h) {
    std::lock_guard lk(mutex_);
    free_.push_back(std::move(h));
  }

 private:
  std::vector<int> make() const {
    std::vector<int> h;
    h.reserve(steps_);
    return h;
  }
  std::size_t steps_;
  std::mutex mutex_;
  std::vector<std::vector<int>> free_;
};

// The ready ops a run_from call works through, lowest plan index first.
class ReadyHeap {
 public:
  explicit ReadyHeap(HeapPool& pool) : pool_(pool), heap_(pool.take()) { heap_.clear(); }
  ~ReadyHeap() { give_back(); }
  /// Returns the storage to the frame's pool now (the heap is empty and takes no more pushes).
  void give_back() {
    if (given_) return;
    given_ = true;
    pool_.give(std::move(heap_));
  }
  ReadyHeap(const ReadyHeap&) = delete;
  ReadyHeap& operator=(const ReadyHeap&) = delete;
  bool empty() const { return heap_.empty(); }
  void push(int step) {
    heap_.push_back(step);
    std::push_heap(heap_.begin(), heap_.end(), std::greater<int>());
  }
  int pop() {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<int>());
    const int step = heap_.back();
    heap_.pop_back();
    return step;
  }

 private:
  HeapPool& pool_;
  std::vector<int> heap_;
  bool given_ = false;
};

}  // namespace kiln::detail
