#include "framework/ops/window_ops.hpp"

#include <string>

#include "framework/ops/formats.hpp"

namespace kiln::window {

std::string list_text(const Dims& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

Layout layout_of(const std::string& data_format) {
  return detail::parse_data_format(data_format) == detail::DataFormat::nchw ? Layout{true, 2, 3, 1}
                                                                           : Layout{false, 1, 2, 3};
}

kernels::Padding padding_of(const std::string& s) { return detail::parse_padding(s); }

HW spatial_of(const Dims& v, const char* what, const Layout& l) {
  if (v.size() != 4)
    throw ValueError(std::string(what) + " must have 4 entries, got " + list_text(v));
  for (const i64 e : v)
    if (e < 1) throw ValueError(std::string(what) + " entries must be >= 1, got " + list_text(v));
  if (v[0] != 1 || v[l.c] != 1)
    throw ValueError(std::string(what) + " in the batch and channel dimensions must be 1, got " +
                     list_text(v));
  return {v[l.h], v[l.w]};
}

// 1 entry: every spatial dimension; 2: (height, width); else as given (TF2's nn.conv2d).
Dims four(const Dims& v, const std::string& data_format) {
  const bool cf = data_format == "NCHW";
  if (v.size() == 1) return cf ? Dims{1, 1, v[0], v[0]} : Dims{1, v[0], v[0], 1};
  if (v.size() == 2) return cf ? Dims{1, 1, v[0], v[1]} : Dims{1, v[0], v[1], 1};
  return v;
}

// The 4 dimensions of a rank-4 (or unknown-rank) shape; ValueError for another rank.
Dims dims4(const Shape& s, const char* what) {
  if (!s.has_rank()) return Dims(4, -1);
  if (s.rank() != 4)
    throw ValueError(std::string(what) + " must be 4-dimensional, got shape " + s.to_string());
  return s.dims();
}

// Dims in the layout's order from (batch, height, width, channels).
Dims4 make4(const Layout& l, i64 n, i64 h, i64 w, i64 c) {
  Dims4 d{};
  d[0] = n;
  d[l.h] = h;
  d[l.w] = w;
  d[l.c] = c;
  return d;
}

// One output dimension under TF's rules (-1 when the input or the window is unknown).
i64 out_dim(i64 in, i64 window, i64 stride, i64 dilation, kernels::Padding padding) {
  if (in < 0 || window < 0) return -1;
  if (window == 0) throw ValueError("window sizes must be >= 1, got 0");
  const i64 effective = (window - 1) * dilation + 1;
  if (padding == kernels::Padding::valid && effective > in)
    throw ValueError("Negative dimension size caused by subtracting " + std::to_string(effective) +
                     " from " + std::to_string(in));
  return kernels::window_dim(in, window, stride, dilation, padding).out;
}

// Known entries of a and b must agree; the result keeps the known ones.
Dims merge(const Dims& a, const Dims& b, const char* what_a, const char* what_b) {
  const Shape sa(a), sb(b);
  if (!sa.is_compatible_with(sb))
    throw ValueError(std::string(what_a) + " of shape " + sa.to_string() + " does not match " +
                     what_b + " " + sb.to_string());
  return sa.merge_with(sb).dims();
}

// A sizes input (input_sizes, filter_sizes, orig_input_shape): an int32/int64 vector of 4
// entries. At build time its value is known when it is a constant; else the attribute's hint.
Dims sizes_at_build(const InferenceContext& c, int i, const Shape& hint, const char* what) {
  const auto k = static_cast<std::size_t>(i);
  if (!is_integer(c.dtypes[k]))
    throw TypeError(std::string(what) + " must be int32 or int64, got " + dtype_name(c.dtypes[k]));
  const Shape& s = c.shapes[k];
  if (s.has_rank() && (s.rank() != 1 || (s[0] >= 0 && s[0] != 4)))
    throw ValueError(std::string(what) + " must be a vector of 4 sizes, got shape " +
                     s.to_string());
  Dims d = dims4(hint, what);
  if (const Array* v = c.constant_values[k]) {
    const auto vd = v->to_double();
    Dims got(vd.begin(), vd.end());
    for (const i64 e : got)
      if (e < 0) throw ValueError(std::string(what) + " must be >= 0, got " + list_text(got));
    d = merge(got, d, what, "the expected shape");
  }
  return d;
}

Dims sizes_at_run_time(const Array& a, const char* what) {
  Dims d;
  if (a.dtype() == int32)
    for (const auto v : a.view<std::int32_t>()) d.push_back(v);
  else
    for (const auto v : a.view<std::int64_t>()) d.push_back(v);
  if (a.shape().rank() != 1 || d.size() != 4)
    throw ValueError(std::string(what) + " must be a vector of 4 sizes, got shape " +
                     a.shape().to_string());
  for (const i64 e : d)
    if (e < 0) throw ValueError(std::string(what) + " must be >= 0, got " + list_text(d));
  return d;
}

void expect_dims(const Dims& got, const Dims& want, const char* what) {
  if (got != want)
    throw ValueError(std::string(what) + " of shape " + list_text(got) +
                     " does not match the expected shape " + list_text(want));
}

}  // namespace kiln::window
