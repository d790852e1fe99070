#pragma once
// Scratch buffers for kernels (im2col matrices, per-chunk partial results), reused across calls
// and runs so that a steady-state run allocates nothing.
//
//   kernels::Scratch<float> col(pixels * taps);  // col.data(): at least that many floats
//
// A Scratch takes the smallest free buffer of its pool that is large enough, or makes a new one
// in place of the largest free buffer, too small for it (which the pool lets go: so the pool
// keeps at most as many buffers as were taken at once, each as large as the largest request it
// served, when requests grow with a new batch size), and gives it back when it goes out of scope.
//
// Whose pool: the executor gives each op of a run frame a pool of its own (ScratchScope around
// the kernel), so what an op takes does not depend on which ops run beside it, and from its
// second run on it finds every buffer waiting. Kernels take their scratch on the thread that
// called them, before their parallel loops (per-thread parts with parallel_for_workers), never
// inside a chunk: chunks run on other threads, which take from the process-wide pool, the one
// used outside any scope (kernels called directly).
//
// Why not thread_local buffers: a thread that waits in parallel_for runs other queued pool work,
// possibly another op's kernel, which would reuse the same buffer mid-use.
// Thread-safe; contents on acquisition are unspecified; alignment is that of operator new.
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace kiln::kernels {

class ScratchPool {
 public:
  struct Buffer {
    std::unique_ptr<std::byte[]> data;
    std::size_t bytes = 0;
  };
  /// The smallest free buffer of at least `bytes`; else a new one, and the largest free buffer
  /// (too small) is let go.
  Buffer take(std::size_t bytes) {
    Buffer dropped;  // let go outside the lock
    {
      std::lock_guard lock(mutex_);
      std::size_t pick = free_.size(), largest = free_.size();
      for (std::size_t i = 0; i < free_.size(); ++i) {
        if (free_[i].bytes >= bytes && (pick == free_.size() || free_[i].bytes < free_[pick].bytes)) pick = i;
        if (largest == free_.size() || free_[i].bytes > free_[largest].bytes) largest = i;
      }
      if (pick == free_.size()) pick = largest;
      if (pick < free_.size()) {
        Buffer b = std::move(free_[pick]);
        free_[pick] = std::move(free_.back());
        free_.pop_back();
        if (b.bytes >= bytes) return b;
        dropped = std::move(b);
      }
    }
    dropped = Buffer();  // before the new one: the two are not held at once
    return {std::make_unique_for_overwrite<std::byte[]>(bytes), bytes};
  }
  /// Bytes in free buffers (diagnostics and tests).
  std::size_t free_bytes() {
    std::lock_guard lock(mutex_);
    std::size_t total = 0;
    for (const Buffer& b : free_) total += b.bytes;
    return total;
  }
  void give(Buffer b) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(b));
  }
  /// The pool of the op this thread runs (ScratchScope), else the process-wide one.
  static ScratchPool& current() {
    ScratchPool* p = scope();
    return p ? *p : process_wide();
  }
  static ScratchPool*& scope() {
    thread_local ScratchPool* p = nullptr;
    return p;
  }

 private:
  static ScratchPool& process_wide() {
    static ScratchPool pool;
    return pool;
  }
  std::mutex mutex_;
  std::vector<Buffer> free_;
};

/// Makes `pool` this thread's current pool until the scope ends (nests: restores the last).
class ScratchScope {
 public:
  explicit ScratchScope(ScratchPool* pool) : saved_(ScratchPool::scope()) { ScratchPool::scope() = pool; }
  ~ScratchScope() { ScratchPool::scope() = saved_; }
  ScratchScope(const ScratchScope&) = delete;
  ScratchScope& operator=(const ScratchScope&) = delete;

 private:
  ScratchPool* saved_;
};

template <class T>
class Scratch {
 public:
  explicit Scratch(std::size_t n) : pool_(ScratchPool::current()), buffer_(pool_.take(n * sizeof(T))) {}
  ~Scratch() { pool_.give(std::move(buffer_)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* data() { return reinterpret_cast<T*>(buffer_.data.get()); }

 private:
  ScratchPool& pool_;
  ScratchPool::Buffer buffer_;
};

}  // namespace kiln::kernels
