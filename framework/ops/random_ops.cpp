// Random ops: new values on every run, from a per-session generator per op. Seeds follow TF1's
// get_seed: graph seed and op seed -> both; graph seed only -> the op's id stands in for the op
// seed; op seed only -> a fixed graph seed; neither -> nondeterministic.
#include <cmath>
#include <random>

#include "framework/ops/common.hpp"

namespace kiln {

namespace {
struct RandomAttrs {
  Shape shape;
  DType dtype;
  double a, b;  // mean/stddev, or minval/maxval
};
const AttrCodec random_codec = attr_codec<RandomAttrs>([](auto& io, auto& r) {
  io(r.shape);
  io(r.dtype);
  io(r.a);
  io(r.b);
});

Tensor random_op(const std::string& type, const Shape& shape, double a, double b, DType dtype,
                 std::optional<std::int64_t> seed, const std::string& name) {
  if (!is_floating(dtype))
    throw TypeError(std::string(type) + ": dtype must be float or double, got " + dtype_name(dtype));
  if (!shape.is_fully_defined())
    throw ValueError(type + ": the shape must be fully defined, got " + shape.to_string());
  Operation op = build_op(type, {}, RandomAttrs{shape, dtype, a, b}, name);
  const auto graph_seed = op.graph().seed();
  constexpr std::int64_t kDefaultGraphSeed = 87654321;
  if (graph_seed || seed) {
    const std::uint64_t g = static_cast<std::uint64_t>(graph_seed.value_or(kDefaultGraphSeed));
    const std::uint64_t o = static_cast<std::uint64_t>(seed.value_or(op.node()->id));
    op.node()->seed = g * 0x9E3779B97F4A7C15ull ^ (o + 0x632BE59BD9B4E019ull + (g << 6) + (g >> 2));
  }
  return op.output(0);
}

template <class T, class Draw>
void fill_random(KernelContext& c, const RandomAttrs& a, Draw draw) {
  auto out = c.allocate_output<T>(0, a.shape.dims());
  auto& gen = c.rng();
  for (auto& v : out) v = static_cast<T>(draw(gen, a));
}

std::vector<TensorSpec> random_shape(const InferenceContext& c) {
  const auto& a = c.attrs<RandomAttrs>();
  return detail::one(a.dtype, a.shape);
}

// Box-Muller from the generator's raw bits keeps values identical across standard libraries.
double unit_uniform(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }
double unit_normal(std::mt19937_64& g) {
  const double u1 = 1.0 - unit_uniform(g);
  const double u2 = unit_uniform(g);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
}
}  // namespace

Tensor random_normal(const Shape& shape, double mean, double stddev, DType dtype, std::optional<std::int64_t> seed,
                     const std::string& name) {
  return random_op("RandomStandardNormal", shape, mean, stddev, dtype, seed, name.empty() ? "random_normal" : name);
}
Tensor truncated_normal(const Shape& shape, double mean, double stddev, DType dtype, std::optional<std::int64_t> seed,
                        const std::string& name) {
  return random_op("TruncatedNormal", shape, mean, stddev, dtype, seed, name.empty() ? "truncated_normal" : name);
}
Tensor random_uniform(const Shape& shape, double minval, double maxval, DType dtype, std::optional<std::int64_t> seed,
                      const std::string& name) {
  if (!(minval < maxval))
    throw ValueError("random_uniform: minval (" + std::to_string(minval) + ") must be less than maxval (" +
                     std::to_string(maxval) + ")");
  return random_op("RandomUniform", shape, minval, maxval, dtype, seed, name.empty() ? "random_uniform" : name);
}

void register_random_ops(OpRegistry& r) {
  r.add({.type = "RandomStandardNormal",
         .shape_fn = random_shape,
         .kernels = kernels_with<RandomAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const RandomAttrs& attrs) {
           fill_random<T>(c, attrs, [](std::mt19937_64& g, const RandomAttrs& a) { return a.a + a.b * unit_normal(g); });
         }),
         .dispatch_input = -1,
         .not_differentiable = true,
         .attr_codec = random_codec});
  r.add({.type = "TruncatedNormal",
         .shape_fn = random_shape,
         .kernels = kernels_with<RandomAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const RandomAttrs& attrs) {
           fill_random<T>(c, attrs, [](std::mt19937_64& g, const RandomAttrs& a) {
             double z;
             do z = unit_normal(g);
             while (std::abs(z) > 2.0);
             return a.a + a.b * z;
           });
         }),
         .dispatch_input = -1,
         .not_differentiable = true,
         .attr_codec = random_codec});
  r.add({.type = "RandomUniform",
         .shape_fn = random_shape,
         .kernels = kernels_with<RandomAttrs, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const RandomAttrs& attrs) {
           fill_random<T>(c, attrs, [](std::mt19937_64& g, const RandomAttrs& a) { return a.a + (a.b - a.a) * unit_uniform(g); });
         }),
         .dispatch_input = -1,
         .not_differentiable = true,
         .attr_codec = random_codec});
}

}  // namespace kiln
