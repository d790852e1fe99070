#pragma once
// kiln::nn convolution and pooling, TF1's low-level tf.nn forms: conv2d with its two backprop ops,
// max_pool and avg_pool. Each builds one op (types "Conv2D", "Conv2DBackpropInput",
// "Conv2DBackpropFilter", "MaxPool", "AvgPool"; the gradients add "MaxPoolGrad", "AvgPoolGrad" and
// "MaxPoolGradGrad"), float32 or float64, computed by framework/kernels (im2col + OpenBLAS gemm).
//
//   Tensor x = placeholder(float32, {-1, 28, 28, 1});                 // NHWC
//   Variable w = get_variable("w", {5, 5, 1, 32});                    // [kh, kw, in, out]
//   Tensor h = nn::conv2d(x, w, {1, 1, 1, 1}, "SAME");                // [?, 28, 28, 32]
//   h = nn::max_pool(nn::relu(h), {1, 2, 2, 1}, {1, 2, 2, 1}, "VALID"); // [?, 14, 14, 32]
//   Tensor y = nn::conv2d(xc, w, {1, 1, 2, 2}, "VALID", {.data_format = "NCHW"});
//
// Layouts: data_format "NHWC" (default) is [batch, height, width, channels]; "NCHW" is [batch,
// channels, height, width]. `strides`, `ksize` and `dilations` follow the data format's order and
// have 4 entries whose batch and channel entries are 1 ({1, s, s, 1} for NHWC, {1, 1, s, s} for
// NCHW); like TF2, 1 entry (every spatial dimension) or 2 entries (height, width) are accepted too.
// The filter is always [kernel_h, kernel_w, in_channels, out_channels].
//
// Sizes (TF's rules, per spatial dimension, effective window e = (k - 1) * dilation + 1):
//   "VALID": out = (in - e + stride) / stride (truncating); e > in is an error;
//   "SAME":  out = ceil(in / stride), zero padding split (total / 2) before and the rest after.
// Unknown dimensions (-1) stay unknown in the output shape. Pooling never counts padding: max
// ignores it, average divides by the number of input elements inside the window.
//
// Errors at build time: ValueError (naming the op, its type and the input shapes) for an input or
// filter not of rank 4, input channels that differ from the filter's in_channels, a padding other
// than "SAME"/"VALID" (case-sensitive, as TF's op), a data_format other than "NHWC"/"NCHW", a
// strides/ksize/dilations list of another length, an entry < 1, a batch or channel entry != 1, and
// a VALID window larger than a known input dimension; TypeError for a non-float input or an input
// and filter of different dtypes. At run time, the same checks on the actual shapes raise
// InvalidArgumentError naming the op.
#include <cstdint>
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::nn {

/// conv2d's trailing keyword arguments, in TF's order.
struct Conv2DOptions {
  std::string data_format = "NHWC";
  std::vector<std::int64_t> dilations = {1, 1, 1, 1};  // 1, 2 or 4 entries, like strides
};

/// y[n, oh, ow, o] = sum over i, j, c of x[n, oh*sh - pad_top + i*dh, ow*sw - pad_left + j*dw, c]
/// * filter[i, j, c, o] (positions outside x are 0). x [N, H, W, C] (or NCHW), filter [kh, kw, C,
/// O] -> [N, OH, OW, O] (or NCHW). Gradient: Conv2DBackpropInput for x, Conv2DBackpropFilter for
/// the filter (TF's Conv2DGrad).
Tensor conv2d(const Tensor& x, const Tensor& filter, const std::vector<std::int64_t>& strides,
              const std::string& padding, const Conv2DOptions& options = {},
              const std::string& name = "");

/// The gradient of conv2d with respect to its input: dx = d sum(conv2d(x, filter) * out_backprop)
/// / dx for an x of shape `input_sizes` (a 4-element int32/int64 vector tensor, or the sizes
/// themselves). out_backprop has conv2d's output shape. The result is [N, H, W, C] (or NCHW),
/// statically known as far as input_sizes is a constant. Differentiable in filter and
/// out_backprop (with Conv2DBackpropFilter and Conv2D, as TF).
Tensor conv2d_backprop_input(const Tensor& input_sizes, const Tensor& filter,
                             const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                             const std::string& padding, const Conv2DOptions& options = {},
                             const std::string& name = "");
Tensor conv2d_backprop_input(const std::vector<std::int64_t>& input_sizes, const Tensor& filter,
                             const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                             const std::string& padding, const Conv2DOptions& options = {},
                             const std::string& name = "");

/// The gradient of conv2d with respect to its filter, summed over the batch: a tensor of shape
/// `filter_sizes` ([kh, kw, C, O]; a 4-element int32/int64 vector tensor, or the sizes themselves).
/// Differentiable in x and out_backprop (with Conv2DBackpropInput and Conv2D, as TF).
Tensor conv2d_backprop_filter(const Tensor& x, const Tensor& filter_sizes,
                              const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                              const std::string& padding, const Conv2DOptions& options = {},
                              const std::string& name = "");
Tensor conv2d_backprop_filter(const Tensor& x, const std::vector<std::int64_t>& filter_sizes,
                              const Tensor& out_backprop, const std::vector<std::int64_t>& strides,
                              const std::string& padding, const Conv2DOptions& options = {},
                              const std::string& name = "");

/// Maximum over each ksize window ("MaxPool"); x [N, H, W, C] (or NCHW) -> [N, OH, OW, C]. Ties go
/// to the first maximal element (row-major in its window), which also receives the whole gradient
/// ("MaxPoolGrad"; its own gradient is "MaxPoolGradGrad", which picks the incoming gradient at
/// that same element of each window).
Tensor max_pool(const Tensor& x, const std::vector<std::int64_t>& ksize,
                const std::vector<std::int64_t>& strides, const std::string& padding,
                const std::string& data_format = "NHWC", const std::string& name = "");

/// Mean over the input elements inside each ksize window ("AvgPool"; gradient "AvgPoolGrad", which
/// spreads each output gradient evenly over its window; AvgPoolGrad's gradient is AvgPool).
Tensor avg_pool(const Tensor& x, const std::vector<std::int64_t>& ksize,
                const std::vector<std::int64_t>& strides, const std::string& padding,
                const std::string& data_format = "NHWC", const std::string& name = "");

}  // namespace kiln::nn
