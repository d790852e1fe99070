// SumToShape(g, shape), BroadcastTo's adjoint (array_ops.cpp): each element of the target sums
// the elements of g that broadcasting maps onto it. And its fused forms, which the plan runs in
// place of a SumToShape and the elementwise ops feeding it (framework/simplify.hpp): the values
// are formed as they are summed, never stored. Registered in register_sum_to_shape_ops.
#include "framework/kernels/elementwise.hpp"
#include "framework/kernels/reduce.hpp"
#include "framework/ops/array_layout.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

using namespace array_layout;

// SumToShape's static output: the target (input i), which must broadcast to the input shape `in`
// where both are known.
Shape sum_to_shape_target(const InferenceContext& c, const Shape& in, int i) {
  const Shape target = static_shape_of(c, i);
  if (!target.has_rank() || !in.has_rank()) return target;
  bool ok = target.rank() <= in.rank();
  for (int k = 0; ok && k < target.rank(); ++k) {
    const std::int64_t t = target[k], x = in[in.rank() - target.rank() + k];
    ok = t < 0 || x < 0 || t == 1 || t == x;
  }
  if (!ok) throw ValueError("cannot reduce " + in.to_string() + " to " + target.to_string() + ": it does not broadcast to it");
  return target;
}

// SumToShape's reduction of g (dims sg), whose values `src` gives (g's buffer, or the products
// of _SumOfProducts), to `target`: each output element sums the elements that broadcasting maps
// onto it, over g's leading axes and the axes where the target has 1, pairwise in double (floats)
// or int64 (kernels/reduce.hpp); the kept axes are in the target's order (target == sg: a copy).
template <class T, class Src>
void sum_to_shape(KernelContext& c, Src src, const Dims& sg, const kernels::Extents& target) {
  if (target.size() > sg.size() || kernels::broadcast_shape(target, sg) != sg)  // target broadcasts to sg
    throw InvalidArgumentError("'" + c.op_name() + "': cannot reduce " + c.input(0).shape().to_string() +
                               " to the requested shape");
  const std::size_t lead = sg.size() - target.size();
  kernels::AxisMask mask(sg.size(), 1);
  for (std::size_t k = lead; k < sg.size(); ++k) mask[k] = target[k - lead] == 1 && sg[k] != 1;
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::int64_t>;
  auto y = c.allocate_output<T>(0, target);
  kernels::Scratch<Acc> acc(y.size());
  kernels::reduce_sum<Acc>(src, sg, mask, acc.data());
  std::transform(acc.data(), acc.data() + y.size(), y.data(), [](Acc v) { return static_cast<T>(v); });
}

// A fused sum's broadcast operand (of shape `m`, named `what`) must broadcast to `s`, the shape of
// the values (named `whose`), where both are known.
void check_broadcasts_to(const Shape& m, const Shape& s, const std::string& what, const std::string& whose) {
  const auto error = [&] {
    return ValueError(what + " of shape " + m.to_string() + " does not broadcast to " + whose + " " + s.to_string());
  };
  try {
    if (!s.is_compatible_with(broadcast_shapes(m, s))) throw error();
  } catch (const ValueError&) {
    throw error();
  }
}

// m broadcasts to x's shape at run time.
template <class T>
bool fits_over(TensorView<const T> m, TensorView<const T> x) {
  const kernels::Extents sx(x.shape().begin(), x.shape().end()), sm(m.shape().begin(), m.shape().end());
  return kernels::broadcastable(sm, sx) && kernels::broadcast_shape(sm, sx) == sx;
}

// SumToShape of the values a Src (kernels::BroadcastSource) forms from a, b (a's shape, or null)
// and m broadcast to a's shape, to the target given by input `target`.
template <class Src, class T>
void sum_broadcast_source(KernelContext& c, TensorView<const T> a, const T* b,
                          TensorView<const T> m, int target) {
  const kernels::Extents sa(a.shape().begin(), a.shape().end()), sm(m.shape().begin(), m.shape().end());
  kernels::BroadcastLoops l = kernels::broadcast_loops(sm, sa, sa);
  if (l.dims.empty()) l.dims = {1}, l.st_a = {0};  // one element
  sum_to_shape<T>(c, Src{a.data(), b, m.data(), &l.dims, &l.st_a}, a.shape(), shape_from_tensor(c.input(target), c.op_name()));
}

}  // namespace

Tensor sum_to_shape(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("SumToShape", {x, shape}, {}, name);
}

void register_sum_to_shape_ops(OpRegistry& r) {
  r.add({.type = "SumToShape",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 2);
               return detail::one(c.dtypes[0], sum_to_shape_target(c, c.shapes[0], 1));
             },
         .kernels = kernels_for<KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c) {
           const auto& g = c.input_as<T>(0);
           const auto target = shape_from_tensor(c.input(1), c.op_name());
           const Dims sg = g.shape();
           if (target == sg) return c.set_output(0, c.input(0));
           sum_to_shape<T>(c, g.data(), sg, target);
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{broadcast_to(*dy[0], shape(op.inputs()[0])), std::nullopt};
             },
         .passes_inputs_through = true});  // g itself when it has the target shape
  // SumToShape(Mul(a, b), shape) in one op, which the plan runs in place of the pair when nothing
  // else reads the product (framework/simplify.hpp): a and b of one shape, their products summed
  // as they are read (kernels::ProductOf), never stored; bit for bit the pair's result. float32
  // only: a float64 product added to a double sum could be contracted into an FMA, which would
  // skip the product's rounding. Never built by gradients, so not differentiable.
  r.add({.type = "_SumOfProducts",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 3);
               if (c.dtypes[1] != c.dtypes[0] || !c.shapes[0].is_compatible_with(c.shapes[1]))
                 throw ValueError("the factors must have one dtype and shape, got " + c.shapes[0].to_string() +
                                  " and " + c.shapes[1].to_string());
               return detail::one(c.dtypes[0], sum_to_shape_target(c, c.shapes[0], 2));
             },
         .kernels = kernels_for<float>([]<class T>(KernelContext& c) {
           const auto &a = c.input_as<T>(0), &b = c.input_as<T>(1);
           if (a.shape() != b.shape())
             throw InvalidArgumentError("'" + c.op_name() + "': the factors' shapes " + c.input(0).shape().to_string() +
                                        " and " + c.input(1).shape().to_string() + " differ");
           sum_to_shape<T>(c, kernels::ProductOf<T>{a.data(), b.data()}, a.shape(), shape_from_tensor(c.input(2), c.op_name()));
         }),
         .not_differentiable = true});

  // SumToShape(Mul(Sub(x, m), b), shape) (either factor order) in one op, which the plan runs in
  // place of the three when nothing else reads the difference or the product (framework/
  // simplify.hpp): x and b of one shape, m broadcast to it (a per-channel mean), each
  // (x - m) * b rounded as Sub and Mul round it and summed as SumToShape sums (the values formed a
  // leaf block at a time: kernels::CenteredProducts), never stored; bit for bit the three ops'
  // result. float32 only, as _SumOfProducts. Never built by gradients, so not differentiable.
  r.add({.type = "_SumOfCenteredProducts",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 4);
               if (c.dtypes[1] != c.dtypes[0] || c.dtypes[2] != c.dtypes[0])
                 throw TypeError("x, the mean and the other factor must have one dtype");
               if (!c.shapes[0].is_compatible_with(c.shapes[2]))
                 throw ValueError("x and the other factor must have one shape, got " + c.shapes[0].to_string() +
                                  " and " + c.shapes[2].to_string());
               const Shape s = c.shapes[0].merge_with(c.shapes[2]);
               check_broadcasts_to(c.shapes[1], s, "the mean", "x's");
               return detail::one(c.dtypes[0], sum_to_shape_target(c, s, 3));
             },
         .kernels = kernels_for<float>([]<class T>(KernelContext& c) {
           const auto &x = c.input_as<T>(0), &m = c.input_as<T>(1), &b = c.input_as<T>(2);
           if (x.shape() != b.shape() || !fits_over(m, x))
             throw InvalidArgumentError("'" + c.op_name() + "': x " + c.input(0).shape().to_string() + ", the mean " +
                                        c.input(1).shape().to_string() + " and the other factor " +
                                        c.input(2).shape().to_string() + " do not fit together");
           sum_broadcast_source<kernels::CenteredProducts<T>>(c, x, b.data(), m, 3);
         }),
         .not_differentiable = true});

  // SumToShape(Mul(a, s), shape) in one op where s broadcasts to a's shape (a per-channel scale),
  // which the plan runs in place of the pair when the product is not otherwise stored
  // (framework/simplify.hpp): each a * s rounded as the Mul rounds it and summed as SumToShape
  // sums (kernels::ScaledValues), never stored; bit for bit the pair's result. float32 only, as
  // _SumOfProducts. Never built by gradients, so not differentiable.
  r.add({.type = "_SumOfScaledValues",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 3);
               if (c.dtypes[1] != c.dtypes[0]) throw TypeError("the values and the scale must have one dtype");
               check_broadcasts_to(c.shapes[1], c.shapes[0], "the scale", "the values'");
               return detail::one(c.dtypes[0], sum_to_shape_target(c, c.shapes[0], 2));
             },
         .kernels = kernels_for<float>([]<class T>(KernelContext& c) {
           const auto &a = c.input_as<T>(0), &s = c.input_as<T>(1);
           if (!fits_over(s, a))
             throw InvalidArgumentError("'" + c.op_name() + "': the scale of shape " + c.input(1).shape().to_string() +
                                        " does not broadcast to the values' " + c.input(0).shape().to_string());
           sum_broadcast_source<kernels::ScaledValues<T>>(c, a, static_cast<const T*>(nullptr), s, 2);
         }),
         .not_differentiable = true});
}

}  // namespace kiln
