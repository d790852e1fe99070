#include "framework/ops/register.hpp"

#include "framework/op_registry.hpp"

namespace kiln {
void register_all_ops(OpRegistry& r) {
  register_constant_ops(r);
  register_random_ops(r);
  register_math_ops(r);
  register_array_ops(r);
  register_sum_to_shape_ops(r);
  register_concat_slice_ops(r);
  register_reduction_ops(r);
  register_linalg_ops(r);
  register_nn_ops(r);
  register_softmax_ops(r);
  register_batch_norm_ops(r);
  register_conv_ops(r);
  register_pooling_ops(r);
  register_state_ops(r);
  register_training_ops(r);
  register_control_flow_ops(r);
  register_numerics_ops(r);
  register_collective_ops(r);
}
}  // namespace kiln
