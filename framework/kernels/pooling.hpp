#pragma once
// 2-D max and average pooling on raw buffers (no graph types, no xtensor): TF's MaxPool (with its
// argmax, as TF's MaxPoolWithArgmax), MaxPoolGrad, MaxPoolGradGrad, AvgPool and AvgPoolGrad for
// float and double.
//
// Layouts: x/dx are [batch, in_h, in_w, channels] (NHWC) or [batch, channels, in_h, in_w] (NCHW,
// when channels_first); y/dy/argmax likewise with out_h, out_w. Dense, row-major, non-overlapping.
// Output (oh, ow) pools input rows [oh*stride_h - pad_top, + window_h) and columns
// [ow*stride_w - pad_left, + window_w), clipped to the input: padding never takes part (max
// ignores it, average divides by the number of input elements in the window, as TF does).
//
// Threads: every kernel splits the batch into chunks on kiln's thread pool; each output (and, in
// the backward kernels, each input gradient) is computed by one chunk in a fixed order, so the
// results are bit-identical for any thread count. Thread-safe (no shared state).
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

/// y = max over each window, and argmax = the flat index into x (batch included, in x's layout,
/// as TF's MaxPoolWithArgmax with include_batch_in_index) of the element y was taken from.
/// The window is scanned row by row; the running maximum is replaced by a strictly greater
/// element, or by a NaN when it is not NaN itself: ties go to the first maximum, and a NaN
/// anywhere in the window makes y NaN, with argmax at the first NaN. A window with no input
/// element (only possible with hand-made geometries) gives y = 0 and argmax = -1.
template <class T>
void max_pool_forward(const Pool2DGeometry& g, const T* x, T* y, std::int64_t* argmax);

/// dx = gradient of max pooling: dx = 0, then dx[argmax[o]] += dy[o] for every output o in
/// order (overlapping windows accumulate; argmax -1 contributes nothing). argmax must come from
/// max_pool_forward with the same geometry: an index outside its own image throws
/// kiln::InvalidArgumentError (dx is then unspecified).
template <class T>
void max_pool_backward(const Pool2DGeometry& g, const std::int64_t* argmax, const T* dy, T* dx);

/// max_pool_backward followed by ReluGrad(dx, relu) (kernels::gate): dx where relu > 0, else 0
/// (NaN where relu or dx is NaN, or dx infinite), bit for bit the two ops; relu has x's layout.
/// The plan's fusion of a ReluGrad reading a MaxPoolGrad (framework/simplify.hpp): the sums are
/// gated as they are written (one pass over dx less).
template <class T>
void max_pool_backward_relu(const Pool2DGeometry& g, const std::int64_t* argmax, const T* dy, const T* relu,
                            T* dx);

/// The gradient of max_pool_backward in dy (TF's MaxPoolGradGrad): out[o] = gg[argmax[o]], 0 for
/// argmax -1; gg has x's shape, out y's. Same argmax checks as max_pool_backward.
template <class T>
void max_pool_grad_grad(const Pool2DGeometry& g, const std::int64_t* argmax, const T* gg, T* out);

/// y = mean over the input elements inside each window (padding excluded). Empty window: 0.
template <class T>
void avg_pool_forward(const Pool2DGeometry& g, const T* x, T* y);

/// dx = gradient of avg_pool_forward: each dy / count is added to its window's elements.
/// Overwrites dx.
template <class T>
void avg_pool_backward(const Pool2DGeometry& g, const T* dy, T* dx);

}  // namespace kiln::kernels
