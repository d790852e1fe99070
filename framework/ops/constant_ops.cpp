// Sources of values: Placeholder, PlaceholderWithDefault, Const, ZerosLike, OnesLike.
#include "framework/ops/common.hpp"

namespace kiln {

namespace {
struct PlaceholderAttrs {
  DType dtype;
  Shape shape;
};

template <class T>
Array filled(const std::vector<std::size_t>& shape, T value) {
  xt::xarray<T> a = xt::xarray<T>::from_shape(shape);
  a.fill(value);
  return Array(std::move(a));
}

const AttrCodec placeholder_codec = attr_codec<PlaceholderAttrs>([](auto& io, auto& a) {
  io(a.dtype);
  io(a.shape);
});

Array filled(DType dtype, const Shape& shape, double value) {
  if (!shape.is_fully_defined())
    throw ValueError("a constant needs a fully defined shape, got " + shape.to_string());
  shape.num_bytes(dtype);  // ValueError when the shape cannot be held
  std::vector<std::size_t> dims(shape.dims().begin(), shape.dims().end());
  return visit_dtype(dtype, [&]<class T>() { return filled<T>(dims, static_cast<T>(value)); });
}
}  // namespace

Tensor placeholder(DType dtype, Shape shape, const std::string& name) {
  return detail::build1("Placeholder", {}, PlaceholderAttrs{dtype, std::move(shape)}, name);
}
Tensor placeholder_with_default(const Tensor& input, Shape shape, const std::string& name) {
  return detail::build1("PlaceholderWithDefault", {input}, PlaceholderAttrs{input.dtype(), std::move(shape)}, name);
}
Tensor constant(const Array& value, const std::string& name) {
  if (value.empty()) throw ValueError("constant: the value is an empty Array");
  return detail::build1("Const", {}, value, name);
}
Tensor scalar(double value, DType dtype, const std::string& name) {
  return constant(filled(dtype, Shape{}, value), name);
}
Tensor scalar_like(double value, const Tensor& like) { return scalar(value, like.dtype(), "y"); }
Tensor fill(const Shape& shape, double value, DType dtype, const std::string& name) {
  try {
    return constant(filled(dtype, shape, value), name.empty() ? "Fill" : name);
  } catch (const ValueError& e) {
    throw ValueError(std::string("fill '") + (name.empty() ? "Fill" : name) + "': " + e.what());
  }
}
Tensor zeros(const Shape& shape, DType dtype, const std::string& name) {
  return fill(shape, 0.0, dtype, name.empty() ? "zeros" : name);
}
Tensor ones(const Shape& shape, DType dtype, const std::string& name) {
  return fill(shape, 1.0, dtype, name.empty() ? "ones" : name);
}
Tensor zeros_like(const Tensor& x, const std::string& name) { return detail::build1("ZerosLike", {x}, {}, name); }
Tensor ones_like(const Tensor& x, const std::string& name) { return detail::build1("OnesLike", {x}, {}, name); }

void register_constant_ops(OpRegistry& r) {
  r.add({.type = "Placeholder",
         .shape_fn = [](const InferenceContext& c) {
           const auto& a = c.attrs<PlaceholderAttrs>();
           return detail::one(a.dtype, a.shape);
         },
         // Runs only when needed and not fed.
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           throw InvalidArgumentError("You must feed a value for placeholder tensor '" + c.op_name() +
                                      "' with dtype " + dtype_name(dtype_of<T>()) + " and shape " +
                                      c.output_shape(0).to_string());
         }),
         .dispatch_input = -1,
         .not_differentiable = true,
         .is_placeholder = true,
         .attr_codec = placeholder_codec});
  r.add({.type = "PlaceholderWithDefault",
         .shape_fn = [](const InferenceContext& c) {
           const auto& a = c.attrs<PlaceholderAttrs>();
           if (!a.shape.is_compatible_with(c.shapes[0]))
             throw ValueError("default value of shape " + c.shapes[0].to_string() + " does not fit " + a.shape.to_string());
           return detail::one(a.dtype, a.shape);
         },
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) { c.set_output(0, c.input(0)); }),
         .not_differentiable = true,
         .is_placeholder = true,
         .passes_inputs_through = true,
         .attr_codec = placeholder_codec});
  r.add({.type = "Const",
         .shape_fn = [](const InferenceContext& c) {
           const auto& a = c.attrs<Array>();
           return detail::one(a.dtype(), a.shape());
         },
         .kernels = kernels_with<Array, KILN_ALL_TYPES>([]<class T>(KernelContext& c, const Array& value) { c.set_output(0, value); }),
         .dispatch_input = -1,
         .not_differentiable = true,
         .attr_codec = attr_codec<Array>([](auto& io, auto& a) { io(a); })});
  const auto like = [](const InferenceContext& c) {
    detail::expect_inputs(c, 1);
    return detail::one(c.dtypes[0], c.shapes[0]);
  };
  r.add({.type = "ZerosLike",
         .shape_fn = like,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           auto y = c.allocate_output_like<T>(0, 0);
           std::fill(y.data(), y.data() + y.size(), T(0));
         }),
         .not_differentiable = true});
  r.add({.type = "OnesLike",
         .shape_fn = like,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           auto y = c.allocate_output_like<T>(0, 0);
           std::fill(y.data(), y.data() + y.size(), T(1));
         }),
         .not_differentiable = true});
}

}  // namespace kiln
