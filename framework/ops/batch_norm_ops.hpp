#pragma once
// The attributes of FusedBatchNorm and FusedBatchNormGrad (framework/ops/batch_norm_ops.cpp), for
// graph rewrites that read them (framework/graph_util.cpp).
#include <string>

namespace kiln::detail {
struct FusedBatchNormAttrs {
  double epsilon = 1e-3;
  std::string data_format = "NHWC";
  bool is_training = true;
};
}  // namespace kiln::detail
