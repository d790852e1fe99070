#pragma once
// Array: a concrete value (a feed or a fetch result). Cheap to copy: copies share one immutable
// buffer; kernels write new arrays.
#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <variant>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "framework/errors.hpp"
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
using ArrayStorage = std::variant<xt::xarray<float>, xt::xarray<double>, xt::xarray<std::int32_t>,
                                  xt::xarray<std::int64_t>, xt::xarray<bool>>;
}

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
  /// The value as T; throws InvalidArgumentError when empty or of another dtype.
  template <class T>
  const xt::xarray<T>& as() const {
    check_dtype(dtype_of<T>());
    return std::get<xt::xarray<T>>(*data_);
  }
  /// The single element of a size-1 array.
  template <class T>
  T scalar() const {
    const auto& a = as<T>();
    if (a.size() != 1)
      throw InvalidArgumentError("Array::scalar: array of shape " + shape().to_string() +
                                 " is not a single value");
    return *a.data();
  }
  /// Writable access for kernels; copies first when the buffer is shared.
  template <class T>
  xt::xarray<T>& mutable_as() {
    check_dtype(dtype_of<T>());
    if (!unique()) data_ = std::make_shared<detail::ArrayStorage>(*data_);
    return std::get<xt::xarray<T>>(*data_);
  }
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
  void check_dtype(DType want) const;
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
/// unshared and of the same dtype and size (no allocation then).
void copy_into(Array& dst, const Array& src);

/// Checks at run time that an array of `dtype` and `dims` can exist: InvalidArgumentError, prefixed
/// by `what` (e.g. the op), naming the dims and dtype when the element or byte count exceeds
/// INT64_MAX. make_array calls it; so do kernels whose output dims come from run-time values.
void check_array_size(DType dtype, std::span<const std::size_t> dims, const std::string& what = "");
/// check_array_size's test without the message (allocates nothing): run it first on hot paths.
bool array_size_ok(DType dtype, std::span<const std::size_t> dims);

/// An uninitialized array of the given dtype and fully defined dimensions (check_array_size first).
Array make_array(DType dtype, const std::vector<std::size_t>& shape);

}  // namespace kiln
