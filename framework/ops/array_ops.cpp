// Array ops: identity, stop_gradient, shape, broadcast_to / sum_to_shape, reshape, transpose,
// expand_dims, squeeze, size, rank, tile, one_hot, and _SumOfProducts (SumToShape of a Mul, fused
// by the plan; framework/simplify.hpp). Concat, stack and slice: concat_slice_ops.cpp. Static
// shapes use -1 for unknown dimensions throughout; kernels copy contiguous rows along the last
// axis.
#include "framework/kernels/reduce.hpp"
#include "framework/ops/array_layout.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

using namespace array_layout;

// The dims an int32/int64 shape vector holds (no allocation up to rank 4).
kernels::Extents shape_from_tensor(const Array& a, const std::string& op) {
  return visit_dtype(a.dtype(), [&]<class I>() {
    kernels::Extents dims;
    if constexpr (std::is_integral_v<I> && !std::is_same_v<I, bool>) {
      const auto& v = a.as<I>();
      if (v.dimension() != 1) throw InvalidArgumentError("'" + op + "': the shape argument must be a vector");
      for (const I d : v) {
        if (d < 0) throw InvalidArgumentError("'" + op + "': negative dimension in the target shape");
        dims.push_back(static_cast<std::size_t>(d));
      }
    } else {
      throw InvalidArgumentError("'" + op + "': the shape argument must be int32 or int64");
    }
    return dims;
  });
}

// The static shape described by a shape tensor: known when it is a constant, else unknown dims
// of its length.
Shape static_shape_of(const InferenceContext& c, int i) {
  if (c.dtypes[static_cast<std::size_t>(i)] != int32 &&
      c.dtypes[static_cast<std::size_t>(i)] != int64)
    throw TypeError("the shape argument must be int32 or int64");
  const Shape& s = c.shapes[static_cast<std::size_t>(i)];
  if (s.rank() > 1) throw ValueError("the shape argument must be a vector, got " + s.to_string());
  if (const Array* v = c.constant_values[static_cast<std::size_t>(i)]) {
    const auto d = v->to_double();
    std::vector<std::int64_t> dims;
    for (double x : d) dims.push_back(static_cast<std::int64_t>(x));
    return Shape(dims);
  }
  if (s.rank() == 1 && s[0] >= 0) return Shape::unknown_of_rank(static_cast<int>(s[0]));
  return Shape::unknown();
}



/// dst (row-major, dims `out`) gathered from src with per-axis source strides `st` (0 along
/// broadcast axes): each output row reads src with the stride of the last axis.
template <class T>
void gather_rows(const T* src, const Dims& out, const Dims& st, T* dst) {
  const std::size_t len = out.empty() ? 1 : out.back(), step = st.empty() ? 0 : st.back();
  for_each_row(out, [&](const Dims& idx) {
    const T* row = src + dot(idx, st);
    for (std::size_t j = 0; j < len; ++j) *dst++ = row[j * step];
  });
}

// Output 0: input 0's elements with other dims (Reshape, ExpandDims, Squeeze).
template <class T>
void copy_with_dims(KernelContext& c, const Dims& dims) {
  const auto& x = c.input_as<T>(0);
  auto& y = c.allocate_output<T>(0, dims);
  std::copy(x.data(), x.data() + x.size(), y.data());
}

struct TransposeAttrs {
  std::vector<int> perm;  // empty: reverse (only when the rank is unknown at build time)
};
struct SqueezeAttrs {
  std::vector<int> axes;
};
struct TileAttrs {
  std::vector<std::int64_t> multiples;
};
struct OneHotAttrs {
  std::int64_t depth = 0;
  DType dtype = float32;
};

// Reshape's run-time target for n elements: a vector of dimensions, at most one of them -1 (the
// one inferred from n). InvalidArgumentError naming the op for anything else, or for a product
// that does not fit (computed with overflow checks: the dims come from a fed tensor).
Dims reshape_dims(const KernelContext& c, std::size_t n) {
  const Array& s = c.input(1);
  // The message is made only when it is needed (a steady-state run allocates nothing).
  const auto fail = [&](const std::string& what) -> void {
    throw InvalidArgumentError("Input to reshape '" + c.op_name() + "'" + what);
  };
  Dims dims;
  std::int64_t infer = -1;
  visit_dtype(s.dtype(), [&]<class I>() {
    if constexpr (std::is_integral_v<I> && !std::is_same_v<I, bool>) {
      const auto& t = s.as<I>();
      if (t.dimension() != 1) fail(": the shape argument must be a vector, got shape " + s.shape().to_string());
      for (std::size_t i = 0; i < t.size(); ++i) {
        const auto v = static_cast<std::int64_t>(t.data()[i]);
        if (v < -1 || (v == -1 && infer >= 0))
          fail(std::string(": ") + (v < -1 ? "a negative dimension" : "more than one -1") + " in the requested shape " +
               list_text(t));
        if (v == -1) infer = static_cast<std::int64_t>(i);
        dims.push_back(v < 0 ? 1 : static_cast<std::size_t>(v));
      }
    } else {
      fail(": the shape argument must be int32 or int64");
    }
  });
  std::size_t known = 1;
  for (std::size_t d : dims)
    if (__builtin_mul_overflow(known, d, &known)) fail(": the requested shape " + list_text(dims) + " has more than 2^64 elements");
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      fail(" is a tensor with " + std::to_string(n) + " values, which the requested shape " + list_text(dims) + " (-1 at " +
           std::to_string(infer) + ") cannot hold");
    dims[static_cast<std::size_t>(infer)] = n / known;
  } else if (known != n) {
    fail(" is a tensor with " + std::to_string(n) + " values, but the requested shape has " + std::to_string(known));
  }
  return dims;
}

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
  auto& y = c.allocate_output<T>(0, target);
  kernels::Scratch<Acc> acc(y.size());
  kernels::reduce_sum<Acc>(src, sg, mask, acc.data());
  std::transform(acc.data(), acc.data() + y.size(), y.data(), [](Acc v) { return static_cast<T>(v); });
}

}  // namespace

Tensor identity(const Tensor& x, const std::string& name) {
  return detail::build1("Identity", {x}, {}, name);
}
Tensor stop_gradient(const Tensor& x, const std::string& name) {
  return detail::build1("StopGradient", {x}, {}, name);
}
Tensor shape(const Tensor& x, const std::string& name) {
  return detail::build1("Shape", {x}, {}, name);
}
Tensor broadcast_to(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("BroadcastTo", {x, shape}, {}, name);
}
Tensor sum_to_shape(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("SumToShape", {x, shape}, {}, name);
}
Tensor reshape(const Tensor& x, const Tensor& shape, const std::string& name) {
  return detail::build1("Reshape", {x, shape}, {}, name);
}
Tensor reshape(const Tensor& x, const Shape& shape, const std::string& name) {
  if (!shape.has_rank())
    throw ValueError("reshape of '" + x.name() + "': the target shape must have a known rank");
  return reshape(x, detail::int32_vector(shape.dims()), name);
}

Tensor transpose(const Tensor& x, std::vector<int> perm, const std::string& name) {
  if (perm.empty() && x.shape().has_rank())
    for (int i = x.shape().rank(); i-- > 0;) perm.push_back(i);
  return detail::build1("Transpose", {x}, TransposeAttrs{std::move(perm)}, name);
}
Tensor expand_dims(const Tensor& x, int axis, const std::string& name) {
  return detail::build1("ExpandDims", {x}, AxisAttrs{axis}, name);
}
Tensor squeeze(const Tensor& x, std::vector<int> axes, const std::string& name) {
  return detail::build1("Squeeze", {x}, SqueezeAttrs{std::move(axes)}, name);
}
Tensor size(const Tensor& x, const std::string& name) {
  return detail::build1("Size", {x}, {}, name);
}
Tensor rank(const Tensor& x, const std::string& name) {
  return detail::build1("Rank", {x}, {}, name);
}
Tensor tile(const Tensor& x, std::vector<std::int64_t> multiples, const std::string& name) {
  return detail::build1("Tile", {x}, TileAttrs{std::move(multiples)}, name);
}
Tensor one_hot(const Tensor& indices, std::int64_t depth, DType dtype, const std::string& name) {
  return detail::build1("OneHot", {indices}, OneHotAttrs{depth, dtype}, name);
}

void register_array_ops(OpRegistry& r) {
  const auto same = [](const InferenceContext& c) {
    detail::expect_inputs(c, 1);
    return detail::one(c.dtypes[0], c.shapes[0]);
  };
  const auto pass =
      kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) { c.set_output(0, c.input(0)); });
  r.add({.type = "Identity",
         .shape_fn = same,
         .kernels = pass,
         .gradient = [](const Operation&, const OptionalTensors& dy) {
           return OptionalTensors{dy[0]};
         },
         .passes_inputs_through = true});
  r.add({.type = "StopGradient", .shape_fn = same, .kernels = pass, .not_differentiable = true, .passes_inputs_through = true});
  r.add({.type = "Shape",
         .shape_fn =
             [](const InferenceContext& c) {
               return detail::one(int32,
                                  c.shapes[0].has_rank() ? Shape{c.shapes[0].rank()} : Shape{-1});
             },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const auto& s = c.input_as<T>(0).shape();
           auto& out = c.allocate_output<std::int32_t>(0, {s.size()});
           for (std::size_t i = 0; i < s.size(); ++i) out(i) = static_cast<std::int32_t>(s[i]);
         }),
         .not_differentiable = true});

  // BroadcastTo(x, shape) and its adjoint SumToShape(g, shape): the gradient of one is the other.
  r.add({.type = "BroadcastTo",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 2);
               const Shape target = static_shape_of(c, 1);
               broadcast_shapes(c.shapes[0], target);
               return detail::one(c.dtypes[0], target);
             },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const auto& x = c.input_as<T>(0);
           const auto target = shape_from_tensor(c.input(1), c.op_name());
           if (!array_size_ok(dtype_of<T>(), target)) check_array_size(dtype_of<T>(), target, "'" + c.op_name() + "'");
           const Dims sx = x.shape();
           if (kernels::broadcast_shape(sx, target) != target)
             throw InvalidArgumentError("'" + c.op_name() + "': cannot broadcast " +
                                        c.input(0).shape().to_string() + " to the requested shape");
           auto& y = c.allocate_output<T>(0, target);
           gather_rows(x.data(), target, kernels::broadcast_strides(sx, target), y.data());
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{detail::reduce_to_shape_of(*dy[0], op.inputs()[0]),
                                      std::nullopt};
             }});
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

  r.add({.type = "Reshape",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 2);
               Shape target = static_shape_of(c, 1);
               // A run-time target: its dims are unknown (-1 here does not mean "inferred").
               if (!target.has_rank() || !c.constant_values[1])
                 return detail::one(c.dtypes[0], target);
               std::vector<std::int64_t> d = target.dims();
               const auto unknown = std::count(d.begin(), d.end(), -1);
               if (unknown > 1)
                 throw ValueError("at most one dimension of the target shape may be -1, got " +
                                  target.to_string());
               const std::int64_t known = std::accumulate(
                   d.begin(), d.end(), std::int64_t{1},
                   [](std::int64_t a, std::int64_t b) { return b < 0 ? a : a * b; });
               const std::int64_t n = c.shapes[0].num_elements();
               if (n >= 0) {
                 if (unknown == 0 && n != known)
                   throw ValueError("Cannot reshape a tensor with " + std::to_string(n) +
                                    " elements to shape " + target.to_string() + " (" +
                                    std::to_string(known) + " elements)");
                 if (unknown == 1) {
                   if (known == 0 || n % known != 0)
                     throw ValueError("Cannot reshape a tensor with " + std::to_string(n) +
                                      " elements to shape " + target.to_string());
                   for (auto& x : d)
                     if (x < 0) x = n / known;
                 }
               }
               return detail::one(c.dtypes[0], Shape(d));
             },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           copy_with_dims<T>(c, reshape_dims(c, c.input(0).size()));
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{detail::reshape_like(*dy[0], op.inputs()[0]), std::nullopt};
             }});

  // Transpose: output axis k is input axis perm[k], so its source stride is x's stride of perm[k];
  // each output row is gathered with the stride of perm[r-1]. Gradient: the inverse perm.
  r.add({.type = "Transpose",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const auto& perm = c.attrs<TransposeAttrs>().perm;
               std::vector<char> seen(perm.size(), 0);
               for (int p : perm) {
                 if (p < 0 || p >= static_cast<int>(perm.size()) ||
                     seen[static_cast<std::size_t>(p)])
                   throw ValueError("perm " + list_text(perm) + " is not a permutation");
                 seen[static_cast<std::size_t>(p)] = 1;
               }
               const Shape& s = c.shapes[0];
               if (!s.has_rank())
                 return detail::one(c.dtypes[0], perm.empty() ? Shape::unknown()
                                                              : Shape::unknown_of_rank(
                                                                    static_cast<int>(perm.size())));
               if (static_cast<int>(perm.size()) != s.rank())
                 throw ValueError("perm " + list_text(perm) + " does not match rank " +
                                  std::to_string(s.rank()));
               std::vector<std::int64_t> out;
               for (int p : perm) out.push_back(s.dims()[static_cast<std::size_t>(p)]);
               return detail::one(c.dtypes[0], Shape(out));
             },
         .kernels = kernels_with<TransposeAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const TransposeAttrs& attrs) {
           const auto& x = c.input_as<T>(0);
           const Dims in = dims_of(c.input(0)), in_st = strides_of(in);
           std::vector<int> perm = attrs.perm;
           if (perm.empty())
             for (auto i = static_cast<int>(in.size()); i-- > 0;) perm.push_back(i);
           if (perm.size() != in.size())
             bad_input(c, "perm " + list_text(perm) + " does not match rank " +
                              std::to_string(in.size()));
           Dims out(in.size()), st(in.size());
           for (std::size_t k = 0; k < in.size(); ++k)
             out[k] = in[static_cast<std::size_t>(perm[k])],
             st[k] = in_st[static_cast<std::size_t>(perm[k])];
           auto& y = c.allocate_output<T>(0, out);
           gather_rows(x.data(), out, st, y.data());
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const auto& perm = op.attrs<TransposeAttrs>().perm;
               std::vector<int> inverse(perm.size());
               for (std::size_t i = 0; i < perm.size(); ++i)
                 inverse[static_cast<std::size_t>(perm[i])] = static_cast<int>(i);
               return OptionalTensors{transpose(*dy[0], inverse)};
             },
         .attr_codec = attr_codec<TransposeAttrs>([](auto& io, auto& a) { io(a.perm); })});

  // ExpandDims and Squeeze only change the dims: the data is copied as is and the gradient is dy
  // reshaped back to x's (static or run-time) shape.
  const GradFn reshape_back = [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{detail::reshape_like(*dy[0], op.inputs()[0])};
  };
  r.add({.type = "ExpandDims",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const Shape& s = c.shapes[0];
               if (!s.has_rank()) return detail::one(c.dtypes[0], Shape::unknown());
               auto d = s.dims();
               d.insert(d.begin() + detail::resolve_axis(c.attrs<AxisAttrs>().axis, s.rank() + 1),
                        1);
               return detail::one(c.dtypes[0], Shape(d));
             },
         .kernels = kernels_with<AxisAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const AxisAttrs& attrs) {
           Dims d = dims_of<T>(c, 0);
           const auto a = runtime_axis(c, attrs.axis, d.size() + 1);
           insert_dim(d, a, 1);
           copy_with_dims<T>(c, d);
         }),
         .gradient = reshape_back,
         .attr_codec = axis_codec});
  r.add({.type = "Squeeze",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const Shape& s = c.shapes[0];
               const auto& axes = c.attrs<SqueezeAttrs>().axes;
               if (!s.has_rank()) return detail::one(c.dtypes[0], Shape::unknown());
               const auto& d = s.dims();
               std::vector<char> drop(d.size(), 0);
               if (axes.empty()) {
                 // Which dims are 1 is known only when all are.
                 if (!s.is_fully_defined()) return detail::one(c.dtypes[0], Shape::unknown());
                 for (std::size_t k = 0; k < d.size(); ++k) drop[k] = d[k] == 1;
               }
               for (int a : axes) {
                 const auto k = static_cast<std::size_t>(detail::resolve_axis(a, s.rank()));
                 if (d[k] >= 0 && d[k] != 1)
                   throw ValueError("Can not squeeze dim[" + std::to_string(k) +
                                    "], expected a dimension of 1, got " + std::to_string(d[k]));
                 drop[k] = 1;
               }
               std::vector<std::int64_t> out;
               for (std::size_t k = 0; k < d.size(); ++k)
                 if (!drop[k]) out.push_back(d[k]);
               return detail::one(c.dtypes[0], Shape(out));
             },
         .kernels = kernels_with<SqueezeAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const SqueezeAttrs& attrs) {
           const Dims in = dims_of<T>(c, 0);
           const auto& axes = attrs.axes;
           xt::svector<char, 8> drop(in.size(), 0);
           for (std::size_t k = 0; k < in.size(); ++k) drop[k] = axes.empty() && in[k] == 1;
           for (int a : axes) {
             const auto k = runtime_axis(c, a, in.size());
             if (in[k] != 1)
               bad_input(c, "Can not squeeze dim[" + std::to_string(k) +
                                "], expected a dimension of 1, got " + std::to_string(in[k]));
             drop[k] = 1;
           }
           Dims out;
           for (std::size_t k = 0; k < in.size(); ++k)
             if (!drop[k]) out.push_back(in[k]);
           copy_with_dims<T>(c, out);
         }),
         .gradient = reshape_back,
         .attr_codec = attr_codec<SqueezeAttrs>([](auto& io, auto& a) { io(a.axes); })});

  // Concat: per index of the axes before `axis`, the inputs' contiguous chunks one after another.
  // The gradient slices dy back into pieces (ConcatGrad when their extents are known only at run
  // time).
  const auto int_scalar = [](const InferenceContext& c) {
    detail::expect_inputs(c, 1);
    return detail::one(int32, Shape{});
  };
  r.add({.type = "Size",
         .shape_fn = int_scalar,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           c.allocate_output<std::int32_t>(0, kernels::Extents{})() = static_cast<std::int32_t>(c.input(0).size());
         }),
         .not_differentiable = true});
  r.add({.type = "Rank",
         .shape_fn = int_scalar,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           c.set_output(0, static_cast<std::int32_t>(c.input_as<T>(0).dimension()));
         }),
         .not_differentiable = true});

  // Tile: y[i] = x[i mod dims(x)] on each axis, so each output row repeats one input row
  // m_{r-1} times. The gradient views dy as [m_0, d_0, m_1, d_1, ...] and sums over the m axes.
  r.add(
      {.type = "Tile",
       .shape_fn =
           [](const InferenceContext& c) {
             detail::expect_inputs(c, 1);
             const auto& m = c.attrs<TileAttrs>().multiples;
             const Shape& s = c.shapes[0];
             if (std::any_of(m.begin(), m.end(), [](std::int64_t v) { return v < 0; }))
               throw ValueError("multiples " + list_text(m) + " must be non-negative");
             if (!s.has_rank())
               return detail::one(c.dtypes[0], Shape::unknown_of_rank(static_cast<int>(m.size())));
             if (s.rank() != static_cast<int>(m.size()))
               throw ValueError("multiples " + list_text(m) + " do not match rank " +
                                std::to_string(s.rank()));
             std::vector<std::int64_t> out;
             for (std::size_t d = 0; d < m.size(); ++d)
               out.push_back(s.dims()[d] < 0 ? -1 : s.dims()[d] * m[d]);
             return detail::one(c.dtypes[0], Shape(out));
           },
       .kernels = kernels_with<TileAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const TileAttrs& attrs) {
         const auto& x = c.input_as<T>(0);
         const auto& m = attrs.multiples;
         const Dims in = dims_of(c.input(0)), st = strides_of(in);
         if (m.size() != in.size())
           bad_input(
               c, "multiples " + list_text(m) + " do not match rank " + std::to_string(in.size()));
         Dims out(in.size());
         for (std::size_t d = 0; d < in.size(); ++d)
           if (__builtin_mul_overflow(in[d], static_cast<std::size_t>(m[d]), &out[d])) out[d] = SIZE_MAX;
         check_array_size(dtype_of<T>(), out, "'" + c.op_name() + "'");
         T* dst = c.allocate_output<T>(0, out).data();
         const std::size_t len = in.empty() ? 1 : in.back(),
                           reps = m.empty() ? 1 : static_cast<std::size_t>(m.back());
         for_each_row(out, [&](const Dims& idx) {
           std::size_t off = 0;
           for (std::size_t d = 0; d < idx.size(); ++d) off += (idx[d] % in[d]) * st[d];
           for (std::size_t k = 0; k < reps; ++k)
             dst = std::copy(x.data() + off, x.data() + off + len, dst);
         });
       }),
       .gradient =
           [](const Operation& op, const OptionalTensors& dy) {
             const Tensor x = op.inputs()[0];
             const auto& m = op.attrs<TileAttrs>().multiples;
             if (m.empty()) return OptionalTensors{*dy[0]};
             std::vector<int> axes;
             std::vector<std::int64_t> split;
             for (std::size_t d = 0; d < m.size(); ++d) {
               axes.push_back(static_cast<int>(2 * d));
               split.insert(split.end(), {m[d], x.shape().has_rank() ? x.shape().dims()[d] : -1});
             }
             const Tensor view =
                 x.shape().is_fully_defined()
                     ? reshape(*dy[0], Shape(split))
                     : reshape(*dy[0], reshape(stack({detail::int32_vector(m), shape(x)}, 1), Shape{-1}));
             return OptionalTensors{reduce_sum(view, axes)};
           },
         .attr_codec = attr_codec<TileAttrs>([](auto& io, auto& a) { io(a.multiples); })});

  // OneHot: y[..., j] = (indices[...] == j); an index outside [0, depth) gives a row of zeros (TF).
  r.add({.type = "OneHot",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const auto& a = c.attrs<OneHotAttrs>();
               if (c.dtypes[0] != int32 && c.dtypes[0] != int64)
                 throw TypeError(std::string("indices must be int32 or int64, got ") +
                                 dtype_name(c.dtypes[0]));
               if (a.depth < 0)
                 throw ValueError("depth must be non-negative, got " + std::to_string(a.depth));
               const Shape& s = c.shapes[0];
               if (!s.has_rank()) return detail::one(a.dtype, s);
               auto d = s.dims();
               d.push_back(a.depth);
               return detail::one(a.dtype, Shape(d));
             },
         .kernels = kernels_with<OneHotAttrs, std::int32_t, std::int64_t>([]<class I>(KernelContext& c, const OneHotAttrs& a) {
           const auto& idx = c.input_as<I>(0);
           Dims out = dims_of(c.input(0));
           out.push_back(static_cast<std::size_t>(a.depth));
           if (!array_size_ok(a.dtype, out)) check_array_size(a.dtype, out, "'" + c.op_name() + "'");
           c.set_output(0, visit_dtype(a.dtype, [&]<class T>() {
                          xt::xarray<T> y = xt::zeros<T>(out);
                          for (std::size_t i = 0; i < idx.size(); ++i) {
                            const std::int64_t j = idx.data()[i];
                            if (j >= 0 && j < a.depth)
                              y.data()[i * out.back() + static_cast<std::size_t>(j)] = T(1);
                          }
                          return Array(std::move(y));
                        }));
         }),
         .not_differentiable = true,
         .attr_codec = attr_codec<OneHotAttrs>([](auto& io, auto& a) {
           io(a.depth);
           io(a.dtype);
         })});
}

}  // namespace kiln
