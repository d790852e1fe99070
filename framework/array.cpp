#include "framework/array.hpp"

#include <algorithm>
#include <cstdint>

#include "framework/errors.hpp"

namespace kiln {

DType Array::dtype() const {
  if (!data_) throw InvalidArgumentError("Array is empty (the fetch of an Operation has no value)");
  return static_cast<DType>(data_->index());
}

Shape Array::shape() const {
  return std::visit(
      [](const auto& a) {
        std::vector<std::int64_t> d(a.shape().begin(), a.shape().end());
        return Shape(d);
      },
      *data_);
}

bool Array::fits(const Shape& s) const {
  if (!s.has_rank()) return true;
  return std::visit(
      [&](const auto& a) {
        if (a.dimension() != static_cast<std::size_t>(s.rank())) return false;
        for (std::size_t i = 0; i < a.dimension(); ++i) {
          const std::int64_t want = s.dims()[i];
          if (want >= 0 && static_cast<std::size_t>(want) != a.shape()[i]) return false;
        }
        return true;
      },
      *data_);
}

bool Array::same_shape(const Array& other) const {
  return std::visit(
      [](const auto& a, const auto& b) {
        return std::equal(a.shape().begin(), a.shape().end(), b.shape().begin(), b.shape().end());
      },
      *data_, *other.data_);
}

std::int64_t Array::size() const {
  return std::visit([](const auto& a) { return static_cast<std::int64_t>(a.size()); }, *data_);
}

void Array::check_dtype(DType want) const {
  if (dtype() != want)
    throw InvalidArgumentError(std::string("Array holds ") + dtype_name(dtype()) + " " +
                               shape().to_string() + ", requested as " + dtype_name(want));
}

xt::xarray<double> Array::to_double() const {
  return std::visit(
      [](const auto& a) {
        xt::xarray<double> r = xt::xarray<double>::from_shape(a.shape());
        auto* out = r.data();
        const auto* in = a.data();
        for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<double>(in[i]);
        return r;
      },
      *data_);
}

void copy_into(Array& dst, const Array& src) {
  if (src.empty()) {
    dst = Array();
    return;
  }
  visit_dtype(src.dtype(), [&]<class T>() {
    const auto& from = src.as<T>();
    if (dst.empty() || !dst.unique() || dst.dtype() != src.dtype() ||
        dst.size() != static_cast<std::int64_t>(from.size())) {
      dst = Array(xt::xarray<T>(from));
      return;
    }
    auto& to = dst.mutable_as<T>();
    if (to.shape() != from.shape()) to.resize(from.shape());
    std::copy(from.data(), from.data() + from.size(), to.data());
  });
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
