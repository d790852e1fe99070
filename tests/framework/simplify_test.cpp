// The run-time simplifications of framework/simplify.hpp: what they skip (seen in a trace), that
// the values are bit for bit the graph's (NaN and infinities too), and where they must not apply.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;

namespace {

// The types of the ops a run executed, and its results.
struct Traced {
  std::vector<std::string> types;
  std::vector<Array> values;
  int count(const std::string& type) const {
    return static_cast<int>(std::count(types.begin(), types.end(), type));
  }
};
Traced run_traced(Session& sess, const std::vector<GraphElement>& fetches, const FeedDict& feeds = {}) {
  RunMetadata meta;
  Traced t;
  t.values = sess.run(fetches, feeds, RunOptions{.trace_level = RunOptions::full_trace}, &meta);
  for (const OpTrace& op : meta.step_stats) t.types.push_back(op.type);
  return t;
}

template <class T>
void require_same_bits(const xt::xarray<T>& a, const xt::xarray<T>& b) {
  REQUIRE(a.shape() == b.shape());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    if (std::isnan(b.data()[i])) CHECK(std::isnan(a.data()[i]));
    else CHECK(a.data()[i] == b.data()[i]);
  }
}

Tensor shape23() { return constant(Array(xt::xarray<std::int32_t>{2, 3})); }

const float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("simplify.gradient_of_a_full_sum_of_a_product_is_the_other_factor") {
  // d/dy sum(y * w) = broadcast(1) * w: the run reads w itself, without BroadcastTo or the Mul.
  Graph g;
  auto as_default = g.as_default();
  Tensor y = placeholder(float32, {2, 3}, "y"), w = placeholder(float32, {2, 3}, "w");
  Tensor grad = *gradients(reduce_sum(y * w), {y})[0];
  Session sess;
  const xt::xarray<float> wv{{1.5f, -0.f, kNaN}, {kInf, -kInf, 3e-39f}};
  const Traced t = run_traced(sess, {grad}, {{y, xt::xarray<float>::from_shape({2, 3})}, {w, wv}});
  CHECK(t.count("BroadcastTo") == 0);
  CHECK(t.count("Mul") == 0);
  require_same_bits(t.values[0].as<float>(), wv);
  CHECK(std::signbit(t.values[0].as<float>()(0, 1)));  // -0 * 1 is -0
}

TEST_CASE("simplify.broadcast_is_left_to_the_binary_op_when_the_other_operand_has_the_shape") {
  Graph g;
  auto as_default = g.as_default();
  Tensor s = placeholder(float32, {1, 3}, "s"), x = placeholder(float32, {2, 3}, "x");
  Tensor b = broadcast_to(s, shape23());
  Tensor z = b - x;
  Session sess;
  const xt::xarray<float> sv{{1.f, kNaN, -2.f}}, xv{{0.5f, 1.f, kInf}, {2.f, 3.f, -1.f}};
  const Traced t = run_traced(sess, {z}, {{s, sv}, {x, xv}});
  CHECK(t.count("BroadcastTo") == 0);
  require_same_bits(t.values[0].as<float>(), xt::xarray<float>(sv - xv));
}

TEST_CASE("simplify.does_not_apply_where_it_would_change_the_result") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  SUBCASE("the ones make the product larger") {
    Tensor x = placeholder(float32, {3}, "x");
    Tensor z = x * ones({2, 3}, float32);
    const Traced t = run_traced(sess, {z}, {{x, xt::xarray<float>{1.f, 2.f, 3.f}}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.values[0].shape() == Shape{2, 3});
  }
  SUBCASE("not all ones") {
    Tensor x = placeholder(float32, {3}, "x");
    Tensor z = x * constant(Array(xt::xarray<float>{1.f, 1.f, 2.f}));
    const Traced t = run_traced(sess, {z}, {{x, xt::xarray<float>{1.f, 2.f, 3.f}}});
    CHECK(t.count("Mul") == 1);
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>{1.f, 2.f, 6.f});
  }
  SUBCASE("both operands broadcast: only one may be given smaller") {
    Tensor a = placeholder(float32, {1, 3}, "a"), c = placeholder(float32, {2, 1}, "c");
    Tensor z = broadcast_to(a, shape23()) + broadcast_to(c, shape23());
    const Traced t = run_traced(sess, {z}, {{a, xt::xarray<float>{{1.f, 2.f, 3.f}}}, {c, xt::xarray<float>(xt::xtensor<float, 2>{{10.f}, {20.f}})}});
    CHECK(t.count("BroadcastTo") == 1);  // Add broadcasts (1,3) against the other (2,3) itself
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>{{11.f, 12.f, 13.f}, {21.f, 22.f, 23.f}});
  }
  SUBCASE("an unknown shape") {
    Tensor s = placeholder(float32, {1, 3}, "s"), x = placeholder(float32, {-1, 3}, "x");
    Tensor z = broadcast_to(s, shape23()) * x;
    const Traced t = run_traced(sess, {z}, {{s, xt::xarray<float>{{1.f, 2.f, 3.f}}}, {x, xt::xarray<float>(xt::ones<float>({2, 3}))}});
    CHECK(t.count("BroadcastTo") == 1);
  }
  SUBCASE("a fed target shape, or an operand of unknown shape: BroadcastTo runs") {
    Tensor s = placeholder(float32, {1, 3}, "s"), x = placeholder(float32, {2, 3}, "x");
    Tensor target = shape23();
    Tensor z = broadcast_to(s, target) + x;
    const Traced fed = run_traced(sess, {z}, {{s, xt::xarray<float>{{1.f, 2.f, 3.f}}}, {x, xt::xarray<float>(xt::ones<float>({2, 3}))},
                                              {target, xt::xarray<std::int32_t>{2, 3}}});
    CHECK(fed.count("BroadcastTo") == 1);
    Tensor u = placeholder(float32, {-1, 3}, "u");
    Tensor z2 = broadcast_to(u, shape23()) + x;
    const Traced unknown = run_traced(sess, {z2}, {{u, xt::xarray<float>{{1.f, 2.f, 3.f}}}, {x, xt::xarray<float>(xt::ones<float>({2, 3}))}});
    CHECK(unknown.count("BroadcastTo") == 1);
  }
  SUBCASE("a fed constant: the static shapes built from it may be wrong") {
    // reshape(q, c) is [3, 5] as built; fed c = [15, 1] makes it [15, 1]. The graph then adds
    // [3, 5] to [15, 1] (incompatible) and multiplies [15, 1] by ones [3, 5] (incompatible);
    // read through the rules, the run would broadcast x [1, 5] against [15, 1], and return q.
    Tensor q = placeholder(float32, {15}, "q");
    Tensor c = constant(Array(xt::xarray<std::int32_t>{3, 5}), "c");
    Tensor other = reshape(q, c);
    Tensor row = constant(Array(xt::xarray<float>{{1.f, 2.f, 3.f, 4.f, 5.f}}));
    Tensor sum = broadcast_to(row, constant(Array(xt::xarray<std::int32_t>{3, 5}))) + other;
    Tensor product = other * ones({3, 5}, float32);
    const FeedDict feeds{{q, xt::xarray<float>(xt::zeros<float>({15}))}, {c, xt::xarray<std::int32_t>{15, 1}}};
    CHECK_THROWS_AS(sess.run(sum, feeds), InvalidArgumentError);
    CHECK_THROWS_AS(sess.run(product, feeds), InvalidArgumentError);
    const Traced t = run_traced(sess, {product}, {{q, xt::xarray<float>(xt::zeros<float>({15}))}});
    CHECK(t.count("Mul") == 0);  // c not fed: the rule applies
  }
  SUBCASE("a fed value is not looked through") {
    Tensor x = placeholder(float32, {2}, "x");
    Tensor one = ones({2}, float32);
    Tensor prod = x * one;
    Tensor z = prod + x;
    const Traced t = run_traced(sess, {z}, {{x, xt::xarray<float>{1.f, 2.f}}, {prod, xt::xarray<float>{5.f, 7.f}}});
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>{6.f, 9.f});
  }
  SUBCASE("a variable's value is read when the graph reads it, not later") {
    // y = v * 1 is read before the assign (ordered after y); z reads y, not v.
    Variable v = get_variable("w", {2}, {.initializer = initializers::zeros()});
    sess.run(global_variables_initializer());
    Tensor y = v.value() * ones({2}, float32);
    Tensor assigned;
    {
      control_dependencies deps({y.op()});
      assigned = assign(v, ones({2}, float32) * 5.f);
    }
    Tensor z;
    {
      control_dependencies deps({assigned.op()});
      z = y + 0.f;
    }
    const Traced t = run_traced(sess, {z});
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>{0.f, 0.f});
  }
  SUBCASE("an op with a control input runs") {
    Tensor x = placeholder(float32, {2}, "x");
    Variable v = get_variable("v", {2}, {.initializer = initializers::zeros()});
    sess.run(global_variables_initializer());
    Operation bump = assign_add(v, ones({2}, float32)).op();
    Tensor prod;
    {
      control_dependencies deps({bump});
      prod = x * ones({2}, float32);
    }
    const Traced t = run_traced(sess, {prod + 0.f}, {{x, xt::xarray<float>{1.f, 2.f}}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("AssignAdd") == 1);
  }
}

namespace {

// Values with every kind of float: normal, -0, tiny, NaN and infinities (every 97th and 89th).
xt::xarray<float> mixed(const std::vector<std::size_t>& shape, unsigned seed) {
  xt::xarray<float> a = xt::xarray<float>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto k = static_cast<unsigned>(i) * 2654435761u + seed * 40503u;
    a.data()[i] = static_cast<float>(k % 20011u) / 997.f - 10.f;
  }
  if (seed % 2) {
    for (std::size_t i = 5; i < a.size(); i += 97) a.data()[i] = -0.f;
    for (std::size_t i = 7; i < a.size(); i += 89) a.data()[i] = 3e-39f;
  }
  return a;
}

}  // namespace

TEST_CASE("simplify.a_sum_of_products_to_a_smaller_shape_runs_as_one_op_with_the_same_bits") {
  // What the fused op returns is compared with the pair's result in the same run: fetching the
  // product as well keeps the Mul (a fetched product is not fused).
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  struct Case {
    std::vector<std::size_t> shape;
    std::vector<std::int32_t> target;
  };
  // Rows (the NHWC scale gradient, long enough for the pairwise split and the threads), planes
  // (NCHW: reduced inside and outside the kept axis), leading axes only, and to a scalar.
  const std::vector<Case> cases{{{3000, 64}, {64}}, {{4, 3, 200}, {1, 3, 1}}, {{5, 7}, {1, 7}}, {{33, 9}, {}}};
  for (const Case& c : cases) {
    CAPTURE(c.shape.size());
    const Shape s(std::vector<std::int64_t>(c.shape.begin(), c.shape.end()));
    Tensor a = placeholder(float32, s, "a"), b = placeholder(float32, s, "b");
    xt::xarray<std::int32_t> target_dims = xt::xarray<std::int32_t>::from_shape({c.target.size()});
    std::copy(c.target.begin(), c.target.end(), target_dims.begin());
    Tensor target = constant(Array(target_dims));
    Tensor product = a * b;
    Tensor sum = sum_to_shape(product, target);
    xt::xarray<float> av = mixed(c.shape, 1), bv = mixed(c.shape, 2);
    av.data()[3] = kNaN;  // one output sum is NaN, from a NaN and from an infinity times 0
    av.data()[10] = kInf;
    bv.data()[10] = 0.f;
    const FeedDict feeds{{a, av}, {b, bv}};
    const Traced fused = run_traced(sess, {sum}, feeds);
    CHECK(fused.count("Mul") == 0);
    CHECK(fused.count("SumToShape") == 0);
    CHECK(fused.count("_SumOfProducts") == 1);
    const Traced pair = run_traced(sess, {sum, product}, feeds);
    CHECK(pair.count("Mul") == 1);
    CHECK(pair.count("SumToShape") == 1);
    require_same_bits(fused.values[0].as<float>(), pair.values[0].as<float>());
    const auto& y = fused.values[0].as<float>();
    CHECK(std::count_if(y.begin(), y.end(), [](float v) { return std::isnan(v); }) >= 1);
  }
}

TEST_CASE("simplify.a_sum_of_products_to_a_fed_target_runs_as_the_graph_says") {
  // Feeding the target (a Const) turns the rules off: the Mul and SumToShape run, to the fed shape.
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor a = placeholder(float32, {6, 5}, "a"), b = placeholder(float32, {6, 5}, "b");
  Tensor target = constant(Array(xt::xarray<std::int32_t>{1, 5}));
  Tensor sum = sum_to_shape(a * b, target);
  const xt::xarray<float> av = mixed({6, 5}, 1), bv = mixed({6, 5}, 2);
  const Traced full = run_traced(sess, {sum}, {{a, av}, {b, bv}, {target, xt::xarray<std::int32_t>{6, 5}}});
  CHECK(full.count("_SumOfProducts") == 0);
  CHECK(full.count("Mul") == 1);
  require_same_bits(full.values[0].as<float>(), xt::xarray<float>(av * bv));
  const Traced columns = run_traced(sess, {sum}, {{a, av}, {b, bv}, {target, xt::xarray<std::int32_t>{6, 1}}});
  CHECK(columns.values[0].shape() == Shape{6, 1});
  CHECK_THROWS_AS(sess.run(sum, {{a, av}, {b, bv}, {target, xt::xarray<std::int32_t>{4, 5}}}), InvalidArgumentError);
  CHECK(run_traced(sess, {sum}, {{a, av}, {b, bv}}).count("_SumOfProducts") == 1);  // not fed: fused
}

TEST_CASE("simplify.the_fused_op_checks_its_factors_and_names_itself") {
  // _SumOfProducts is the plan's; built by hand (build_op), its checks name it like any op's.
  Graph g;
  auto as_default = g.as_default();
  Tensor target = constant(Array(xt::xarray<std::int32_t>{5}));
  const std::string built = message_of<ValueError>([&] {
    build_op("_SumOfProducts", {placeholder(float32, {6, 5}), placeholder(float32, {5, 6}), target}, {}, "sop");
  });
  CHECK(contains(built, "'sop' (op: '_SumOfProducts')"));
  CHECK(contains(built, "the factors must have one dtype and shape, got [6,5] and [5,6]"));
  Tensor a = placeholder(float32, {-1, 5}, "a"), b = placeholder(float32, {-1, 5}, "b");
  Tensor sum = build_op("_SumOfProducts", {a, b, target}, {}, "sop2").output(0);
  Session sess;
  const xt::xarray<float> six = xt::ones<float>({6, 5}), three = xt::ones<float>({3, 5});
  const std::string run = message_of<InvalidArgumentError>([&] { sess.run(sum, {{a, six}, {b, three}}); });
  CHECK(contains(run, "'sop2': the factors' shapes [6,5] and [3,5] differ"));
  CHECK(contains(run, "(op: '_SumOfProducts')"));
  require_same_bits(sess.run(sum, {{a, six}, {b, six}}).as<float>(), xt::xarray<float>(xt::ones<float>({5}) * 6.f));
}

TEST_CASE("simplify.the_gradient_of_a_broadcast_factor_sums_the_products_unstored") {
  // d/dw sum(x * w * dy), w of shape [C] broadcast over [N, C]: SumToShape(dy * x, shape(w)).
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {300, 16}, "x"), dy = placeholder(float32, {300, 16}, "dy");
  Tensor w = placeholder(float32, {16}, "w");
  Tensor dw = *gradients(reduce_sum(x * w * dy), {w})[0];
  Session sess;
  const xt::xarray<float> xv = mixed({300, 16}, 3), dyv = mixed({300, 16}, 4), wv = mixed({16}, 5);
  const Traced t = run_traced(sess, {dw}, {{x, xv}, {dy, dyv}, {w, wv}});
  CHECK(t.count("_SumOfProducts") == 1);
  // The same float products summed in double in another order: near, not equal.
  for (std::size_t j = 0; j < 16; ++j) {
    double s = 0;
    for (std::size_t i = 0; i < 300; ++i) s += static_cast<double>(dyv(i, j) * xv(i, j));
    CAPTURE(j);
    CHECK(t.values[0].as<float>()(j) == doctest::Approx(s).epsilon(1e-4));
  }
}

TEST_CASE("simplify.a_product_is_not_fused_where_it_would_change_the_run") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  const xt::xarray<float> av = mixed({6, 5}, 1), bv = mixed({6, 5}, 2);
  Tensor a = placeholder(float32, {6, 5}, "a"), b = placeholder(float32, {6, 5}, "b");
  Tensor row = constant(Array(xt::xarray<std::int32_t>{5}));
  SUBCASE("another op reads the product") {
    Tensor p = a * b;
    const Traced t = run_traced(sess, {sum_to_shape(p, row), reduce_max(p)}, {{a, av}, {b, bv}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfProducts") == 0);
  }
  SUBCASE("an op waits for the product") {
    Tensor p = a * b;
    Tensor after;
    {
      control_dependencies deps({p.op()});
      after = identity(a);
    }
    const Traced t = run_traced(sess, {sum_to_shape(p, row), after}, {{a, av}, {b, bv}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfProducts") == 0);
  }
  SUBCASE("the Mul broadcasts") {
    Tensor r = placeholder(float32, {1, 5}, "r");
    const Traced t = run_traced(sess, {sum_to_shape(a * r, row)}, {{a, av}, {r, xt::xarray<float>(xt::ones<float>({1, 5}))}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfProducts") == 0);
  }
  SUBCASE("the product is fed") {
    Tensor p = a * b;
    const Traced t = run_traced(sess, {sum_to_shape(p, row)}, {{a, av}, {b, bv}, {p, xt::xarray<float>(xt::ones<float>({6, 5}))}});
    CHECK(t.count("_SumOfProducts") == 0);
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>(xt::ones<float>({5}) * 6.f));
  }
  SUBCASE("float64 (a product added in double could become an FMA)") {
    Tensor c = placeholder(float64, {6, 5}, "c"), d = placeholder(float64, {6, 5}, "d");
    const Traced t = run_traced(sess, {sum_to_shape(c * d, row)}, {{c, xt::xarray<double>(av)}, {d, xt::xarray<double>(bv)}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfProducts") == 0);
  }
  SUBCASE("a variable factor is read when the Mul would read it") {
    Variable v = get_variable("v", {6, 5}, {.initializer = initializers::ones()});
    sess.run(global_variables_initializer());
    Tensor p = a * v.value();
    const Traced t = run_traced(sess, {sum_to_shape(p, row)}, {{a, av}});
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfProducts") == 0);
  }
}

namespace {

// The MomentsGrad among the inputs of the gradient's AddN (the pair the plan fuses).
Tensor moments_grad_of(const Tensor& dx) {
  REQUIRE(dx.op().type() == "AddN");
  for (const Tensor& in : dx.op().inputs())
    if (in.op().type() == "MomentsGrad") return in;
  FAIL("no MomentsGrad reaches the AddN");
  return dx;
}

// d/dx of sum(mean * wm) + sum(var * wv) + sum(x * a): AddN(a, MomentsGrad(x, mean, dmean, dvar))
// (the composed batch norm's input gradient has this form).
template <class T>
void check_moments_grad_fusion(const std::vector<std::size_t>& shape, const std::vector<int>& axes) {
  Graph g;
  auto as_default = g.as_default();
  const DType dt = dtype_of<T>();
  const Shape s(std::vector<std::int64_t>(shape.begin(), shape.end()));
  Tensor x = placeholder(dt, s, "x"), a = placeholder(dt, s, "a");
  const auto [mean, var] = nn::moments(x, axes);
  const Shape stats = mean.shape();
  Tensor wm = placeholder(dt, stats, "wm"), wv = placeholder(dt, stats, "wv");
  Tensor dx = *gradients(reduce_sum(mean * wm) + reduce_sum(var * wv) + reduce_sum(x * a), {x})[0];
  const Tensor pair_output = moments_grad_of(dx);
  const std::vector<std::size_t> stat_dims(stats.dims().begin(), stats.dims().end());
  xt::xarray<T> xv(mixed(shape, 1)), av(mixed(shape, 2));
  xv.data()[3] = kNaN;  // a NaN channel, an infinite addend
  av.data()[av.size() - 1] = kInf;  // in another channel
  const FeedDict feeds{{x, xv}, {a, av}, {wm, xt::xarray<T>(mixed(stat_dims, 3))}, {wv, xt::xarray<T>(mixed(stat_dims, 4))}};
  Session sess;
  const Traced fused = run_traced(sess, {dx}, feeds);
  CHECK(fused.count("_MomentsGradAdd") == 1);
  CHECK(fused.count("MomentsGrad") == 0);
  CHECK(fused.count("AddN") == 0);
  // Fetching the MomentsGrad's value as well keeps the pair.
  const Traced pair = run_traced(sess, {dx, pair_output}, feeds);
  CHECK(pair.count("_MomentsGradAdd") == 0);
  CHECK(pair.count("AddN") == 1);
  require_same_bits(fused.values[0].as<T>(), pair.values[0].as<T>());
  const auto& v = fused.values[0].as<T>();
  CHECK(std::count_if(v.begin(), v.end(), [](T e) { return std::isnan(e); }) >= 1);
  CHECK(std::count_if(v.begin(), v.end(), [](T e) { return std::isinf(e); }) >= 1);
}

}  // namespace

TEST_CASE("simplify.a_moments_gradient_added_to_another_runs_as_one_op_with_the_same_bits") {
  // Rows (NHWC: the channels last; long enough for the threads), planes (NCHW), a kept middle
  // axis with reduced axes on both sides; float32 and float64.
  SUBCASE("rows") { check_moments_grad_fusion<float>({3000, 64}, {0}); }
  SUBCASE("planes") { check_moments_grad_fusion<float>({4, 3, 200}, {0, 2}); }
  SUBCASE("rank 4, NHWC") { check_moments_grad_fusion<float>({2, 5, 6, 3}, {0, 1, 2}); }
  SUBCASE("float64") { check_moments_grad_fusion<double>({40, 3, 7}, {0, 2}); }
}

TEST_CASE("simplify.a_moments_gradient_is_not_fused_where_it_would_change_the_run") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {6, 5}, "x"), a = placeholder(float32, {6, 5}, "a");
  const FeedDict feeds{{x, mixed({6, 5}, 1)}, {a, mixed({6, 5}, 2)}};
  const auto [mean, var] = nn::moments(x, {0});
  SUBCASE("another op reads the moments gradient") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0];
    const Tensor mg = moments_grad_of(dx);
    const Traced t = run_traced(sess, {dx, reduce_max(mg)}, feeds);
    CHECK(t.count("MomentsGrad") == 1);
    CHECK(t.count("_MomentsGradAdd") == 0);
  }
  SUBCASE("an op waits for the moments gradient") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0];
    Tensor after;
    {
      control_dependencies deps({moments_grad_of(dx).op()});
      after = identity(a);
    }
    const Traced t = run_traced(sess, {dx, after}, feeds);
    CHECK(t.count("MomentsGrad") == 1);
    CHECK(t.count("_MomentsGradAdd") == 0);
  }
  SUBCASE("three terms") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a) + reduce_sum(x * x), {x})[0];
    const Traced t = run_traced(sess, {dx}, feeds);
    CHECK(t.count("MomentsGrad") == 1);
    CHECK(t.count("AddN") == 1);
    CHECK(t.count("_MomentsGradAdd") == 0);
  }
  SUBCASE("the moments gradient is fed") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0];
    const Tensor mg = moments_grad_of(dx);
    FeedDict fed = feeds;
    fed.emplace_back(mg, xt::xarray<float>(xt::ones<float>({6, 5})));
    const Traced t = run_traced(sess, {dx}, fed);
    CHECK(t.count("_MomentsGradAdd") == 0);
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>(mixed({6, 5}, 2) + 1.f));
  }
}

TEST_CASE("simplify.the_fused_moments_gradient_checks_its_addend_and_names_itself") {
  // Built by hand with a MomentsGrad's attributes (a gradient op, then build_op from its attributes).
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 5}, "x"), a = placeholder(float32, {-1, 5}, "a");
  const auto [mean, var] = nn::moments(x, {0});
  const Operation mg = moments_grad_of(*gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0]).op();
  std::vector<Tensor> ins{placeholder(float32, {6, 4})};
  for (const Tensor& in : mg.inputs()) ins.push_back(in);
  const std::string built = message_of<ValueError>([&] { build_op("_MomentsGradAdd", ins, mg.node()->attrs, "mga"); });
  CHECK(contains(built, "'mga' (op: '_MomentsGradAdd')"));
  CHECK(contains(built, "the addend must have x's dtype and shape, got [6,4] for x of shape [?,5]"));
  ins[0] = a;
  Tensor dx = build_op("_MomentsGradAdd", ins, mg.node()->attrs, "mga2").output(0);
  Session sess;
  const std::string run = message_of<InvalidArgumentError>(
      [&] { sess.run(dx, {{x, xt::xarray<float>(xt::ones<float>({6, 5}))}, {a, xt::xarray<float>(xt::ones<float>({3, 5}))}}); });
  CHECK(contains(run, "'mga2': the addend's shape [3,5] is not x's [6,5]"));
  CHECK(contains(run, "(op: '_MomentsGradAdd')"));
  // Statistics of another size than x's channels (a mean of 4 values for 5 channels).
  Tensor m = placeholder(float32, Shape::unknown(), "m");
  std::vector<Tensor> with_m = ins;
  with_m[2] = m;
  Tensor dx3 = build_op("_MomentsGradAdd", with_m, mg.node()->attrs, "mga3").output(0);
  const xt::xarray<float> six = xt::ones<float>({6, 5});
  const std::string stats = message_of<InvalidArgumentError>(
      [&] { sess.run(dx3, {{x, six}, {a, six}, {m, xt::xarray<float>(xt::ones<float>({4}))}}); });
  CHECK(contains(stats, "'mga3': input 2 has shape [4], expected 5 statistics for x of shape [6,5]"));
  CHECK(contains(stats, "(op: '_MomentsGradAdd')"));
}

TEST_CASE("simplify.a_sum_of_centered_products_runs_as_one_op_with_the_same_bits") {
  // sum_to_shape((x - m) * b): the fused op's result against the three ops' in the same run
  // (fetching the product as well keeps all three).
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  struct Case {
    std::vector<std::size_t> x, m;
    std::vector<std::int32_t> target;
  };
  // NHWC rows (long enough for the threads), NCHW planes (a [C, 1] mean), rank 4 NHWC, a mean per
  // element, a scalar mean to a scalar.
  const std::vector<Case> cases{{{3000, 64}, {64}, {64}},           {{4, 3, 200}, {3, 1}, {1, 3, 1}},
                                {{2, 5, 6, 3}, {3}, {3}},            {{5, 7}, {5, 7}, {1, 7}},
                                {{33, 9}, {}, {}}};
  for (const Case& c : cases) {
    CAPTURE(c.x.size());
    CAPTURE(c.m.size());
    const Shape sx(std::vector<std::int64_t>(c.x.begin(), c.x.end())), sm(std::vector<std::int64_t>(c.m.begin(), c.m.end()));
    Tensor x = placeholder(float32, sx, "x"), b = placeholder(float32, sx, "b"), m = placeholder(float32, sm, "m");
    xt::xarray<std::int32_t> target_dims = xt::xarray<std::int32_t>::from_shape({c.target.size()});
    std::copy(c.target.begin(), c.target.end(), target_dims.begin());
    Tensor product = (x - m) * b;
    Tensor sum = sum_to_shape(product, constant(Array(target_dims)));
    xt::xarray<float> xv = mixed(c.x, 1), bv = mixed(c.x, 2), mv = mixed(c.m, 4);
    xv.data()[3] = kNaN;  // a NaN, and an infinity times 0
    xv.data()[10] = kInf;
    bv.data()[10] = 0.f;
    const FeedDict feeds{{x, xv}, {b, bv}, {m, mv}};
    const Traced fused = run_traced(sess, {sum}, feeds);
    CHECK(fused.count("_SumOfCenteredProducts") == 1);
    CHECK(fused.count("Sub") == 0);
    CHECK(fused.count("Mul") == 0);
    const Traced three = run_traced(sess, {sum, product}, feeds);
    CHECK(three.count("Sub") == 1);
    CHECK(three.count("SumToShape") == 1);
    require_same_bits(fused.values[0].as<float>(), three.values[0].as<float>());
  }
}

TEST_CASE("simplify.the_composed_batch_norm_gradient_sums_centered_products_unstored") {
  // Gradients only (no y fetched): the scale gradient sum((x - mean) * dy) reads x and dy. With y
  // fetched as well, x - mean is read by y's Mul: stored once, summed as _SumOfProducts.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {64, 6, 6, 8}, "x"), dy = placeholder(float32, {64, 6, 6, 8}, "dy");
  Tensor y = layers::batch_normalization(x, {.training = true, .fused = false});
  const std::vector<Variable> gamma_beta = trainable_variables();
  const auto grads = gradients(reduce_sum(y * dy), {x, gamma_beta.at(0), gamma_beta.at(1)});
  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{x, mixed({64, 6, 6, 8}, 1)}, {dy, mixed({64, 6, 6, 8}, 2)}};
  const Traced only = run_traced(sess, {*grads[0], *grads[1], *grads[2]}, feeds);
  CHECK(only.count("_SumOfCenteredProducts") == 1);
  CHECK(only.count("_MomentsGradAdd") == 1);
  CHECK(only.count("Sub") == 0);
  const Traced with_y = run_traced(sess, {*grads[0], *grads[1], *grads[2], y}, feeds);
  CHECK(with_y.count("_SumOfCenteredProducts") == 0);
  CHECK(with_y.count("_SumOfProducts") == 1);
  for (std::size_t k = 0; k < 3; ++k) require_same_bits(only.values[k].as<float>(), with_y.values[k].as<float>());
}

TEST_CASE("simplify.a_centered_product_is_not_fused_where_it_would_change_the_run") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {6, 5}, "x"), b = placeholder(float32, {6, 5}, "b"), m = placeholder(float32, {5}, "m");
  Tensor row = constant(Array(xt::xarray<std::int32_t>{5}));
  const FeedDict feeds{{x, mixed({6, 5}, 1)}, {b, mixed({6, 5}, 2)}, {m, mixed({5}, 3)}};
  SUBCASE("another op reads the difference") {
    Tensor d = x - m;
    const Traced t = run_traced(sess, {sum_to_shape(d * b, row), reduce_max(d)}, feeds);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
    CHECK(t.count("_SumOfProducts") == 1);
  }
  SUBCASE("the difference is fed") {
    Tensor d = x - m;
    FeedDict fed = feeds;
    fed.emplace_back(d, xt::xarray<float>(xt::ones<float>({6, 5})));
    const Traced t = run_traced(sess, {sum_to_shape(d * b, row)}, fed);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
  }
  SUBCASE("a mean of unknown shape") {
    Tensor u = placeholder(float32, Shape::unknown(), "u");
    FeedDict fed = feeds;
    fed.emplace_back(u, xt::xarray<float>(mixed({5}, 3)));
    const Traced t = run_traced(sess, {sum_to_shape((x - u) * b, row)}, fed);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
  }
  SUBCASE("x broadcasts against the mean") {
    Tensor r = placeholder(float32, {1, 5}, "r");
    FeedDict fed = feeds;
    fed.emplace_back(r, xt::xarray<float>(mixed({1, 5}, 3)));
    const Traced t = run_traced(sess, {sum_to_shape((r - x) * b, row)}, fed);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
  }
}

TEST_CASE("simplify.the_fused_centered_product_checks_its_inputs_and_names_itself") {
  Graph g;
  auto as_default = g.as_default();
  Tensor target = constant(Array(xt::xarray<std::int32_t>{5}));
  const std::string built = message_of<ValueError>([&] {
    build_op("_SumOfCenteredProducts", {placeholder(float32, {6, 5}), placeholder(float32, {4}), placeholder(float32, {6, 5}), target},
             {}, "scp");
  });
  CHECK(contains(built, "'scp' (op: '_SumOfCenteredProducts')"));
  CHECK(contains(built, "the mean of shape [4] does not broadcast to x's [6,5]"));
  const std::string typed = message_of<TypeError>([&] {
    build_op("_SumOfCenteredProducts", {placeholder(float32, {6, 5}), placeholder(float64, {5}), placeholder(float32, {6, 5}), target},
             {}, "scp4");
  });
  CHECK(contains(typed, "'scp4' (op: '_SumOfCenteredProducts')"));
  CHECK(contains(typed, "x, the mean and the other factor must have one dtype"));
  Tensor x = placeholder(float32, {-1, 5}, "x"), m = placeholder(float32, {-1}, "m"), b = placeholder(float32, {-1, 5}, "b");
  Tensor sum = build_op("_SumOfCenteredProducts", {x, m, b, target}, {}, "scp2").output(0);
  Session sess;
  const xt::xarray<float> six = xt::ones<float>({6, 5});
  const std::string run = message_of<InvalidArgumentError>(
      [&] { sess.run(sum, {{x, six}, {b, six}, {m, xt::xarray<float>(xt::ones<float>({4}))}}); });
  CHECK(contains(run, "'scp2': x [6,5], the mean [4] and the other factor [6,5] do not fit together"));
  CHECK(contains(run, "(op: '_SumOfCenteredProducts')"));
  // (x - 0.5) * 1 summed over 6 rows: 3 per column.
  require_same_bits(sess.run(sum, {{x, six}, {b, six}, {m, xt::xarray<float>(xt::ones<float>({5}) * 0.5f)}}).as<float>(),
                    xt::xarray<float>(xt::ones<float>({5}) * 3.f));
  // One element (no dimension left once the size-1 ones are dropped): (3 - 1) * 2.
  Tensor one = placeholder(float32, {1, 1}, "one");
  Tensor single = build_op("_SumOfCenteredProducts", {one * 3.f, constant(1.f), one * 2.f, constant(Array(xt::xarray<std::int32_t>{1}))},
                           {}, "scp3").output(0);
  const xt::xarray<float> one_value = xt::ones<float>({1, 1}), four = xt::ones<float>({1}) * 4.f;
  require_same_bits(sess.run(single, {{one, one_value}}).as<float>(), four);
}
