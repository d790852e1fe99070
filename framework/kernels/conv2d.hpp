#pragma once
// 2-D convolution on raw buffers (no graph types, no xtensor): TF's Conv2D, Conv2DBackpropInput
// and Conv2DBackpropFilter for float and double, by im2col + gemm (kernels/gemm.hpp).
//
// Threads and memory: the batch is split into chunks of images on kiln's thread pool, one
// single-threaded product per image; im2col matrices come from kernels::Scratch (reused across
// calls). Results are bit-identical for any thread count (backprop_filter sums per-chunk partial
// results in chunk order; the chunks depend only on the shapes). Thread-safe.
//
// Layouts: x is [batch, in_h, in_w, in_c] (NHWC) or [batch, in_c, in_h, in_w] (NCHW, when
// channels_first); y/dy likewise with out_h, out_w, out_c; the filter is always TF's
// [kernel_h, kernel_w, in_c, out_c]. All buffers are dense, row-major and must not overlap.
// Output pixel (oh, ow) reads input rows oh*stride_h - pad_top + i*dilation_h (i < kernel_h) and
// columns ow*stride_w - pad_left + j*dilation_w (j < kernel_w); positions outside the input are
// zeros (this covers the bottom/right padding implicitly).
#include <cstdint>
#include <string_view>

namespace kiln::kernels {

/// TF's padding schemes of windowed ops.
enum class Padding { valid, same };

/// Output size and padding of one spatial dimension under TF's rules, with the effective window
/// size e = (window - 1) * dilation + 1:
///   VALID: out = (in - e + stride) / stride (truncating, as TF), no padding;
///   SAME:  out = ceil(in / stride), pad_total = max((out - 1) * stride + e - in, 0),
///          pad_before = pad_total / 2, pad_after = pad_total - pad_before.
struct WindowDim {
  std::int64_t out = 0;
  std::int64_t pad_before = 0;
  std::int64_t pad_after = 0;
};
/// Throws kiln::InvalidArgumentError for in < 0, window/stride/dilation < 1, or a VALID window
/// so much larger than the input that out would be negative (TF rejects these too).
WindowDim window_dim(std::int64_t in, std::int64_t window, std::int64_t stride,
                     std::int64_t dilation, Padding padding);

/// Everything a convolution kernel needs to know about the shapes.
struct Conv2DGeometry {
  std::int64_t batch = 0;
  std::int64_t in_h = 0, in_w = 0, in_c = 0;
  std::int64_t out_h = 0, out_w = 0, out_c = 0;
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t pad_top = 0, pad_left = 0;
  bool channels_first = false;  // NCHW instead of NHWC

  std::int64_t input_size() const { return batch * in_h * in_w * in_c; }
  std::int64_t output_size() const { return batch * out_h * out_w * out_c; }
  std::int64_t filter_size() const { return kernel_h * kernel_w * in_c * out_c; }
};

/// Fills out_h, out_w, pad_top and pad_left of `spec` from its other fields with window_dim();
/// out_h/out_w/pad_top/pad_left given in `spec` are ignored. Usage:
///   auto g = make_conv2d_geometry({.batch = n, .in_h = 28, .in_w = 28, .in_c = 1, .out_c = 32,
///                                  .kernel_h = 5, .kernel_w = 5}, Padding::same);
Conv2DGeometry make_conv2d_geometry(Conv2DGeometry spec, Padding padding);

/// Throws kiln::InvalidArgumentError unless all sizes are >= 0, kernel/stride/dilation >= 1 and
/// pads >= 0. The kernels below call it.
void validate(const Conv2DGeometry& g);

/// y = conv2d(x, filter).
template <class T>
void conv2d_forward(const Conv2DGeometry& g, const T* x, const T* filter, T* y);

/// dx = d(sum(y * dy))/dx: the adjoint of conv2d_forward in x (overwrites dx).
template <class T>
void conv2d_backprop_input(const Conv2DGeometry& g, const T* filter, const T* dy, T* dx);

/// dfilter = d(sum(y * dy))/dfilter, summed over the batch (overwrites dfilter).
template <class T>
void conv2d_backprop_filter(const Conv2DGeometry& g, const T* x, const T* dy, T* dfilter);

}  // namespace kiln::kernels
