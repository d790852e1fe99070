// The run-time simplifications of framework/simplify.hpp: what they skip (seen in a trace), that
// the values are bit for bit the graph's (NaN and infinities too), and where they must not apply.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/traced.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;
using kiln::testing::mixed;
using kiln::testing::require_same_bits;
using kiln::testing::run_traced;
using kiln::testing::Traced;

namespace {

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
    const Traced fetched = run_traced(sess, {prod}, {{x, xt::xarray<float>{1.f, 2.f}}});  // fetched itself
    CHECK(fetched.count("Mul") == 1);
    CHECK(fetched.count("AssignAdd") == 1);
  }
}

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
  SUBCASE("the Mul broadcasts: the fifth rule's op sums it, not this one") {
    Tensor r = placeholder(float32, {1, 5}, "r");
    const Traced t = run_traced(sess, {sum_to_shape(a * r, row)}, {{a, av}, {r, xt::xarray<float>(xt::ones<float>({1, 5}))}});
    CHECK(t.count("_SumOfProducts") == 0);
    CHECK(t.count("_SumOfScaledValues") == 1);
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


TEST_CASE("simplify.relu_gradient_of_a_max_pool_gradient_runs_as_one_op_with_the_same_bits") {
  // The gradient of max_pool(relu(x)): ReluGrad(MaxPoolGrad(r, y, dy, argmax), r) (the sixth
  // rule), built under control_dependencies as a TF1 training step's gradients are (the rule
  // looks through the MaxPoolGrad: its reader waits for the same ops), with the batch unknown
  // when built (f is the MaxPoolGrad's own input: no static shape needed). Compared with the
  // pair's result in a run that also fetches the MaxPoolGrad (a fetched value is not fused).
  for (const char* format : {"NHWC", "NCHW"}) {
    CAPTURE(format);
    const bool nhwc = std::string(format) == "NHWC";
    Graph g;
    auto as_default = g.as_default();
    const auto dims = [&](std::int64_t n, std::int64_t hw, std::int64_t c) {
      return nhwc ? std::vector<std::int64_t>{n, hw, hw, c} : std::vector<std::int64_t>{n, c, hw, hw};
    };
    Tensor x = placeholder(float32, Shape(dims(-1, 6, 3)), "x"), dy = placeholder(float32, Shape(dims(-1, 3, 3)), "dy");
    Variable v = get_variable("v", {1}, {.initializer = initializers::zeros()});
    Operation bump = assign_add(v, ones({1}, float32)).op();
    Tensor p = nn::max_pool(nn::relu(x), {2, 2}, {2, 2}, "VALID", format);
    Tensor dx;
    {
      control_dependencies deps({bump});
      dx = *gradients(reduce_sum(p * dy), {x})[0];
    }
    REQUIRE(dx.op().type() == "ReluGrad");
    const Tensor pool_grad = dx.op().inputs()[0];
    REQUIRE(pool_grad.op().type() == "MaxPoolGrad");
    Session sess;
    sess.run(global_variables_initializer());
    const auto shape = [&](std::int64_t hw) {
      const auto d = dims(2, hw, 3);
      return std::vector<std::size_t>(d.begin(), d.end());
    };
    xt::xarray<float> xv = mixed(shape(6), 1), dyv = mixed(shape(3), 3);
    xv(3) = kNaN, xv(10) = 0.f, xv(11) = -0.f, dyv(1) = kNaN, dyv(2) = kInf, dyv(4) = -0.f;
    const FeedDict feeds{{x, xv}, {dy, dyv}};
    const Traced fused = run_traced(sess, {dx}, feeds);
    CHECK(fused.count("_MaxPoolGradRelu") == 1);
    CHECK(fused.count("MaxPoolGrad") == 0);
    CHECK(fused.count("ReluGrad") == 0);
    CHECK(fused.count("AssignAdd") == 1);  // waited for, as by the pair
    const Traced pair = run_traced(sess, {dx, pool_grad}, feeds);
    CHECK(pair.count("MaxPoolGrad") == 1);
    CHECK(pair.count("ReluGrad") == 1);
    const auto &a = fused.values[0].as<float>(), &b = pair.values[0].as<float>();
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("simplify.an_op_is_looked_through_when_its_reader_waits_for_its_control_inputs_too") {
  // x * 1 after an assign, read by an op after the same assign: the reader reads x, and still
  // runs after the assign. (An op whose control input the reader lacks runs: the test above.)
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {2}, "x");
  Variable v = get_variable("v", {2}, {.initializer = initializers::zeros()});
  sess.run(global_variables_initializer());
  Operation bump = assign_add(v, ones({2}, float32)).op();
  Tensor z;
  {
    control_dependencies deps({bump});
    Tensor prod = x * ones({2}, float32);
    z = prod + v.value();
  }
  const Traced t = run_traced(sess, {z}, {{x, xt::xarray<float>{1.f, 2.f}}});
  CHECK(t.count("Mul") == 0);
  CHECK(t.count("AssignAdd") == 1);
  require_same_bits(t.values[0].as<float>(), xt::xarray<float>{2.f, 3.f});  // v read after the bump
}

TEST_CASE("simplify.max_pool_grad_relu_checks_its_features") {
  // _MaxPoolGradRelu built by hand with a MaxPoolGrad's inputs and attributes: the features must
  // have orig_input's dtype and shape, checked when built and, where unknown then, when run.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 4, 4, 2}, "x");
  const Tensor dx = *gradients(reduce_sum(nn::max_pool(x, {2, 2}, {2, 2}, "VALID", "NHWC")), {x})[0];
  const Operation mpg = dx.op();
  REQUIRE(mpg.type() == "MaxPoolGrad");
  std::vector<Tensor> ins = mpg.inputs();
  ins.push_back(placeholder(float64, {-1, 4, 4, 2}));
  const std::string typed = message_of<TypeError>([&] { build_op("_MaxPoolGradRelu", ins, mpg.node()->attrs, "mpr"); });
  CHECK(contains(typed, "'mpr' (op: '_MaxPoolGradRelu')"));
  CHECK(contains(typed, "features has type double, not float"));
  ins.back() = placeholder(float32, {-1, 4, 5, 2});
  const std::string shaped = message_of<ValueError>([&] { build_op("_MaxPoolGradRelu", ins, mpg.node()->attrs, "mpr2"); });
  CHECK(contains(shaped, "'mpr2' (op: '_MaxPoolGradRelu')"));
  CHECK(contains(shaped, "features"));
  Tensor f = placeholder(float32, Shape::unknown(), "f");
  ins.back() = f;
  const Tensor out = build_op("_MaxPoolGradRelu", ins, mpg.node()->attrs, "mpr3").output(0);
  Session sess;
  const std::string run = message_of<InvalidArgumentError>([&] {
    sess.run(out, {{x, xt::xarray<float>(xt::ones<float>({3, 4, 4, 2}))}, {f, xt::xarray<float>(xt::ones<float>({3, 4, 4, 1}))}});
  });
  CHECK(contains(run, "'mpr3'"));
  CHECK(contains(run, "(op: '_MaxPoolGradRelu')"));
  CHECK(contains(run, "features"));
}
