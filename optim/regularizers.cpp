#include "optim/regularizers.hpp"

#include <sstream>

#include "framework/errors.hpp"
#include "framework/ops.hpp"

namespace kiln::regularizers {

namespace {
void check_scale(double scale) {
  if (scale < 0) {
    std::ostringstream os;
    os << "Setting a scale less than 0 on a regularizer: " << scale;
    throw ValueError(os.str());
  }
}
}  // namespace

TensorFn l1(double scale) {
  check_scale(scale);
  return [scale](const Tensor& w) {
    name_scope ns("l1_regularizer");
    return multiply(scalar_like(scale, w), reduce_sum(abs(w)), "value");
  };
}

TensorFn l2(double scale) {
  check_scale(scale);
  return [scale](const Tensor& w) {
    name_scope ns("l2_regularizer");
    return multiply(scalar_like(scale, w), reduce_sum(square(w)), "value");
  };
}

TensorFn l1_l2(double l1, double l2) {
  check_scale(l1);
  check_scale(l2);
  return [l1, l2](const Tensor& w) {
    name_scope ns("l1_l2_regularizer");
    return add(scalar_like(l1, w) * reduce_sum(abs(w)), scalar_like(l2, w) * reduce_sum(square(w)), "value");
  };
}

}  // namespace kiln::regularizers
