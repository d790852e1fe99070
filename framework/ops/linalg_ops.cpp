#include "framework/ops/common.hpp"
namespace kiln {
void register_linalg_ops(OpRegistry&) {}
}  // namespace kiln
