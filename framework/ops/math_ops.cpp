// Elementwise math: binary ops with NumPy broadcasting, unary ops, comparisons and logic, cast,
// where, clip_by_value, add_n. Each op: shape function, kernel (kernels/elementwise.hpp), gradient.
#include <cmath>
#include <functional>
#include <numeric>

#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/scratch.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

using detail::reduce_to_shape_of;

// An input's dimensions without allocating.
template <class T>
kernels::Extents dims_of(const KernelContext& c, int i) {
  return c.input_as<T>(i).shape();
}

std::vector<TensorSpec> binary_shape(const InferenceContext& c, std::optional<DType> out) {
  detail::expect_inputs(c, 2);
  detail::expect_same_dtype(c);
  return detail::one(out.value_or(c.dtypes[0]), broadcast_shapes(c.shapes[0], c.shapes[1]));
}

// Kernel of a broadcasting binary op with result type R (T for arithmetic, bool for comparisons).
template <class T, class R, class F>
void binary_kernel(KernelContext& c, F f) {
  const auto& a = c.input_as<T>(0);
  const auto& b = c.input_as<T>(1);
  const auto& sa = a.shape();
  const auto& sb = b.shape();
  if (!kernels::broadcastable(sa, sb))
    throw InvalidArgumentError("Incompatible shapes: " + c.input(0).shape().to_string() + " vs. " +
                               c.input(1).shape().to_string() + " in '" + c.op_name() + "'");
  const auto out = kernels::broadcast_shape(sa, sb);
  // In place of an input of the output's shape when the executor allows it: broadcast_binary
  // reads element k of a full-shape input before it writes element k.
  auto y = !std::is_same_v<R, T> ? c.allocate_output<R>(0, out)
           : out == sa           ? c.forward_input_or_allocate<R>(0, 0)
           : out == sb           ? c.forward_input_or_allocate<R>(1, 0)
                                 : c.allocate_output<R>(0, out);
  kernels::broadcast_binary(a.data(), sa, b.data(), sb, y.data(), out, f);
}

template <class T, class F>
void unary_kernel(KernelContext& c, F f) {
  const auto& x = c.input_as<T>(0);
  const T* in = x.data();
  const std::size_t n = x.size();
  auto y = c.forward_input_or_allocate<T>(0, 0);
  kernels::map_unary(in, y.data(), n, f);
}

std::vector<TensorSpec> same_as_input(const InferenceContext& c) {
  detail::expect_inputs(c, 1);
  return detail::one(c.dtypes[0], c.shapes[0]);
}

// Registers a broadcasting arithmetic op over the numeric types.
template <bool floats_only = false, class F>
void add_binary(OpRegistry& r, const std::string& type, F f, GradFn grad) {
  OpDef d{.type = type, .shape_fn = [](const InferenceContext& c) { return binary_shape(c, std::nullopt); }};
  if constexpr (floats_only)
    d.kernels = kernels_for<KILN_FLOAT_TYPES>([f]<class T>(KernelContext& c) { binary_kernel<T, T>(c, f); });
  else
    d.kernels = kernels_for<KILN_NUMERIC_TYPES>([f]<class T>(KernelContext& c) { binary_kernel<T, T>(c, f); });
  d.gradient = std::move(grad);
  d.broadcasts_inputs = true;
  d.forwards_input = true;
  r.add(std::move(d));
}

template <bool logical = false, class F>
void add_comparison(OpRegistry& r, const std::string& type, F f) {
  OpDef d{.type = type, .shape_fn = [](const InferenceContext& c) { return binary_shape(c, boolean); }};
  if constexpr (logical)
    d.kernels = kernels_for<bool>([f]<class T>(KernelContext& c) { binary_kernel<T, bool>(c, f); });
  else
    d.kernels = kernels_for<KILN_ALL_TYPES>([f]<class T>(KernelContext& c) { binary_kernel<T, bool>(c, f); });
  d.not_differentiable = true;
  d.broadcasts_inputs = true;
  r.add(std::move(d));
}

template <bool floats_only = true, class F>
void add_unary(OpRegistry& r, const std::string& type, F f, GradFn grad) {
  OpDef d{.type = type, .shape_fn = same_as_input};
  if constexpr (floats_only)
    d.kernels = kernels_for<KILN_FLOAT_TYPES>([f]<class T>(KernelContext& c) { unary_kernel<T>(c, f); });
  else
    d.kernels = kernels_for<KILN_NUMERIC_TYPES>([f]<class T>(KernelContext& c) { unary_kernel<T>(c, f); });
  d.gradient = std::move(grad);
  d.forwards_input = true;
  r.add(std::move(d));
}

// The broadcast shape of a three-input op's run-time inputs; InvalidArgumentError naming the op.
kernels::Extents broadcast3(const KernelContext& c, const kernels::Extents& s0, const kernels::Extents& s1,
                            const kernels::Extents& s2) {
  const auto out = kernels::broadcast_shape(kernels::broadcast_shape(s0, s1), s2);
  for (const auto* s : {&s0, &s1, &s2})
    if (kernels::broadcast_shape(*s, out) != out)
      throw InvalidArgumentError("'" + c.op_name() + "': shapes " + c.input(0).shape().to_string() + ", " +
                                 c.input(1).shape().to_string() + " and " + c.input(2).shape().to_string() +
                                 " cannot be broadcast together");
  return out;
}

// out = cond ? x : y over the broadcast of the three shapes (an odometer over output indices).
template <class T>
void select_kernel(KernelContext& c) {
  const auto& cond = c.input_as<bool>(0);
  const auto& x = c.input_as<T>(1);
  const auto& y = c.input_as<T>(2);
  const auto sc = dims_of<bool>(c, 0), sx = dims_of<T>(c, 1), sy = dims_of<T>(c, 2);
  const auto out = broadcast3(c, sc, sx, sy);
  auto r = c.allocate_output<T>(0, out);
  const auto stc = kernels::broadcast_strides(sc, out), stx = kernels::broadcast_strides(sx, out),
             sty = kernels::broadcast_strides(sy, out);
  kernels::Extents idx(out.size(), 0);
  std::size_t oc = 0, ox = 0, oy = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    r.data()[i] = cond.data()[oc] ? x.data()[ox] : y.data()[oy];
    for (std::size_t d = out.size(); d-- > 0;) {
      ++idx[d];
      oc += stc[d], ox += stx[d], oy += sty[d];
      if (idx[d] < out[d]) break;
      oc -= stc[d] * out[d], ox -= stx[d] * out[d], oy -= sty[d] * out[d];
      idx[d] = 0;
    }
  }

}

Tensor x_of(const Operation& op, int i = 0) { return op.inputs()[static_cast<std::size_t>(i)]; }

}  // namespace

Tensor add(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Add", {a, b}, {}, name); }
Tensor subtract(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Sub", {a, b}, {}, name); }
Tensor multiply(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Mul", {a, b}, {}, name); }
Tensor divide(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("RealDiv", {a, b}, {}, name); }
Tensor maximum(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Maximum", {a, b}, {}, name); }
Tensor minimum(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Minimum", {a, b}, {}, name); }
Tensor pow(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Pow", {a, b}, {}, name); }
Tensor squared_difference(const Tensor& a, const Tensor& b, const std::string& name) {
  return detail::build1("SquaredDifference", {a, b}, {}, name);
}
Tensor negative(const Tensor& x, const std::string& name) { return detail::build1("Neg", {x}, {}, name); }
Tensor square(const Tensor& x, const std::string& name) { return detail::build1("Square", {x}, {}, name); }
Tensor sqrt(const Tensor& x, const std::string& name) { return detail::build1("Sqrt", {x}, {}, name); }
Tensor rsqrt(const Tensor& x, const std::string& name) { return detail::build1("Rsqrt", {x}, {}, name); }
Tensor exp(const Tensor& x, const std::string& name) { return detail::build1("Exp", {x}, {}, name); }
Tensor log(const Tensor& x, const std::string& name) { return detail::build1("Log", {x}, {}, name); }
Tensor abs(const Tensor& x, const std::string& name) { return detail::build1("Abs", {x}, {}, name); }
Tensor sign(const Tensor& x, const std::string& name) { return detail::build1("Sign", {x}, {}, name); }
Tensor reciprocal(const Tensor& x, const std::string& name) { return detail::build1("Reciprocal", {x}, {}, name); }
Tensor equal(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Equal", {a, b}, {}, name); }
Tensor not_equal(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("NotEqual", {a, b}, {}, name); }
Tensor less(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Less", {a, b}, {}, name); }
Tensor less_equal(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("LessEqual", {a, b}, {}, name); }
Tensor greater(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("Greater", {a, b}, {}, name); }
Tensor greater_equal(const Tensor& a, const Tensor& b, const std::string& name) {
  return detail::build1("GreaterEqual", {a, b}, {}, name);
}
Tensor logical_and(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("LogicalAnd", {a, b}, {}, name); }
Tensor logical_or(const Tensor& a, const Tensor& b, const std::string& name) { return detail::build1("LogicalOr", {a, b}, {}, name); }
Tensor logical_not(const Tensor& x, const std::string& name) { return detail::build1("LogicalNot", {x}, {}, name); }

Tensor cast(const Tensor& x, DType dtype, const std::string& name) {
  if (x.dtype() == dtype) return identity(x, name);
  return detail::build1("Cast", {x}, dtype, name);
}
Tensor where(const Tensor& cond, const Tensor& x, const Tensor& y, const std::string& name) {
  return detail::build1("Select", {cond, x, y}, {}, name);
}
Tensor clip_by_value(const Tensor& x, const Tensor& lo, const Tensor& hi, const std::string& name) {
  return detail::build1("ClipByValue", {x, lo, hi}, {}, name);
}
Tensor clip_by_value(const Tensor& x, double lo, double hi, const std::string& name) {
  if (lo > hi)
    throw ValueError("clip_by_value on '" + x.name() + "': clip_value_min " + std::to_string(lo) +
                     " is greater than clip_value_max " + std::to_string(hi));
  return clip_by_value(x, scalar_like(lo, x), scalar_like(hi, x), name);
}
Tensor add_n(const std::vector<Tensor>& xs, const std::string& name) {
  if (xs.empty()) throw ValueError("add_n: needs at least one tensor");
  if (xs.size() == 1) return identity(xs[0], name);
  return detail::build1("AddN", xs, {}, name);
}

void register_math_ops(OpRegistry& r) {
  // d(a+b) = dy; d(a-b) = (dy, -dy); each reduced back over broadcast dimensions (-dy after the
  // reduction: negation is exact, so the sums are the same, over fewer elements).
  add_binary(r, "Add", [](auto a, auto b) { return a + b; }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{reduce_to_shape_of(*dy[0], x_of(op, 0)), reduce_to_shape_of(*dy[0], x_of(op, 1))};
  });
  add_binary(r, "Sub", [](auto a, auto b) { return a - b; }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{reduce_to_shape_of(*dy[0], x_of(op, 0)), -reduce_to_shape_of(*dy[0], x_of(op, 1))};
  });
  add_binary(r, "Mul", [](auto a, auto b) { return a * b; }, [](const Operation& op, const OptionalTensors& dy) {
    const Tensor a = x_of(op, 0), b = x_of(op, 1);
    return OptionalTensors{reduce_to_shape_of(*dy[0] * b, a), reduce_to_shape_of(*dy[0] * a, b)};
  });
  // d(a/b) = (dy/b, -dy*a/b^2)
  add_binary(r, "RealDiv", [](auto a, auto b) { return a / b; }, [](const Operation& op, const OptionalTensors& dy) {
    const Tensor a = x_of(op, 0), b = x_of(op, 1);
    return OptionalTensors{reduce_to_shape_of(*dy[0] / b, a), reduce_to_shape_of(-*dy[0] * a / (b * b), b)};
  });
  // NaN when either input is NaN (NumPy, TF). The gradient goes to a where a >= b (ties to a), like
  // TF.
  add_binary(r, "Maximum", [](auto a, auto b) { return kernels::maximum(a, b); }, [](const Operation& op, const OptionalTensors& dy) {
    const Tensor a = x_of(op, 0), b = x_of(op, 1), g = *dy[0], z = zeros_like(g);
    const Tensor mask = greater_equal(a, b);
    return OptionalTensors{reduce_to_shape_of(where(mask, g, z), a), reduce_to_shape_of(where(mask, z, g), b)};
  });
  add_binary(r, "Minimum", [](auto a, auto b) { return kernels::minimum(a, b); }, [](const Operation& op, const OptionalTensors& dy) {
    const Tensor a = x_of(op, 0), b = x_of(op, 1), g = *dy[0], z = zeros_like(g);
    const Tensor mask = less_equal(a, b);
    return OptionalTensors{reduce_to_shape_of(where(mask, g, z), a), reduce_to_shape_of(where(mask, z, g), b)};
  });
  // d(a^b) = (dy * b * a^(b-1), dy * a^b * log(a)) with the log term 0 where a <= 0.
  add_binary<true>(
      r, "Pow", [](auto a, auto b) { using std::pow; using xsimd::pow; return pow(a, b); },
      [](const Operation& op, const OptionalTensors& dy) {
        const Tensor a = x_of(op, 0), b = x_of(op, 1), z = op.output(0), g = *dy[0];
        const Tensor ga = g * b * pow(a, b - 1.0);
        const Tensor positive = greater(a, zeros_like(a));
        const Tensor safe_log = log(where(positive, a, ones_like(a)));
        const Tensor gb = g * z * where(positive, safe_log, zeros_like(a));
        return OptionalTensors{reduce_to_shape_of(ga, a), reduce_to_shape_of(gb, b)};
      });
  add_binary(
      r, "SquaredDifference", [](auto a, auto b) { return (a - b) * (a - b); },
      [](const Operation& op, const OptionalTensors& dy) {
        const Tensor a = x_of(op, 0), b = x_of(op, 1);
        const Tensor ga = *dy[0] * 2.0 * (a - b);
        return OptionalTensors{reduce_to_shape_of(ga, a), reduce_to_shape_of(-ga, b)};
      });

  add_comparison(r, "Equal", [](auto a, auto b) { return a == b; });
  add_comparison(r, "NotEqual", [](auto a, auto b) { return a != b; });
  add_comparison(r, "Less", [](auto a, auto b) { return a < b; });
  add_comparison(r, "LessEqual", [](auto a, auto b) { return a <= b; });
  add_comparison(r, "Greater", [](auto a, auto b) { return a > b; });
  add_comparison(r, "GreaterEqual", [](auto a, auto b) { return a >= b; });
  add_comparison<true>(r, "LogicalAnd", [](bool a, bool b) { return a && b; });
  add_comparison<true>(r, "LogicalOr", [](bool a, bool b) { return a || b; });
  r.add({.type = "LogicalNot",
         .shape_fn = [](const InferenceContext& c) {
           if (c.dtypes[0] != boolean) throw TypeError("LogicalNot needs a bool input");
           return same_as_input(c);
         },
         .kernels = kernels_for<bool>([]<class T>(KernelContext& c) {
           const auto& x = c.input_as<bool>(0);
           auto y = c.allocate_output_like<bool>(0, 0);
           for (std::size_t i = 0; i < x.size(); ++i) y.data()[i] = !x.data()[i];
         }),
         .not_differentiable = true});

  add_unary<false>(r, "Neg", [](auto x) { return -x; }, [](const Operation&, const OptionalTensors& dy) {
    return OptionalTensors{-*dy[0]};
  });
  add_unary<false>(r, "Square", [](auto x) { return x * x; }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{*dy[0] * 2.0 * x_of(op)};
  });
  add_unary<false>(r, "Abs", [](auto x) { using std::abs; using xsimd::abs; return abs(x); }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{*dy[0] * sign(x_of(op))};
  });
  add_unary<false>(r, "Sign", [](auto x) requires std::is_arithmetic_v<decltype(x)> {
              using T = decltype(x);
              return static_cast<T>((T(0) < x) - (x < T(0)));
            },
            [](const Operation& op, const OptionalTensors&) { return OptionalTensors{zeros_like(x_of(op))}; });
  // d sqrt(x) = dy / (2 sqrt(x)); d rsqrt(x) = -dy y^3 / 2; d exp = dy y; d log = dy / x.
  add_unary(r, "Sqrt", [](auto x) { return kernels::root(x); }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{*dy[0] * 0.5 / op.output(0)};
  });
  add_unary(r, "Rsqrt", [](auto x) { return decltype(x)(1) / kernels::root(x); },
            [](const Operation& op, const OptionalTensors& dy) {
              const Tensor y = op.output(0);
              return OptionalTensors{*dy[0] * -0.5 * y * y * y};
            });
  add_unary(r, "Exp", [](auto x) { return kernels::exp(x); }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{*dy[0] * op.output(0)};
  });
  add_unary(r, "Log", [](auto x) { using std::log; using xsimd::log; return log(x); }, [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{*dy[0] / x_of(op)};
  });
  add_unary(r, "Reciprocal", [](auto x) { return decltype(x)(1) / x; }, [](const Operation& op, const OptionalTensors& dy) {
    const Tensor y = op.output(0);
    return OptionalTensors{-*dy[0] * y * y};
  });

  r.add({.type = "Cast",
         .shape_fn = [](const InferenceContext& c) { return detail::one(c.attrs<DType>(), c.shapes[0]); },
         .kernels = kernels_with<DType, KILN_ALL_TYPES>([]<class T>(KernelContext& c, DType to) {
           const auto& x = c.input_as<T>(0);
           visit_dtype(to, [&]<class R>() {
             auto y = c.allocate_output<R>(0, x.shape());
             for (std::size_t i = 0; i < x.size(); ++i) y.data()[i] = static_cast<R>(x.data()[i]);
           });
         }),
         // Only between float types: integers and booleans carry no gradient.
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           const DType src = x_of(op).dtype();
           if (!is_floating(src) || !is_floating(op.output(0).dtype())) return OptionalTensors{std::nullopt};
           return OptionalTensors{cast(*dy[0], src)};
         },
         .attr_codec = attr_codec<DType>([](auto& io, auto& a) { io(a); })});

  r.add({.type = "Select",
         .shape_fn = [](const InferenceContext& c) {
           detail::expect_inputs(c, 3);
           if (c.dtypes[0] != boolean) throw TypeError(std::string("condition must be bool, got ") + dtype_name(c.dtypes[0]));
           if (c.dtypes[1] != c.dtypes[2])
             throw TypeError(std::string("x and y must have the same dtype, got ") + dtype_name(c.dtypes[1]) + " and " +
                             dtype_name(c.dtypes[2]));
           return detail::one(c.dtypes[1], broadcast_shapes(broadcast_shapes(c.shapes[0], c.shapes[1]), c.shapes[2]));
         },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           select_kernel<T>(c);
         }),
         .dispatch_input = 1,
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           const Tensor cnd = x_of(op, 0), g = *dy[0], z = zeros_like(g);
           return OptionalTensors{std::nullopt, reduce_to_shape_of(where(cnd, g, z), x_of(op, 1)),
                                  reduce_to_shape_of(where(cnd, z, g), x_of(op, 2))};
         }});

  // min(max(x, lo), hi) as two broadcasting passes; NaN in x, lo or hi gives NaN. The gradient
  // passes where lo <= x <= hi; lo and hi receive it where x is below / above them.
  r.add({.type = "ClipByValue",
         .shape_fn = [](const InferenceContext& c) {
           detail::expect_inputs(c, 3);
           detail::expect_same_dtype(c);
           return detail::one(c.dtypes[0], broadcast_shapes(broadcast_shapes(c.shapes[0], c.shapes[1]), c.shapes[2]));
         },
         .kernels = kernels_for<KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c) {
           const auto sx = dims_of<T>(c, 0), slo = dims_of<T>(c, 1), shi = dims_of<T>(c, 2);
           const auto out = broadcast3(c, sx, slo, shi), s1 = kernels::broadcast_shape(sx, slo);
           kernels::Scratch<T> lower(std::accumulate(s1.begin(), s1.end(), std::size_t{1}, std::multiplies<>()));
           auto y = c.allocate_output<T>(0, out);
           kernels::broadcast_binary(c.input_as<T>(0).data(), sx, c.input_as<T>(1).data(), slo, lower.data(), s1,
                                     [](auto a, auto b) { return kernels::maximum(a, b); });
           kernels::broadcast_binary(lower.data(), s1, c.input_as<T>(2).data(), shi, y.data(), out,
                                     [](auto a, auto b) { return kernels::minimum(a, b); });
         }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           const Tensor x = x_of(op, 0), lo = x_of(op, 1), hi = x_of(op, 2), g = *dy[0], z = zeros_like(g);
           const Tensor below = less(x, lo), above = greater(x, hi);
           return OptionalTensors{reduce_to_shape_of(where(logical_or(below, above), z, g), x),
                                  reduce_to_shape_of(where(below, g, z), lo), reduce_to_shape_of(where(above, g, z), hi)};
         }});

  r.add({.type = "AddN",
         .shape_fn = detail::add_n_shape,
         .kernels = kernels_for<KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c) {
           const auto& first = c.input_as<T>(0);
           for (int i = 1; i < c.num_inputs(); ++i)
             if (c.input_as<T>(i).shape() != first.shape()) detail::throw_add_n_shapes(c, c.input(0), c.input(i));
           const T* first_data = first.data();
           auto acc = c.forward_input_or_allocate<T>(0, 0);
           if (acc.data() != first_data) std::copy(first_data, first_data + acc.size(), acc.data());
           for (int i = 1; i < c.num_inputs(); ++i)
             kernels::map_binary(acc.data(), 1, c.input_as<T>(i).data(), 1, acc.data(), acc.size(),
                                 [](auto a, auto b) { return a + b; });
         }),
         .gradient = [](const Operation& op, const OptionalTensors& dy) {
           return OptionalTensors(static_cast<std::size_t>(op.inputs().size()), dy[0]);
         },
         .forwards_input = true});
}

}  // namespace kiln
