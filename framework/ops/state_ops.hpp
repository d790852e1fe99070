#pragma once
#include "framework/types.hpp"
namespace kiln::detail {
struct VariableAttrs {
  Shape shape;
  DType dtype;
};
}  // namespace kiln::detail
