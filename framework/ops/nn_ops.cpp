#include "framework/ops/common.hpp"
namespace kiln {
void register_nn_ops(OpRegistry&) {}
}  // namespace kiln
