#pragma once
// What the windowed ops share (the Conv2D family in conv_ops.cpp, the pooling family in
// pooling_ops.cpp): their 4-entry attribute lists and the data format's axes, TF's output-size
// rule, rank-4 shapes and the sizes inputs (input_sizes, filter_sizes, orig_input_shape) at build
// and at run time, and the kernels' run-time checks, which re-run the build-time checks on the
// actual shapes so that a run fails with the shape function's message (InvalidArgumentError
// prefixed by the op's type and name). Internal to the op files.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/kernels/conv2d.hpp"  // kernels::Padding
#include "framework/ops/common.hpp"

namespace kiln::window {

using i64 = std::int64_t;
using Dims = std::vector<i64>;
using Dims4 = std::array<i64, 4>;

/// "[a, b, ...]" for messages.
std::string list_text(const Dims& v);

/// The axes of one data format.
struct Layout {
  bool channels_first;
  std::size_t h, w, c;
};
Layout layout_of(const std::string& data_format);
kernels::Padding padding_of(const std::string& s);

/// The (height, width) entries of a 4-entry strides / ksize / dilations list: 4 entries >= 1, 1 in
/// the batch and channel dimensions (ValueError otherwise).
struct HW {
  i64 h, w;
};
HW spatial_of(const Dims& v, const char* what, const Layout& l);
/// A user's list as 4 entries: 1 entry for every spatial dimension, 2 for (height, width), else as
/// given (TF2's nn.conv2d).
Dims four(const Dims& v, const std::string& data_format);

/// The 4 dimensions of a rank-4 (or unknown-rank: -1 each) shape; ValueError for another rank.
Dims dims4(const Shape& s, const char* what);
inline Dims to_dims(const Dims4& d) { return Dims(d.begin(), d.end()); }
/// Dims in the layout's order from (batch, height, width, channels).
Dims4 make4(const Layout& l, i64 n, i64 h, i64 w, i64 c);
/// One output dimension under TF's rules (-1 when the input or the window is unknown); ValueError
/// when a VALID window does not fit.
i64 out_dim(i64 in, i64 window, i64 stride, i64 dilation, kernels::Padding padding);
/// Known entries of a and b must agree (ValueError naming both); the result keeps the known ones.
Dims merge(const Dims& a, const Dims& b, const char* what_a, const char* what_b);
/// A sizes input at build time: an int32/int64 vector of 4 entries, known when it is a constant,
/// else the attribute's hint.
Dims sizes_at_build(const InferenceContext& c, int i, const Shape& hint, const char* what);
/// A sizes input's value with the build-time checks (ValueError).
Dims sizes_at_run_time(const Array& a, const char* what);
/// ValueError unless got == want.
void expect_dims(const Dims& got, const Dims& want, const char* what);

/// Runs shape checks on the actual shapes; their errors become InvalidArgumentError.
template <class F>
auto checked(const KernelContext& c, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw InvalidArgumentError(detail::where_in(c) + e.what());
  }
}

/// The dims of a rank-4 input (InvalidArgumentError for another rank).
template <class T>
Dims4 input_dims4(const KernelContext& c, int i, const char* what) {
  const auto& s = c.input_as<T>(i).shape();
  if (s.size() != 4) checked(c, [&] { dims4(Shape(Dims(s.begin(), s.end())), what); });
  return {static_cast<i64>(s[0]), static_cast<i64>(s[1]), static_cast<i64>(s[2]), static_cast<i64>(s[3])};
}

template <class Dims4Like>
std::array<std::size_t, 4> extents4(const Dims4Like& d) {
  return {static_cast<std::size_t>(d[0]), static_cast<std::size_t>(d[1]), static_cast<std::size_t>(d[2]),
          static_cast<std::size_t>(d[3])};
}

/// A sizes input at run time: 4 entries >= 0 that describe an array of T that fits
/// (check_array_size: a fed size must not wrap around).
template <class T>
Dims4 sizes_input(const KernelContext& c, int i, const char* what) {
  constexpr DType dtype = dtype_of<T>();
  const Array& a = c.input(i);
  Dims4 d{};
  bool ok = a.size() == 4;
  const auto read = [&](const auto& v) {
    ok = ok && v.dimension() == 1;
    for (std::size_t k = 0; ok && k < 4; ++k) d[k] = static_cast<i64>(v.data()[k]);
  };
  if (a.dtype() == int32)
    read(a.view<std::int32_t>());
  else
    read(a.view<std::int64_t>());
  for (const i64 e : d) ok = ok && e >= 0;
  if (!ok) checked(c, [&] { sizes_at_run_time(a, what); });
  if (const auto e = extents4(d); !array_size_ok(dtype, e)) check_array_size(dtype, e, "'" + c.op_name() + "': " + what);
  return d;
}

/// Attributes with the static shape a backprop op's output should have (its sizes input is not
/// a constant when the forward's input shape is not fully defined).
template <class A>
A hinted(A a, const Shape& hint) {
  a.output_hint = hint;
  return a;
}

}  // namespace kiln::window
