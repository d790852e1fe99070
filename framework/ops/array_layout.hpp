#pragma once
// Helpers of the array op families (array_ops.cpp, concat_slice_ops.cpp, sum_to_shape_ops.cpp): dimensions as xtensor
// keeps them, row walks over row-major arrays, run-time axis checks, and the Axis attribute.
#include <algorithm>
#include <functional>
#include <numeric>
#include <string>

#include "framework/kernels/elementwise.hpp"
#include "framework/op_registry.hpp"

namespace kiln::array_layout {

using Dims = kernels::Extents;  // inline up to rank 4

/// "[1,2,3]": a list of numbers for messages.
template <class V>
std::string list_text(const V& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  s += ']';
  return s;
}

/// An array's (an input's) dimensions.
inline Dims dims_of(const Array& a) {
  return visit_dtype(a.dtype(), [&]<class T>() { return Dims(a.view<T>().shape()); });
}
template <class T>
Dims dims_of(const KernelContext& c, int i) {
  return c.input_as<T>(i).shape();
}

// d with v inserted before position `at` (svector::insert trips GCC 12's -Warray-bounds).
inline void insert_dim(Dims& d, std::size_t at, std::size_t v) {
  d.push_back(v);
  std::rotate(d.begin() + static_cast<std::ptrdiff_t>(at), d.end() - 1, d.end());
}

/// The product of dimensions [first, last).
inline std::size_t product(Dims::const_iterator first, Dims::const_iterator last) {
  return std::accumulate(first, last, std::size_t{1}, std::multiplies<>());
}

/// Row-major strides, in elements.
inline Dims strides_of(const Dims& d) {
  Dims s(d.size(), 1);
  for (std::size_t i = d.size(); i-- > 1;) s[i - 1] = s[i] * d[i];
  return s;
}

/// The offset of a multi-index.
inline std::size_t dot(const Dims& idx, const Dims& strides) {
  return std::inner_product(idx.begin(), idx.end(), strides.begin(), std::size_t{0});
}

/// Calls f(idx) for each multi-index idx over dims[0 .. r-2], in row-major order: each call is one
/// contiguous row along the last axis. A scalar is one row; an empty array has none.
template <class F>
void for_each_row(const Dims& dims, F f) {
  if (std::find(dims.begin(), dims.end(), std::size_t{0}) != dims.end()) return;
  Dims idx(dims.empty() ? 0 : dims.size() - 1, 0);
  for (;;) {
    f(static_cast<const Dims&>(idx));
    std::size_t d = idx.size();
    while (d > 0 && ++idx[d - 1] == dims[d - 1]) idx[--d] = 0;
    if (d == 0) return;
  }
}

/// InvalidArgumentError naming the op and its type.
[[noreturn]] inline void bad_input(const KernelContext& c, const std::string& what) {
  throw InvalidArgumentError("'" + c.op_name() + "' (op: '" + c.node().def->type + "'): " + what);
}

/// A possibly negative axis resolved against the run-time rank.
inline std::size_t runtime_axis(const KernelContext& c, int axis, std::size_t rank) {
  const auto r = static_cast<int>(rank);
  if (axis < -r || axis >= r)
    bad_input(c, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

/// The attribute of ExpandDims, ConcatV2 and Pack.
struct AxisAttrs {
  int axis = 0;
};
inline const AttrCodec axis_codec = attr_codec<AxisAttrs>([](auto& io, auto& a) { io(a.axis); });

/// The dims an int32/int64 shape vector holds (no allocation up to rank 4); InvalidArgumentError
/// naming the op for anything else.
inline kernels::Extents shape_from_tensor(const Array& a, const std::string& op) {
  return visit_dtype(a.dtype(), [&]<class I>() {
    kernels::Extents dims;
    if constexpr (std::is_integral_v<I> && !std::is_same_v<I, bool>) {
      const auto v = a.view<I>();
      if (v.dimension() != 1) throw InvalidArgumentError("'" + op + "': the shape argument must be a vector");
      for (const I d : v) {
        if (d < 0) throw InvalidArgumentError("'" + op + "': negative dimension in the target shape");
        dims.push_back(static_cast<std::size_t>(d));
      }
    } else {
      throw InvalidArgumentError("'" + op + "': the shape argument must be int32 or int64");
    }
    return dims;
  });
}

/// The static shape a shape input (input i) describes: known when it is a constant, else unknown
/// dims of its length.
inline Shape static_shape_of(const InferenceContext& c, int i) {
  if (c.dtypes[static_cast<std::size_t>(i)] != int32 &&
      c.dtypes[static_cast<std::size_t>(i)] != int64)
    throw TypeError("the shape argument must be int32 or int64");
  const Shape& s = c.shapes[static_cast<std::size_t>(i)];
  if (s.rank() > 1) throw ValueError("the shape argument must be a vector, got " + s.to_string());
  if (const Array* v = c.constant_values[static_cast<std::size_t>(i)]) {
    const auto d = v->to_double();
    std::vector<std::int64_t> dims;
    for (double x : d) dims.push_back(static_cast<std::int64_t>(x));
    return Shape(dims);
  }
  if (s.rank() == 1 && s[0] >= 0) return Shape::unknown_of_rank(static_cast<int>(s[0]));
  return Shape::unknown();
}

}  // namespace kiln::array_layout
