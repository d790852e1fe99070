#pragma once
// The attributes of the Conv2D ops (framework/ops/conv_ops.cpp), for graph rewrites that read them
// (framework/graph_util.cpp).
#include <cstdint>
#include <string>
#include <vector>

#include "framework/types.hpp"

namespace kiln::detail {
struct Conv2DAttrs {
  std::vector<std::int64_t> strides;    // 4 values, in the data format's order
  std::string padding;                  // "SAME" | "VALID"
  std::string data_format;              // "NHWC" | "NCHW"
  std::vector<std::int64_t> dilations;  // 4 values
  // Backprop ops only: the static shape of the output when the sizes input is not a constant
  // (the gradient passes the shape of x or of the filter; TF reads the Shape op instead).
  Shape output_hint = Shape::unknown();
};
}  // namespace kiln::detail
