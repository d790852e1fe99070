// Training ops: fused in-place optimizer updates with TF's names and TF's kernel equations
// (tensorflow/core/kernels/training_ops.cc). Each op's inputs are its ref inputs (the variable and
// its slots), its scalar hyperparameters, and the gradient last.
#include "framework/ops/training_ops.hpp"

#include <array>
#include <cmath>

#include "framework/kernels/elementwise.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

struct ApplyMomentumAttrs {
  bool use_nesterov = false;
};

// `refs` variables (same shape as the gradient), then `hypers` scalars, then the gradient.
std::vector<TensorSpec> apply_shape(const InferenceContext& c, int refs, int hypers) {
  detail::expect_inputs(c, refs + hypers + 1);
  detail::expect_same_dtype(c);
  if (!is_floating(c.dtypes[0]))
    throw TypeError(std::string("Value of dtype ") + dtype_name(c.dtypes[0]) + " is not a floating-point type");
  Shape s = c.shapes[0];
  for (int i = 1; i <= refs; ++i) {
    const auto k = static_cast<std::size_t>(i == refs ? refs + hypers : i);
    if (!s.is_compatible_with(c.shapes[k]))
      throw ValueError("Shapes must be equal: the variable has shape " + s.to_string() + ", input " +
                       std::to_string(k) + " has shape " + c.shapes[k].to_string());
    s = s.merge_with(c.shapes[k]);
  }
  for (int h = refs; h < refs + hypers; ++h) {
    const Shape& hs = c.shapes[static_cast<std::size_t>(h)];
    if (hs.has_rank() && hs.rank() != 0)
      throw ValueError("Hyperparameter input " + std::to_string(h) + " must be a scalar, got shape " + hs.to_string());
  }
  return detail::one(c.dtypes[0], s);
}

template <class T>
T hyper(const KernelContext& c, int i) {
  return c.input(i).scalar<T>();
}

// Updates the variable and its slots element by element: update(g, x) gets the gradient and
// x[r] = ref input r's elements (vectors, then scalars: kernels::update_elements), read from their
// values before the op, and updates x, written to their storage. As in update_variable
// (state_ops.cpp), from[r] is taken after mutable_as, which may replace the storage's buffer: after
// the run's first write the value before the op is the storage itself (from[r] == to[r]).
template <class T, std::size_t NRefs, class F>
void apply_update(KernelContext& c, F update) {
  const Array& grad = c.input(c.num_inputs() - 1);
  std::array<const T*, NRefs> from{};
  std::array<T*, NRefs> to{};
  for (std::size_t r = 0; r < NRefs; ++r) {
    const Array& before = c.variable_before(static_cast<int>(r));
    const std::string& var = c.node().inputs[r].node->name;
    if (before.empty()) throw FailedPreconditionError("Attempting to use uninitialized value " + var);
    if (!before.same_shape(grad))
      throw InvalidArgumentError("Variable " + var + " has shape " + before.shape().to_string() +
                                 " but the gradient has shape " + grad.shape().to_string());
    to[r] = c.variable_ref(static_cast<int>(r)).template mutable_as<T>().data();
    from[r] = before.view<T>().data();  // after mutable_as: see above
  }
  const T* g = grad.view<T>().data();
  // Chunks of at least 2^17 elements: a smaller update finishes before a sleeping worker wakes.
  kernels::update_elements(from, to, g, static_cast<std::size_t>(grad.size()), std::size_t{1} << 17, update);
  c.set_output(0, c.variable_ref(0));
}

OpDef apply_op(const char* type, int refs, int hypers, std::array<KernelFactory, kNumDTypes> kernels,
               AttrCodec codec = {}) {
  OpDef d;
  d.attr_codec = std::move(codec);
  d.type = type;
  d.shape_fn = [refs, hypers](const InferenceContext& c) { return apply_shape(c, refs, hypers); };
  d.kernels = std::move(kernels);
  d.not_differentiable = true;
  for (int r = 0; r < refs; ++r) d.ref_inputs.push_back(r);
  return d;
}

}  // namespace

Tensor apply_gradient_descent(const Variable& var, const Tensor& alpha, const Tensor& delta, const std::string& name) {
  return detail::build1("ApplyGradientDescent", {var.value(), alpha, delta}, {}, name);
}
Tensor apply_momentum(const Variable& var, const Variable& accum, const Tensor& lr, const Tensor& grad,
                      const Tensor& momentum, bool use_nesterov, const std::string& name) {
  return detail::build1("ApplyMomentum", {var.value(), accum.value(), lr, momentum, grad},
                        ApplyMomentumAttrs{use_nesterov}, name);
}
Tensor apply_adam(const Variable& var, const Variable& m, const Variable& v, const Tensor& beta1_power,
                  const Tensor& beta2_power, const Tensor& lr, const Tensor& beta1, const Tensor& beta2,
                  const Tensor& epsilon, const Tensor& grad, const std::string& name) {
  return detail::build1("ApplyAdam",
                        {var.value(), m.value(), v.value(), beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad},
                        {}, name);
}
Tensor apply_rms_prop(const Variable& var, const Variable& ms, const Variable& mom, const Tensor& lr,
                      const Tensor& rho, const Tensor& momentum, const Tensor& epsilon, const Tensor& grad,
                      const std::string& name) {
  return detail::build1("ApplyRMSProp", {var.value(), ms.value(), mom.value(), lr, rho, momentum, epsilon, grad}, {},
                        name);
}
Tensor apply_centered_rms_prop(const Variable& var, const Variable& mg, const Variable& ms, const Variable& mom,
                               const Tensor& lr, const Tensor& rho, const Tensor& momentum, const Tensor& epsilon,
                               const Tensor& grad, const std::string& name) {
  return detail::build1("ApplyCenteredRMSProp",
                        {var.value(), mg.value(), ms.value(), mom.value(), lr, rho, momentum, epsilon, grad}, {}, name);
}
Tensor apply_adagrad(const Variable& var, const Variable& accum, const Tensor& lr, const Tensor& grad,
                     const std::string& name) {
  return detail::build1("ApplyAdagrad", {var.value(), accum.value(), lr, grad}, {}, name);
}

void register_training_ops(OpRegistry& r) {
  // var -= alpha * delta
  r.add(apply_op("ApplyGradientDescent", 1, 1, kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
                   const T alpha = hyper<T>(c, 1);
                   apply_update<T, 1>(c, [=](auto g, auto& x) { x[0] -= alpha * g; });
                 })));
  // accum = accum * momentum + g; var -= lr * accum, or with Nesterov var -= lr * g + lr * momentum * accum.
  r.add(apply_op("ApplyMomentum", 2, 2, kernels_with<ApplyMomentumAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const ApplyMomentumAttrs& a) {
                   const T lr = hyper<T>(c, 2), momentum = hyper<T>(c, 3);
                   if (a.use_nesterov)
                     apply_update<T, 2>(c, [=](auto g, auto& x) {
                       x[1] = x[1] * momentum + g;
                       x[0] -= g * lr + x[1] * momentum * lr;
                     });
                   else
                     apply_update<T, 2>(c, [=](auto g, auto& x) {
                       x[1] = x[1] * momentum + g;
                       x[0] -= x[1] * lr;
                     });
                 }),
                 attr_codec<ApplyMomentumAttrs>([](auto& io, auto& a) { io(a.use_nesterov); })));
  // lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t); m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2);
  // var -= lr_t m / (sqrt(v) + epsilon).
  r.add(apply_op("ApplyAdam", 3, 6, kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
                   const T b1p = hyper<T>(c, 3), b2p = hyper<T>(c, 4), lr = hyper<T>(c, 5);
                   const T b1 = hyper<T>(c, 6), b2 = hyper<T>(c, 7), eps = hyper<T>(c, 8);
                   const T lr_t = lr * std::sqrt(T(1) - b2p) / (T(1) - b1p);
                   apply_update<T, 3>(c, [=](auto g, auto& x) {
                     x[1] += (g - x[1]) * (T(1) - b1);
                     x[2] += (g * g - x[2]) * (T(1) - b2);
                     x[0] -= lr_t * x[1] / (kernels::root(x[2]) + eps);
                   });
                 })));
  // ms += (g^2 - ms)(1 - rho); mom = mom * momentum + lr g / sqrt(ms + epsilon); var -= mom.
  r.add(apply_op("ApplyRMSProp", 3, 4, kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
                   const T lr = hyper<T>(c, 3), rho = hyper<T>(c, 4), momentum = hyper<T>(c, 5), eps = hyper<T>(c, 6);
                   apply_update<T, 3>(c, [=](auto g, auto& x) {
                     x[1] += (g * g - x[1]) * (T(1) - rho);
                     x[2] = x[2] * momentum + lr * g / kernels::root(x[1] + eps);
                     x[0] -= x[2];
                   });
                 })));
  // As ApplyRMSProp with mg += (g - mg)(1 - rho) and the denominator sqrt(ms - mg^2 + epsilon).
  r.add(apply_op("ApplyCenteredRMSProp", 4, 4, kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
                   const T lr = hyper<T>(c, 4), rho = hyper<T>(c, 5), momentum = hyper<T>(c, 6), eps = hyper<T>(c, 7);
                   apply_update<T, 4>(c, [=](auto g, auto& x) {
                     x[1] += (g - x[1]) * (T(1) - rho);
                     x[2] += (g * g - x[2]) * (T(1) - rho);
                     x[3] = x[3] * momentum + lr * g / kernels::root(x[2] - x[1] * x[1] + eps);
                     x[0] -= x[3];
                   });
                 })));
  // accum += g^2; var -= lr g / sqrt(accum).
  r.add(apply_op("ApplyAdagrad", 2, 1, kernels_for<KILN_FLOAT_TYPES>([]<class T>(KernelContext& c) {
                   const T lr = hyper<T>(c, 2);
                   apply_update<T, 2>(c, [=](auto g, auto& x) {
                     x[1] += g * g;
                     x[0] -= lr * g / kernels::root(x[1]);
                   });
                 })));
}

}  // namespace kiln
