#pragma once
// Scratch buffers for kernels (im2col matrices, per-chunk partial results), reused across calls
// and runs so that a steady-state run allocates nothing: a process-wide free list per element
// type; a Scratch takes the best-fitting buffer from it (growing it when too small) and gives it
// back when it goes out of scope.
//
//   kernels::Scratch<float> col(pixels * taps);  // col.data(): at least that many floats
//
// Why not thread_local: a thread that waits in parallel_for runs other queued pool work,
// possibly another op's kernel, which would reuse the same thread_local buffer mid-use.
// Thread-safe; contents on acquisition are unspecified.
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

namespace kiln::kernels {

template <class T>
class Scratch {
 public:
  explicit Scratch(std::size_t n) {
    {
      std::lock_guard lock(mutex());
      // The smallest free buffer that is large enough, else the largest (grown below), so that
      // small requests do not take (and keep) large buffers.
      auto& list = free_list();
      std::size_t pick = list.size();
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::size_t have = list[i].size();
        if (pick == list.size()) {
          pick = i;
          continue;
        }
        const std::size_t best = list[pick].size();
        if (have >= n ? (best < n || have < best) : (best < n && have > best)) pick = i;
      }
      if (pick < list.size()) {
        buffer_ = std::move(list[pick]);
        list[pick] = std::move(list.back());
        list.pop_back();
      }
    }
    if (buffer_.size() < n) buffer_.resize(n);
  }
  ~Scratch() {
    std::lock_guard lock(mutex());
    free_list().push_back(std::move(buffer_));
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* data() { return buffer_.data(); }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::vector<T>>& free_list() {
    static std::vector<std::vector<T>> list;
    return list;
  }
  std::vector<T> buffer_;
};

}  // namespace kiln::kernels
