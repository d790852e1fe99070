#pragma once
// Variable initializers: callables from (shape, dtype) to the initial-value tensor (built as ops in
// the variable's Initializer scope). Seedable; with a seed (or a graph seed) runs are reproducible.
// Fans follow TF: rank 2 [in, out]; conv [kh, kw, in, out] multiplies by the receptive field.
#include <functional>
#include <optional>
#include <string>

#include "framework/graph.hpp"

namespace kiln {

class Array;  // framework/array.hpp

using Initializer = std::function<Tensor(const Shape& shape, DType dtype)>;

namespace initializers {
using Seed = std::optional<std::int64_t>;
Initializer zeros();
Initializer ones();
/// TF's constant_initializer: a number fills the requested shape; an Array (loading weights) must
/// have exactly the requested shape (ValueError otherwise; get_variable names the variable), and
/// is converted to the requested dtype (a 0-d Array fills like a number).
Initializer constant(double value);
Initializer constant(const Array& value);
Initializer random_normal(double mean = 0.0, double stddev = 1.0, Seed seed = {});
Initializer truncated_normal(double mean = 0.0, double stddev = 1.0, Seed seed = {});
Initializer random_uniform(double minval = -0.05, double maxval = 0.05, Seed seed = {});
/// TF's VarianceScaling: scale / fan (mode "fan_in" | "fan_out" | "fan_avg"); distribution
/// "truncated_normal" (stddev sqrt(scale)/0.8796...), "untruncated_normal" or "uniform"
/// (limit sqrt(3 scale)). ValueError for other strings.
Initializer variance_scaling(double scale = 1.0, const std::string& mode = "fan_in",
                             const std::string& distribution = "truncated_normal", Seed seed = {});
Initializer glorot_uniform(Seed seed = {});
Initializer glorot_normal(Seed seed = {});
Initializer he_normal(Seed seed = {});
}  // namespace initializers

}  // namespace kiln
