#pragma once
// Explicit registration: each op family file defines one register_*_ops function, called from
// register_all_ops() (framework/ops/register.cpp) and nowhere else.
namespace kiln {
class OpRegistry;
void register_constant_ops(OpRegistry& r);
void register_random_ops(OpRegistry& r);
void register_math_ops(OpRegistry& r);
void register_array_ops(OpRegistry& r);
void register_sum_to_shape_ops(OpRegistry& r);
void register_concat_slice_ops(OpRegistry& r);
void register_reduction_ops(OpRegistry& r);
void register_linalg_ops(OpRegistry& r);
void register_nn_ops(OpRegistry& r);
void register_softmax_ops(OpRegistry& r);
void register_batch_norm_ops(OpRegistry& r);
void register_conv_ops(OpRegistry& r);
void register_pooling_ops(OpRegistry& r);
void register_state_ops(OpRegistry& r);
void register_training_ops(OpRegistry& r);
void register_control_flow_ops(OpRegistry& r);
void register_numerics_ops(OpRegistry& r);
void register_collective_ops(OpRegistry& r);  // distributed/collective_ops.cpp
void register_all_ops(OpRegistry& r);
}  // namespace kiln
