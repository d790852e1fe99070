// Joining and cutting arrays: concat, stack and slice, and the internal gradient ops ConcatGrad
// (concat's and stack's inputs' gradients in one op) and SliceGrad (the slice's gradient scattered
// into zeros). Kernels copy contiguous rows along the last axis.
#include "framework/ops/array_layout.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

using namespace array_layout;

struct ConcatGradAttrs {
  int axis = 0;
  bool pack = false;  // the xs lack the axis (stack's gradient): each takes one index of it
};
struct SliceAttrs {
  std::vector<std::int64_t> begin, size;
};

const AttrCodec slice_codec = attr_codec<SliceAttrs>([](auto& io, auto& a) {
  io(a.begin);
  io(a.size);
});

/// begin/size of a slice resolved against the run-time dims (size -1: to the end).
Dims slice_window(const KernelContext& c, const SliceAttrs& a, const Dims& full) {
  if (a.begin.size() != full.size())
    bad_input(c, "slice of " + std::to_string(a.begin.size()) + " dimensions of a rank " +
                     std::to_string(full.size()) + " tensor");
  Dims size(full.size());
  for (std::size_t d = 0; d < full.size(); ++d) {
    const auto b = static_cast<std::size_t>(a.begin[d]);
    size[d] =
        a.size[d] < 0 ? (b <= full[d] ? full[d] - b : 0) : static_cast<std::size_t>(a.size[d]);
    if (b + size[d] > full[d])
      bad_input(c, "slice [" + std::to_string(b) + ", " + std::to_string(b + size[d]) +
                       ") of dimension " + std::to_string(d) + " exceeds its size " +
                       std::to_string(full[d]));
  }
  return size;
}

/// Visits the window begin + [0, size) of an array of dims `full`, one contiguous row at a time:
/// f(offset in full, offset in the window, row length).
template <class F>
void for_each_window_row(const Dims& full, const std::vector<std::int64_t>& begin, const Dims& size,
                         F f) {
  const Dims st = strides_of(full);
  Dims b(begin.begin(), begin.end());
  const std::size_t len = size.empty() ? 1 : size.back(), last = b.empty() ? 0 : b.back();
  std::size_t w = 0;
  for_each_row(size, [&](const Dims& idx) {
    std::size_t off = last;
    for (std::size_t d = 0; d < idx.size(); ++d) off += (b[d] + idx[d]) * st[d];
    f(off, w, len);
    w += len;
  });
}

/// Concat / stack viewed as rows: with the inputs' dims (after inserting the stacked axis for
/// pack) equal except along `axis`, out = [outer, sum_i chunk_i] where input i contributes a
/// contiguous chunk of dims_i[axis] * inner elements per outer index. Returns the output dims.
struct ConcatLayout {
  Dims out;
  std::size_t outer = 1;
  std::vector<std::size_t> chunks;
};
ConcatLayout concat_layout(const KernelContext& c, const std::vector<Dims>& parts, int axis,
                           bool pack) {
  const std::size_t r = parts[0].size() + (pack ? 1 : 0);
  const std::size_t a = runtime_axis(c, axis, r);
  ConcatLayout l;
  for (Dims d : parts) {
    if (pack) insert_dim(d, a, 1);
    if (l.out.empty()) l.out = d, l.out[a] = 0;
    bool same = d.size() == r;
    for (std::size_t k = 0; same && k < r; ++k) same = k == a || d[k] == l.out[k];
    if (!same)
      bad_input(c, "inputs must have equal dimensions except along axis " + std::to_string(a));
    l.out[a] += d[a];
    l.chunks.push_back(product(d.begin() + static_cast<std::ptrdiff_t>(a), d.end()));
  }
  l.outer = product(l.out.begin(), l.out.begin() + static_cast<std::ptrdiff_t>(a));
  return l;
}

template <class T>
void concat_kernel(KernelContext& c, int axis, bool pack) {
  std::vector<Dims> parts;
  for (int i = 0; i < c.num_inputs(); ++i) parts.push_back(dims_of(c.input(i)));
  const ConcatLayout l = concat_layout(c, parts, axis, pack);
  T* dst = c.allocate_output<T>(0, l.out).data();
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const T* src = c.input_as<T>(static_cast<int>(i)).data() + o * l.chunks[i];
      dst = std::copy(src, src + l.chunks[i], dst);
    }
}

/// The gradients of concat's (stack's) inputs through one ConcatGrad op.
OptionalTensors concat_grad(const Tensor& g, const std::vector<Tensor>& xs, int axis, bool pack) {
  std::vector<Tensor> inputs{g};
  inputs.insert(inputs.end(), xs.begin(), xs.end());
  const auto outs = build_op("ConcatGrad", inputs, ConcatGradAttrs{axis, pack}).outputs();
  return OptionalTensors(outs.begin(), outs.end());
}

/// Static shape of concat along `axis`: dims merged across inputs, the axis summed.
Shape concat_shape(const InferenceContext& c, int axis) {
  int r = -1;
  for (const Shape& s : c.shapes)
    if (s.has_rank()) {
      if (r >= 0 && s.rank() != r)
        throw ValueError("Shape must be rank " + std::to_string(r) + " but is rank " +
                         std::to_string(s.rank()));
      r = s.rank();
    }
  if (r < 0) return Shape::unknown();
  if (r == 0) throw ValueError("Can't concatenate scalars (use stack instead)");
  const auto a = static_cast<std::size_t>(detail::resolve_axis(axis, r));
  std::vector<std::int64_t> out(static_cast<std::size_t>(r), -1);
  std::int64_t sum = 0;
  for (const Shape& s : c.shapes) {
    if (!s.has_rank()) {
      sum = -1;
      continue;
    }
    for (std::size_t d = 0; d < out.size(); ++d) {
      const std::int64_t v = s.dims()[d];
      if (d == a)
        sum = (sum < 0 || v < 0) ? -1 : sum + v;
      else if (out[d] < 0)
        out[d] = v;
      else if (v >= 0 && v != out[d])
        throw ValueError("Dimension " + std::to_string(d) +
                         " in both shapes must be equal, but are " + std::to_string(out[d]) +
                         " and " + std::to_string(v));
    }
  }
  out[a] = sum;
  return Shape(out);
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int axis, const std::string& name) {
  if (xs.empty())
    throw ValueError("concat" + (name.empty() ? "" : " '" + name + "'") +
                     ": needs at least one tensor");
  return detail::build1("ConcatV2", xs, AxisAttrs{axis}, name);
}
Tensor stack(const std::vector<Tensor>& xs, int axis, const std::string& name) {
  if (xs.empty())
    throw ValueError("stack" + (name.empty() ? "" : " '" + name + "'") +
                     ": needs at least one tensor");
  return detail::build1("Pack", xs, AxisAttrs{axis}, name);
}
Tensor slice(const Tensor& x, std::vector<std::int64_t> begin, std::vector<std::int64_t> size,
             const std::string& name) {
  return detail::build1("Slice", {x}, SliceAttrs{std::move(begin), std::move(size)}, name);
}

void register_concat_slice_ops(OpRegistry& r) {
  r.add({.type = "ConcatV2",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_same_dtype(c);
               return detail::one(c.dtypes[0], concat_shape(c, c.attrs<AxisAttrs>().axis));
             },
         .kernels = kernels_with<AxisAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const AxisAttrs& attrs) {
           concat_kernel<T>(c, attrs.axis, false);
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const auto xs = op.inputs();
               const int r = op.output(0).shape().rank(), axis = op.attrs<AxisAttrs>().axis;
               const bool static_pieces =
                   r > 0 && std::all_of(xs.begin(), xs.end(), [&](const Tensor& x) {
                     return x.shape().has_rank() && x.shape()[axis] >= 0;
                   });
               if (!static_pieces) return concat_grad(*dy[0], xs, axis, false);
               const auto a = static_cast<std::size_t>(detail::resolve_axis(axis, r));
               std::vector<std::int64_t> begin(static_cast<std::size_t>(r), 0),
                   size(static_cast<std::size_t>(r), -1);
               OptionalTensors dx;
               for (const Tensor& x : xs) {
                 size[a] = x.shape()[axis];
                 dx.push_back(slice(*dy[0], begin, size));
                 begin[a] += size[a];
               }
               return dx;
             },
         .attr_codec = axis_codec});
  // Pack: concat of the inputs each given a size-1 axis. The gradient unstacks dy: piece i is dy
  // sliced at index i of the axis, reshaped to x_i's shape.
  r.add({.type = "Pack",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_same_dtype(c);
               Shape s = Shape::unknown();
               for (const Shape& o : c.shapes) s = s.merge_with(o);
               if (!s.has_rank()) return detail::one(c.dtypes[0], s);
               auto d = s.dims();
               d.insert(d.begin() + detail::resolve_axis(c.attrs<AxisAttrs>().axis, s.rank() + 1),
                        c.num_inputs());
               return detail::one(c.dtypes[0], Shape(d));
             },
         .kernels = kernels_with<AxisAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const AxisAttrs& attrs) {
           concat_kernel<T>(c, attrs.axis, true);
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const auto xs = op.inputs();
               const int r = op.output(0).shape().rank(), axis = op.attrs<AxisAttrs>().axis;
               if (r < 0) return concat_grad(*dy[0], xs, axis, true);
               const auto a = static_cast<std::size_t>(detail::resolve_axis(axis, r));
               std::vector<std::int64_t> begin(static_cast<std::size_t>(r), 0),
                   size(static_cast<std::size_t>(r), -1);
               size[a] = 1;
               OptionalTensors dx;
               for (const Tensor& x : xs) {
                 dx.push_back(detail::reshape_like(slice(*dy[0], begin, size), x));
                 ++begin[a];
               }
               return dx;
             },
         .attr_codec = axis_codec});
  // ConcatGrad(g, x_0, ..., x_{n-1}): the inverse of concat (with pack: of stack) along the axis;
  // output i is g's chunk of x_i's extent, shaped like x_i. Its gradient concatenates (stacks) the
  // outputs' gradients back.
  r.add({.type = "ConcatGrad",
         .shape_fn =
             [](const InferenceContext& c) {
               std::vector<TensorSpec> out;
               for (std::size_t i = 1; i < c.shapes.size(); ++i)
                 out.push_back({c.dtypes[0], c.shapes[i]});
               return out;
             },
         .kernels = kernels_with<ConcatGradAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const ConcatGradAttrs& a) {
           std::vector<Dims> parts;
           for (int i = 1; i < c.num_inputs(); ++i) parts.push_back(dims_of(c.input(i)));
           const ConcatLayout l = concat_layout(c, parts, a.axis, a.pack);
           if (l.out != dims_of(c.input(0)))
             bad_input(c, "the gradient " + c.input(0).shape().to_string() +
                              " does not match the concatenated pieces");
           std::vector<T*> ys;
           for (std::size_t i = 0; i < parts.size(); ++i) ys.push_back(c.allocate_output<T>(static_cast<int>(i), parts[i]).data());
           const T* src = c.input_as<T>(0).data();
           for (std::size_t o = 0; o < l.outer; ++o)
             for (std::size_t i = 0; i < ys.size(); src += l.chunks[i++])
               std::copy(src, src + l.chunks[i], ys[i] + o * l.chunks[i]);
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const auto& a = op.attrs<ConcatGradAttrs>();
               std::vector<Tensor> gs;
               for (const auto& g : dy) gs.push_back(*g);
               OptionalTensors dx(op.inputs().size());
               dx[0] = a.pack ? stack(gs, a.axis) : concat(gs, a.axis);
               return dx;
             },
         .attr_codec = attr_codec<ConcatGradAttrs>([](auto& io, auto& a) {
           io(a.axis);
           io(a.pack);
         })});

  // Slice: the window begin + [0, size) (size -1: to the end), copied row by row. The gradient
  // pads dy back into zeros of x's run-time shape (SliceGrad), whose own gradient slices again.
  r.add({.type = "Slice",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 1);
               const auto& a = c.attrs<SliceAttrs>();
               const Shape& s = c.shapes[0];
               if (a.begin.size() != a.size.size())
                 throw ValueError("begin " + list_text(a.begin) + " and size " + list_text(a.size) +
                                  " differ in length");
               if (s.has_rank() && s.rank() != static_cast<int>(a.begin.size()))
                 throw ValueError("Shape must be rank " + std::to_string(a.begin.size()) +
                                  " but is rank " + std::to_string(s.rank()));
               std::vector<std::int64_t> out;
               for (std::size_t d = 0; d < a.begin.size(); ++d) {
                 const std::int64_t b = a.begin[d], n = a.size[d],
                                    dim = s.has_rank() ? s.dims()[d] : -1;
                 if (b < 0 || n < -1 || (dim >= 0 && (n < 0 ? b > dim : b + n > dim)))
                   throw ValueError("slice begin " + list_text(a.begin) + ", size " +
                                    list_text(a.size) + " is out of bounds in dimension " +
                                    std::to_string(d));
                 out.push_back(n >= 0 ? n : dim >= 0 ? dim - b : -1);
               }
               return detail::one(c.dtypes[0], Shape(out));
             },
         .kernels = kernels_with<SliceAttrs, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const SliceAttrs& a) {
           const Dims full = dims_of(c.input(0)), size = slice_window(c, a, full);
           const T* x = c.input_as<T>(0).data();
           auto y = c.allocate_output<T>(0, size);
           for_each_window_row(full, a.begin, size,
                               [&](std::size_t off, std::size_t w, std::size_t len) {
                                 std::copy(x + off, x + off + len, y.data() + w);
                               });
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               return OptionalTensors{detail::build1("SliceGrad", {*dy[0], op.inputs()[0]},
                                                     op.attrs<SliceAttrs>(), "")};
             },
         .attr_codec = slice_codec});
  r.add({.type = "SliceGrad",
         .shape_fn =
             [](const InferenceContext& c) {
               detail::expect_inputs(c, 2);
               return detail::one(c.dtypes[0], c.shapes[1]);
             },
         .kernels = kernels_with<SliceAttrs, KILN_NUMERIC_TYPES>([]<class T>(KernelContext& c, const SliceAttrs& a) {
           const Dims full = dims_of(c.input(1)), size = slice_window(c, a, full);
           if (dims_of(c.input(0)) != size)
             bad_input(
                 c, "the gradient " + c.input(0).shape().to_string() + " does not match the slice");
           const T* g = c.input_as<T>(0).data();
           auto y = c.allocate_output<T>(0, full);
           std::fill(y.begin(), y.end(), T(0));
           for_each_window_row(full, a.begin, size,
                               [&](std::size_t off, std::size_t w, std::size_t len) {
                                 std::copy(g + w, g + w + len, y.data() + off);
                               });
         }),
         .gradient =
             [](const Operation& op, const OptionalTensors& dy) {
               const auto& a = op.attrs<SliceAttrs>();
               return OptionalTensors{slice(*dy[0], a.begin, a.size), std::nullopt};
             },
         .attr_codec = slice_codec});
}

}  // namespace kiln
