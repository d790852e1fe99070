#pragma once
// TensorView: what a kernel reads and writes. A pointer to contiguous row-major elements and the
// dimensions, owning neither: the executor keeps the value alive while the kernel runs, whether it
// is an Array's own buffer or a region of the run's arena (framework/memory_plan.hpp).
#include <cstddef>
#include <type_traits>

#include <xtensor/xarray.hpp>

namespace kiln {

/// T is const for an input. Copying a view copies the pointers, never the elements. Valid while
/// the value it views is (for a kernel: until compute() returns).
template <class T>
class TensorView {
 public:
  using value_type = std::remove_const_t<T>;
  /// xtensor's shape type, so the dims of views and arrays compare and convert freely.
  using shape_type = typename xt::xarray<value_type>::shape_type;
  TensorView(T* data, const shape_type& dims) : data_(data), dims_(&dims) {
    for (const auto d : dims) size_ *= d;
  }
  /// A view of an input converts to one that cannot write.
  operator TensorView<const T>() const  // NOLINT: as T* to const T*
      requires(!std::is_const_v<T>) {
    return {data_, *dims_};
  }

  T* data() const { return data_; }
  const shape_type& shape() const { return *dims_; }
  /// Dimension `axis` (< dimension()).
  std::size_t shape(std::size_t axis) const { return (*dims_)[axis]; }
  std::size_t dimension() const { return dims_->size(); }
  std::size_t size() const { return size_; }
  T* begin() const { return data_; }
  T* end() const { return data_ + size_; }
  /// Element i in row-major order.
  T& operator[](std::size_t i) const { return data_[i]; }
  /// The first element (the value of a scalar).
  T& operator()() const { return *data_; }

 private:
  T* data_;
  const shape_type* dims_;
  std::size_t size_ = 1;
};

}  // namespace kiln
