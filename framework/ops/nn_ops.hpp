#pragma once
// The attributes of BiasAdd and BiasAddGrad (framework/ops/nn_ops.cpp), for graph rewrites that
// read them (framework/graph_util.cpp).
#include <string>

namespace kiln::detail {
struct BiasAddAttrs {
  std::string data_format;  // "NHWC" (channels last) | "NCHW" (channels at axis 1)
};
}  // namespace kiln::detail
