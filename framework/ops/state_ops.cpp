// State ops: VariableV2 (its value lives in the Session), Assign, AssignAdd, AssignSub.
// Input 0 of the assign ops is a reference to the variable's storage, never a value read.
#include "framework/ops/state_ops.hpp"

#include "framework/ops/common.hpp"

namespace kiln {

namespace {

std::vector<TensorSpec> assign_shape(const InferenceContext& c) {
  detail::expect_inputs(c, 2);
  if (c.dtypes[0] != c.dtypes[1])
    throw TypeError(std::string("Assigning a value of dtype ") + dtype_name(c.dtypes[1]) + " to a variable of dtype " +
                    dtype_name(c.dtypes[0]));
  if (!c.shapes[0].is_compatible_with(c.shapes[1]))
    throw ValueError("Shapes " + c.shapes[0].to_string() + " and " + c.shapes[1].to_string() + " are incompatible");
  return detail::one(c.dtypes[0], c.shapes[0].merge_with(c.shapes[1]));
}

// variable = f(variable, delta), element by element: read from the value before the op, written
// to the variable's storage. After the run's first write to the variable, the value before the op
// is the storage itself, whose buffer mutable_as may replace (by a copy, when a reader still
// shares it; the old buffer can then be freed by that reader at any time): `from` is taken after
// it, so it points into the log's copy (first write) or into the storage (from == to).
template <class T, class F>
void update_variable(KernelContext& c, F f) {
  const Array& before = c.variable_before(0);
  const auto* var = c.node().inputs[0].node;
  if (before.empty())
    throw FailedPreconditionError("Attempting to use uninitialized value " + var->name + " in '" + c.op_name() + "'");
  const auto& delta = c.input_as<T>(1);
  if (!before.same_shape(c.input(1)))
    throw InvalidArgumentError("'" + c.op_name() + "': variable " + var->name + " has shape " +
                               before.shape().to_string() + " but the update has shape " +
                               c.input(1).shape().to_string());
  Array& storage = c.variable_ref(0);
  auto& v = storage.template mutable_as<T>();
  T* p = v.data();
  const T* from = before.view<T>().data();  // after mutable_as: see above
  const T* d = delta.data();
  for (std::size_t i = 0; i < v.size(); ++i) p[i] = f(from[i], d[i]);
  c.set_output(0, storage);
}

}  // namespace

Tensor assign(const Variable& v, const Tensor& value, const std::string& name) {
  return detail::build1("Assign", {v.value(), value}, {}, name);
}
Tensor assign_add(const Variable& v, const Tensor& delta, const std::string& name) {
  return detail::build1("AssignAdd", {v.value(), delta}, {}, name);
}
Tensor assign_sub(const Variable& v, const Tensor& delta, const std::string& name) {
  return detail::build1("AssignSub", {v.value(), delta}, {}, name);
}

void register_state_ops(OpRegistry& r) {
  r.add({.type = "VariableV2",
         .shape_fn = [](const InferenceContext& c) {
           const auto& a = c.attrs<detail::VariableAttrs>();
           return detail::one(a.dtype, a.shape);
         },
         // The executor reads variables from the session's storage; this kernel never runs.
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext&) {}),
         .dispatch_input = -1,
         .not_differentiable = true,
         .is_variable = true,
         // Shape and dtype only: the value lives in each session (checkpoints and frozen graphs
         // hold it; a graph file holds the initializer and collections, framework/graph_io.hpp).
         .attr_codec = attr_codec<detail::VariableAttrs>([](auto& io, auto& a) {
           io(a.shape);
           io(a.dtype);
         })});
  r.add({.type = "Assign",
         .shape_fn = assign_shape,
         .kernels = kernels_for<KILN_ALL_TYPES>([]<class T>(KernelContext& c) {
           const Array& value = c.input(1);
           const Shape& want = c.output_shape(0);
           if (!value.fits(want))
             throw InvalidArgumentError("'" + c.op_name() + "': cannot assign a value of shape " +
                                        value.shape().to_string() + " to a variable of shape " + want.to_string());
           // Into the variable's own buffer when no snapshot shares it (TF's Assign copies too), so
           // that neither the variable nor the value's slot needs a new buffer next run.
           copy_into(c.variable_ref(0), value);
           c.set_output(0, value);
         }),
         .not_differentiable = true,
         .ref_inputs = {0}});
  r.add({.type = "AssignAdd",
         .shape_fn = assign_shape,
         .kernels = kernels_for<KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c) { update_variable<T>(c, [](T a, T b) { return static_cast<T>(a + b); }); }),
         .not_differentiable = true,
         .ref_inputs = {0}});
  r.add({.type = "AssignSub",
         .shape_fn = assign_shape,
         .kernels = kernels_for<KILN_NUMERIC_TYPES>(
             []<class T>(KernelContext& c) { update_variable<T>(c, [](T a, T b) { return static_cast<T>(a - b); }); }),
         .not_differentiable = true,
         .ref_inputs = {0}});
}

}  // namespace kiln
