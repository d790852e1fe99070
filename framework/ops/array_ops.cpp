// Array ops: identity, stop_gradient, shape, broadcast_to, reshape, transpose, expand_dims,
// squeeze, size, rank, tile, one_hot. SumToShape (BroadcastTo's adjoint) and its fused forms:
// sum_to_shape_ops.cpp; concat, stack and slice: concat_slice_ops.cpp. Static shapes use -1 for
// unknown dimensions throughout; kernels copy contiguous rows along the last axis.
#include "framework/ops/array_layout.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

using namespace array_layout;


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
  auto y = c.allocate_output<T>(0, dims);
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
      const auto t = s.view<I>();
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
           auto out = c.allocate_output<std::int32_t>(0, {s.size()});
           for (std::size_t i = 0; i < s.size(); ++i) out[i] = static_cast<std::int32_t>(s[i]);
         }),
         .not_differentiable = true});

  // BroadcastTo(x, shape) and its adjoint SumToShape(g, shape) (sum_to_shape_ops.cpp): the
  // gradient of one is the other.
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
           auto y = c.allocate_output<T>(0, target);
           gather_rows(x.data(), target, kernels::broadcast_strides(sx, target), y.data());
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{detail::reduce_to_shape_of(*dy[0], op.inputs()[0]),
                                      std::nullopt};
             }});
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
           auto y = c.allocate_output<T>(0, out);
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
