// Numerics checks: CheckNumerics (TF's tf.debugging.check_numerics) and add_check_numerics_ops
// (TF1's tf.add_check_numerics_ops), to find where a NaN or an infinity first appears.
#include <cmath>

#include "framework/nn_ops.hpp"
#include "framework/ops/common.hpp"

namespace kiln {

namespace {

struct CheckNumericsAttrs {
  std::string message;
};

// Passes x through (sharing its buffer). x - x is 0 for finite x and NaN for NaN and +-Inf, so
// the first pass is one vectorizable compare per element; only a failing tensor is classified.
template <class T>
void check_numerics_kernel(KernelContext& c, const CheckNumericsAttrs& attrs) {
  const auto& x = c.input_as<T>(0);
  const T* p = x.data();
  bool finite = true;
  for (std::size_t i = 0; i < x.size(); ++i) finite &= (p[i] - p[i]) == T(0);
  if (!finite) {
    bool nan = false, inf = false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      nan = nan || std::isnan(p[i]);
      inf = inf || std::isinf(p[i]);
    }
    const char* what = nan && inf ? "Inf and NaN" : nan ? "NaN" : "Inf";
    throw InvalidArgumentError("CheckNumerics '" + c.op_name() + "': " +
                               attrs.message + " : Tensor had " + what +
                               " values");
  }
  c.set_output(0, c.input(0));
}

// Ops whose outputs may be dead in a run (TF's untaken cond branch): Switch outputs, ops built in a
// cond branch, and every op fed (by data or control) by one of them, except Merge, which is live
// when one input is. The graph's ops are in creation order, so inputs come first.
std::vector<char> may_be_dead(const Graph& g) {
  std::vector<char> dead(static_cast<std::size_t>(g.num_nodes()), 0);
  for (const Operation& op : g.operations()) {
    const detail::Node* n = op.node();
    bool d = op.type() == "Switch" || n->cond_ctx != nullptr;
    if (op.type() != "Merge") {
      for (const auto& in : n->inputs) d = d || (in.node->id < n->id && dead[static_cast<std::size_t>(in.node->id)]);
      for (const auto* ctl : n->control_inputs)
        d = d || (ctl->id < n->id && dead[static_cast<std::size_t>(ctl->id)]);
    }
    dead[static_cast<std::size_t>(n->id)] = d;
  }
  return dead;
}

}  // namespace

namespace nn {
Tensor check_numerics(const Tensor& x, const std::string& message, const std::string& name) {
  return detail::build1("CheckNumerics", {x}, CheckNumericsAttrs{message}, name);
}
}  // namespace nn

// TF1: one CheckNumerics per floating-point output, message "op:index", each with a control
// dependency on the previous one so that they run in creation order: the first to fail names the
// first op (in creation order, so before anything computed from it) whose output has a NaN or an
// Inf. Skipped, because checking them would change the run: outputs of variables and of ops
// writing to one (TF1 skips their reference dtypes too), of earlier checks, and of ops that may be
// dead (inside a cond; TF1 raises ValueError for graphs with control flow; here their values are
// checked where they leave the cond, at the Merge).
Operation add_check_numerics_ops() {
  Graph& g = get_default_graph();
  const auto dead = may_be_dead(g);
  std::optional<Operation> last;
  for (const Operation& op : g.operations()) {
    const detail::Node* n = op.node();
    if (n->def->is_variable || !n->def->ref_inputs.empty() || op.type() == "CheckNumerics" ||
        dead[static_cast<std::size_t>(n->id)])
      continue;
    for (const Tensor& out : op.outputs()) {
      if (!is_floating(out.dtype())) continue;
      std::optional<control_dependencies> after;
      if (last) after.emplace(std::vector<GraphElement>{*last});
      last = nn::check_numerics(out, op.name() + ":" + std::to_string(out.value_index())).op();
    }
  }
  return last ? group({*last}, "check_numerics") : no_op("check_numerics");
}

void register_numerics_ops(OpRegistry& r) {
  OpDef d;
  d.type = "CheckNumerics";
  d.passes_inputs_through = true;
  d.shape_fn = [](const InferenceContext& c) {
    detail::expect_inputs(c, 1);
    return detail::one(c.dtypes[0], c.shapes[0]);
  };
  d.kernels = kernels_with<CheckNumericsAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const CheckNumericsAttrs& a) { check_numerics_kernel<T>(c, a); });
  // TF: the incoming gradient, itself checked.
  d.gradient = [](const Operation& op, const OptionalTensors& dy) {
    return OptionalTensors{nn::check_numerics(
        *dy[0], "Not a number (NaN) or infinity (Inf) values detected in gradient. " +
                    op.attrs<CheckNumericsAttrs>().message)};
  };
  d.attr_codec = attr_codec<CheckNumericsAttrs>([](auto& io, auto& a) { io(a.message); });
  r.add(std::move(d));
}

}  // namespace kiln
