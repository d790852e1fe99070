#pragma once
// Array: a concrete value (a feed or a fetch result). Cheap to copy: copies share one immutable
// buffer; kernels write new arrays. Inside a run a value may also be a view of the run's arena
// (framework/memory_plan.hpp): kernels read and write it through view<T>() / writable<T>(), and
// the executor hands the caller a copy of its own (a fetched value is a snapshot the caller owns).
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <variant>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "framework/errors.hpp"
#include "framework/tensor_view.hpp"
#include "framework/types.hpp"

namespace kiln {

#if defined(__SANITIZE_THREAD__)
#define KILN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KILN_TSAN 1
#endif
#endif
#ifdef KILN_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace detail {
/// Elements in memory the Array does not own: a region of a run's arena.
struct ArrayView {
  std::shared_ptr<std::byte> memory;  // the arena, kept alive while a view of it is
  void* data;
  DType dtype;
  xt::xarray<float>::shape_type dims;
};
using ArrayStorage = std::variant<xt::xarray<float>, xt::xarray<double>, xt::xarray<std::int32_t>,
                                  xt::xarray<std::int64_t>, xt::xarray<bool>, ArrayView>;
}  // namespace detail

class Array {
 public:
  /// An empty Array: what fetching an Operation returns.
  Array() = default;
#ifdef KILN_TSAN
  // Letting go of a buffer is a release for unique()'s acquire (ThreadSanitizer builds only; the
  // atomic count does this in other builds).
  Array(const Array&) = default;
  Array(Array&&) noexcept = default;
  Array& operator=(const Array& o) {
    if (data_ != o.data_) {
      annotate_release();
      data_ = o.data_;
    }
    return *this;
  }
  Array& operator=(Array&& o) noexcept {
    if (this != &o) {
      annotate_release();
      data_ = std::move(o.data_);
    }
    return *this;
  }
  ~Array() { annotate_release(); }
#endif
  template <class T>
  Array(xt::xarray<T> value)  // NOLINT: implicit like a feed value
      : data_(std::make_shared<detail::ArrayStorage>(std::move(value))) {}
  template <class T, std::size_t N>
  Array(const xt::xtensor<T, N>& value)  // NOLINT
      : Array(xt::xarray<T>(value)) {}
  Array(float v) : Array(xt::xarray<float>(v)) {}               // NOLINT
  Array(double v) : Array(xt::xarray<double>(v)) {}             // NOLINT
  Array(std::int32_t v) : Array(xt::xarray<std::int32_t>(v)) {} // NOLINT
  Array(std::int64_t v) : Array(xt::xarray<std::int64_t>(v)) {} // NOLINT
  Array(bool v) : Array(xt::xarray<bool>(v)) {}                 // NOLINT

  bool empty() const { return data_ == nullptr; }
  /// Throws InvalidArgumentError when empty.
  DType dtype() const;
  Shape shape() const;
  /// Whether the dims are compatible with a static shape (same rank, equal where it is known);
  /// unlike shape().is_compatible_with(s), allocates nothing.
  bool fits(const Shape& s) const;
  /// Same dims as `other` (dtypes may differ); allocates nothing.
  bool same_shape(const Array& other) const;
  std::int64_t size() const;
  /// The value as T; throws InvalidArgumentError when empty or of another dtype (and
  /// InternalError for a view of a run's arena, which never leaves the executor: use view<T>()).
  template <class T>
  const xt::xarray<T>& as() const {
    check_dtype(dtype_of<T>());
    if (is_view()) throw_view_as();
    return std::get<xt::xarray<T>>(*data_);
  }
  /// The elements as T, whether the Array owns them or views an arena; throws like as<T>().
  template <class T>
  TensorView<const T> view() const {
    if (data_) {
      if (const auto* a = std::get_if<xt::xarray<T>>(data_.get())) return {a->data(), a->shape()};
      if (const auto* v = std::get_if<detail::ArrayView>(data_.get());
          v && v->dtype == dtype_of<T>())
        return {static_cast<const T*>(v->data), v->dims};
    }
    throw_wrong_dtype(dtype_of<T>());
  }
  /// The single element of a size-1 array.
  template <class T>
  T scalar() const {
    const auto a = view<T>();
    if (a.size() != 1)
      throw InvalidArgumentError("Array::scalar: array of shape " + shape().to_string() +
                                 " is not a single value");
    return *a.data();
  }
  /// Writable access; copies first into a buffer of its own when the buffer is shared or a view.
  template <class T>
  xt::xarray<T>& mutable_as() {
    check_dtype(dtype_of<T>());
    if (is_view()) {
      data_ = std::make_shared<detail::ArrayStorage>(owned_copy<T>());
    } else if (!unique()) {
      data_ = std::make_shared<detail::ArrayStorage>(*data_);
    }
    return std::get<xt::xarray<T>>(*data_);
  }
  /// For kernels: the elements to write, with the given dimensions (their product must be size()),
  /// in place when no other Array shares the buffer (an arena view stays one), else in a copy.
  template <class T, class D>
  TensorView<T> writable(const D& dims) {
    (void)view<T>();  // the dtype check
    if (!unique())
      data_ = std::make_shared<detail::ArrayStorage>(
          is_view() ? detail::ArrayStorage(owned_copy<T>()) : *data_);
    if (auto* v = std::get_if<detail::ArrayView>(data_.get())) {
      if (!std::equal(v->dims.begin(), v->dims.end(), dims.begin(), dims.end()))
        v->dims.assign(dims.begin(), dims.end());
      return {static_cast<T*>(v->data), v->dims};
    }
    auto& a = std::get<xt::xarray<T>>(*data_);
    if (!std::equal(a.shape().begin(), a.shape().end(), dims.begin(), dims.end())) a.resize(dims);
    return {a.data(), a.shape()};
  }
  /// Whether the elements are a view of a run's arena (never true of an Array the caller gets).
  bool is_view() const {
    return data_ && std::holds_alternative<detail::ArrayView>(*data_);
  }
  /// The address of the first element (identifies the buffer); throws like dtype() when empty.
  const void* data() const;
  /// The value converted to double (any dtype), for tests and reports.
  xt::xarray<double> to_double() const;
  /// No other Array shares the buffer (the executor reuses such buffers; writes go in place).
  /// When true, everything other threads did with the buffer before letting it go happens
  /// before what the caller does next (shared_ptr's count is read relaxed: the fence orders it).
  bool unique() const {
    if (data_.use_count() != 1) return false;
    std::atomic_thread_fence(std::memory_order_acquire);
#ifdef KILN_TSAN
    __tsan_acquire(data_.get());  // ThreadSanitizer does not model fences
#endif
    return true;
  }
  /// Same underlying buffer (used by tests of copy semantics).
  bool shares_buffer_with(const Array& o) const { return data_ == o.data_; }

 private:
  friend Array arena_array(std::shared_ptr<std::byte> memory, std::size_t offset, DType dtype,
                           std::size_t elements);
  void check_dtype(DType want) const;
  [[noreturn]] void throw_wrong_dtype(DType want) const;
  [[noreturn]] static void throw_view_as();
  const xt::xarray<float>::shape_type& dims() const;
  template <class T>
  xt::xarray<T> owned_copy() const {
    const auto v = view<T>();
    auto a = xt::xarray<T>::from_shape(v.shape());
    std::copy(v.begin(), v.end(), a.data());
    return a;
  }
#ifdef KILN_TSAN
  void annotate_release() {
    if (data_) __tsan_release(data_.get());
  }
#endif
  std::shared_ptr<detail::ArrayStorage> data_;
};

/// Prints like NumPy's repr, with shape and dtype always shown: "array([[1. , 2.5],\n       [3. ,
/// 4. ]], shape=(2, 2), dtype=float32)". More than 1000 elements: the first and last 3 entries of
/// each axis, "..." between (NumPy's threshold and edgeitems). Lines wrap at 75 characters.
/// Floats: shortest round-trip digits, at most 8 after the point, aligned on it; scientific when
/// magnitudes span more than 1e3 or reach 1e8 or go below 1e-4. An empty Array prints as such.
std::ostream& operator<<(std::ostream& os, const Array& a);

/// Makes `dst` an independent copy of `src` (empty when src is), reusing dst's buffer when it is
/// unshared, of the same dtype and size and not a view (no allocation then).
void copy_into(Array& dst, const Array& src);

/// An Array of `elements` values of `dtype` (dims {elements}) at byte `offset` of `memory`, a view
/// that keeps the memory alive (the executor's arena; offset aligned for dtype).
Array arena_array(std::shared_ptr<std::byte> memory, std::size_t offset, DType dtype,
                  std::size_t elements);

/// Checks at run time that an array of `dtype` and `dims` can exist: InvalidArgumentError, prefixed
/// by `what` (e.g. the op), naming the dims and dtype when the element or byte count exceeds
/// INT64_MAX. make_array calls it; so do kernels whose output dims come from run-time values.
void check_array_size(DType dtype, std::span<const std::size_t> dims, const std::string& what = "");
/// check_array_size's test without the message (allocates nothing): run it first on hot paths.
bool array_size_ok(DType dtype, std::span<const std::size_t> dims);

/// An uninitialized array of the given dtype and fully defined dimensions (check_array_size first).
Array make_array(DType dtype, const std::vector<std::size_t>& shape);

}  // namespace kiln
