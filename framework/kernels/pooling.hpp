#pragma once
// 2-D max and average pooling on raw buffers (no graph types, no xtensor): TF's MaxPool,
// MaxPoolGrad, AvgPool and AvgPoolGrad for float and double.
//
// Layouts: x/dx are [batch, in_h, in_w, channels] (NHWC) or [batch, channels, in_h, in_w] (NCHW,
// when channels_first); y/dy likewise with out_h, out_w. Dense, row-major, non-overlapping.
// Output (oh, ow) pools input rows [oh*stride_h - pad_top, + window_h) and columns
// [ow*stride_w - pad_left, + window_w), clipped to the input: padding never takes part (max
// ignores it, average divides by the number of input elements in the window, as TF does).
#include <cstdint>

#include "framework/kernels/conv2d.hpp"  // Padding, window_dim

namespace kiln::kernels {

struct Pool2DGeometry {
  std::int64_t batch = 0;
  std::int64_t in_h = 0, in_w = 0, channels = 0;
  std::int64_t out_h = 0, out_w = 0;
  std::int64_t window_h = 1, window_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_top = 0, pad_left = 0;
  bool channels_first = false;  // NCHW instead of NHWC

  std::int64_t input_size() const { return batch * in_h * in_w * channels; }
  std::int64_t output_size() const { return batch * out_h * out_w * channels; }
};

/// Fills out_h, out_w, pad_top and pad_left of `spec` from its other fields with window_dim()
/// (TF's SAME/VALID rules, dilation 1); the values given for them in `spec` are ignored. Usage:
///   auto g = make_pool2d_geometry({.batch = n, .in_h = 28, .in_w = 28, .channels = 32,
///                                  .window_h = 2, .window_w = 2, .stride_h = 2, .stride_w = 2},
///                                 Padding::valid);
Pool2DGeometry make_pool2d_geometry(Pool2DGeometry spec, Padding padding);

/// Throws kiln::InvalidArgumentError unless all sizes are >= 0, window/stride >= 1 and pads >= 0.
/// The kernels below call it.
void validate(const Pool2DGeometry& g);

/// y = max over each window. Comparisons scan the window row by row and replace the running
/// maximum only when strictly greater, so y is the first maximal element (a NaN in the first
/// position propagates; later NaNs are ignored). A window with no input element gives 0.
template <class T>
void max_pool_forward(const Pool2DGeometry& g, const T* x, T* y);

/// dx = gradient of max pooling: each dy goes to the first element (row-major in its window) of
/// x equal to y, i.e. to the element max_pool_forward chose (falls back to that same first-max
/// scan when none is equal, e.g. y is NaN). Overlapping windows accumulate. Overwrites dx.
template <class T>
void max_pool_backward(const Pool2DGeometry& g, const T* x, const T* y, const T* dy, T* dx);

/// y = mean over the input elements inside each window (padding excluded). Empty window: 0.
template <class T>
void avg_pool_forward(const Pool2DGeometry& g, const T* x, T* y);

/// dx = gradient of avg_pool_forward: each dy / count is added to its window's elements.
/// Overwrites dx.
template <class T>
void avg_pool_backward(const Pool2DGeometry& g, const T* dy, T* dx);

}  // namespace kiln::kernels
