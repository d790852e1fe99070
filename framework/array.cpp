#include "framework/array.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "framework/errors.hpp"

namespace kiln {

DType Array::dtype() const {
  if (!data_) throw InvalidArgumentError("Array is empty (the fetch of an Operation has no value)");
  if (const auto* v = std::get_if<detail::ArrayView>(data_.get())) return v->dtype;
  return static_cast<DType>(data_->index());
}

const xt::xarray<float>::shape_type& Array::dims() const {
  return std::visit(
      [](const auto& a) -> const xt::xarray<float>::shape_type& {
        if constexpr (std::is_same_v<std::decay_t<decltype(a)>, detail::ArrayView>)
          return a.dims;
        else
          return a.shape();
      },
      *data_);
}

const void* Array::data() const {
  dtype();  // throws when empty
  return std::visit(
      [](const auto& a) -> const void* {
        if constexpr (std::is_same_v<std::decay_t<decltype(a)>, detail::ArrayView>)
          return a.data;
        else
          return a.data();
      },
      *data_);
}

Shape Array::shape() const {
  const auto& d = dims();
  return Shape(std::vector<std::int64_t>(d.begin(), d.end()));
}

bool Array::fits(const Shape& s) const {
  if (!s.has_rank()) return true;
  const auto& d = dims();
  if (d.size() != static_cast<std::size_t>(s.rank())) return false;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const std::int64_t want = s.dims()[i];
    if (want >= 0 && static_cast<std::size_t>(want) != d[i]) return false;
  }
  return true;
}

bool Array::same_shape(const Array& other) const {
  const auto &a = dims(), &b = other.dims();
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

std::int64_t Array::size() const {
  std::int64_t n = 1;
  for (const auto d : dims()) n *= static_cast<std::int64_t>(d);
  return n;
}

void Array::throw_wrong_dtype(DType want) const {
  check_dtype(want);  // throws: empty, or another dtype
  throw InternalError("Array: no elements of the dtype it holds");
}

void Array::throw_view_as() {
  throw InternalError(
      "Array::as: the value is a view of a run's memory, which never leaves the executor "
      "(kernels read it through view<T>())");
}

void Array::check_dtype(DType want) const {
  if (dtype() != want)
    throw InvalidArgumentError(std::string("Array holds ") + dtype_name(dtype()) + " " +
                               shape().to_string() + ", requested as " + dtype_name(want));
}

xt::xarray<double> Array::to_double() const {
  return visit_dtype(dtype(), [&]<class T>() {
    const auto a = view<T>();
    xt::xarray<double> r = xt::xarray<double>::from_shape(a.shape());
    auto* out = r.data();
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<double>(a[i]);
    return r;
  });
}

void copy_into(Array& dst, const Array& src) {
  if (src.empty()) {
    dst = Array();
    return;
  }
  visit_dtype(src.dtype(), [&]<class T>() {
    const auto from = src.view<T>();
    if (dst.empty() || !dst.unique() || dst.is_view() || dst.dtype() != src.dtype() ||
        dst.size() != static_cast<std::int64_t>(from.size()))
      dst = Array(xt::xarray<T>::from_shape(from.shape()));
    const auto to = dst.writable<T>(from.shape());
    std::copy(from.begin(), from.end(), to.data());
  });
}

Array arena_array(std::shared_ptr<std::byte> memory, std::size_t offset, DType dtype,
                  std::size_t elements) {
  Array a;
  void* data = memory.get() + offset;
  a.data_ = std::make_shared<detail::ArrayStorage>(detail::ArrayView{
      std::move(memory), data, dtype, xt::xarray<float>::shape_type(1, elements)});
  return a;
}

bool array_size_ok(DType dtype, std::span<const std::size_t> dims) {
  // An empty dimension makes everything 0, however large the others.
  if (std::find(dims.begin(), dims.end(), std::size_t{0}) != dims.end()) return true;
  std::int64_t bytes = static_cast<std::int64_t>(dtype_size(dtype));
  for (auto v : dims)
    if (v > static_cast<std::size_t>(INT64_MAX) || __builtin_mul_overflow(bytes, static_cast<std::int64_t>(v), &bytes))
      return false;
  return true;
}

void check_array_size(DType dtype, std::span<const std::size_t> dims, const std::string& what) {
  if (array_size_ok(dtype, dims)) return;
  std::string text = what.empty() ? "" : what + ": ";
  text += "an array of shape [";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) text += ',';
    text += std::to_string(dims[i]);
  }
  text += "] of ";
  text += dtype_name(dtype);
  throw InvalidArgumentError(text + " would hold more than 2^63 - 1 bytes");
}

Array make_array(DType dtype, const std::vector<std::size_t>& shape) {
  check_array_size(dtype, shape);
  return visit_dtype(dtype, [&]<class T>() { return Array(xt::xarray<T>::from_shape(shape)); });
}

}  // namespace kiln
