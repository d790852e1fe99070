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

void check_array_size(DType dtype, const std::vector<std::size_t>& dims, const std::string& what) {
  std::vector<std::int64_t> d;
  bool fits = true;
  for (auto v : dims) {
    fits = fits && v <= static_cast<std::size_t>(INT64_MAX);
    d.push_back(static_cast<std::int64_t>(std::min<std::size_t>(v, INT64_MAX)));
  }
  if (fits && checked_num_elements(d, dtype_size(dtype))) return;
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
