// Variables: get_variable, initializers, variable scopes and reuse (TF's messages), tf.Variable,
// assign ops, collections, initialization errors.
#include <doctest/doctest.h>

#include <cmath>

#include <kiln.hpp>
#include <xtensor/xmath.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::ran;
using kiln::testing::allclose;

namespace {
template <class F>
std::string value_error(F f) {
  try {
    f();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "no ValueError";
}
}  // namespace

TEST_CASE("variable.get_variable_names_collections_and_values") {
  Graph g;
  auto guard = g.as_default();
  Variable w = get_variable("w", {2, 3}, {.initializer = initializers::constant(0.5)});
  Variable s = get_variable("steps", {}, {.dtype = int64, .trainable = false});
  CHECK(w.name() == "w:0");
  CHECK(w.op().type() == "VariableV2");
  CHECK(w.shape() == Shape{2, 3});
  CHECK(w.trainable());
  CHECK(Tensor(w).name() == "w:0");
  CHECK(global_variables().size() == 2);
  REQUIRE(trainable_variables().size() == 1);
  CHECK(trainable_variables()[0] == w);
  CHECK(get_collection(GraphKeys::GLOBAL_VARIABLES)[1].as_variable() == s);
  CHECK(w.initializer().name() == "w/Assign");
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(allclose(sess.run(w), {{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}}));
  CHECK(sess.run(s).scalar<std::int64_t>() == 0);
  CHECK_THROWS_AS(get_variable("v", {-1, 3}), ValueError);
}

TEST_CASE("variable.uninitialized_read_names_the_variable") {
  Graph g;
  auto guard = g.as_default();
  Variable w = get_variable("layer/w", {2});
  Tensor y = w * 2.0;
  Session sess;
  try {
    sess.run(y);
    FAIL("expected FailedPreconditionError");
  } catch (const FailedPreconditionError& e) {
    CHECK(contains(e.what(), "layer/w"));
  }
  CHECK_THROWS_AS(sess.run(w), FailedPreconditionError);
  CHECK_THROWS_AS(sess.run(assign_add(w, ones({2}))), FailedPreconditionError);
  sess.run(variables_initializer({w}));
  CHECK(sess.run(y).size() == 2);
}

TEST_CASE("variable.assign_ops_and_read_after_write") {
  Graph g;
  auto guard = g.as_default();
  Variable v = get_variable("v", {2}, {.initializer = initializers::zeros()});
  Tensor a = assign(v, constant(xt::xarray<float>{1, 2}));
  Tensor add = assign_add(v, constant(xt::xarray<float>{10, 10}));
  Tensor sub = assign_sub(v, constant(xt::xarray<float>{1, 1}));
  Tensor read_after;
  {
    control_dependencies d({add});
    read_after = identity(v.value());
  }
  Session sess;
  sess.run(global_variables_initializer());
  const Array before = sess.run(v);
  CHECK(allclose(sess.run(a), {1, 2}));
  CHECK(allclose(before, {0, 0}));  // fetched values are snapshots
  CHECK(allclose(sess.run(read_after), {11, 12}));
  CHECK(allclose(sess.run(sub), {10, 11}));
  CHECK(allclose(sess.run(v), {10, 11}));
  CHECK_THROWS_AS(assign(v, constant(xt::xarray<float>{1, 2, 3})), ValueError);
  CHECK_THROWS_AS(assign(v, constant(xt::xarray<double>{1, 2})), TypeError);
}

TEST_CASE("variable.scopes_and_reuse_like_tf") {
  Graph g;
  auto guard = g.as_default();
  Variable w;
  {
    variable_scope vs("block1");
    w = get_variable("w", {3});
    CHECK(w.name() == "block1/w:0");
    CHECK(identity(w.value()).op().name() == "block1/Identity");
  }
  {
    variable_scope vs("block1");
    const std::string msg = value_error([] { get_variable("w", {3}); });
    CHECK(contains(msg, "Variable block1/w already exists, disallowed. Did you mean to set reuse=true or reuse=auto_reuse in VarScope?"));
  }
  {
    variable_scope vs("block1", {.reuse = Reuse::reuse});
    CHECK(get_variable("w", {3}) == w);
    CHECK(contains(value_error([] { get_variable("b", {3}); }),
                   "Variable block1/b does not exist, or was not created with get_variable()"));
    CHECK(contains(value_error([] { get_variable("w", {4}); }), "Trying to share variable block1/w"));
    variable_scope inner("inner");  // reuse is inherited
    CHECK(inner.reuse());
    CHECK(inner.name() == "block1/inner");
  }
  {
    variable_scope vs("block1", {.reuse = Reuse::auto_reuse});
    CHECK(get_variable("w", {3}) == w);
    CHECK(get_variable("b", {3}).name() == "block1/b:0");
  }
  // Variable names ignore name scopes.
  name_scope ns("ns");
  CHECK(get_variable("free", {1}).name() == "free:0");
}

TEST_CASE("variable.default_names_restart_when_a_scope_is_reentered") {
  Graph g;
  auto guard = g.as_default();
  const auto unnamed = [] {
    variable_scope vs("", {.default_name = "dense"});
    return vs.name();
  };
  CHECK(unnamed() == "dense");
  CHECK(unnamed() == "dense_1");
  {
    variable_scope outer("outer");
    CHECK(unnamed() == "outer/dense");
    CHECK(unnamed() == "outer/dense_1");
  }
  {
    variable_scope outer("outer", {.reuse = Reuse::reuse});
    CHECK(unnamed() == "outer/dense");  // counters of sub-scopes restart
    CHECK(outer.original_name_scope() == "outer_1/");
  }
  CHECK(unnamed() == "dense_2");
}

TEST_CASE("variable.tf_variable_from_initial_value") {
  Graph g;
  auto guard = g.as_default();
  Variable a(ones({3}), {.trainable = false, .name = "pop_mean"});
  Variable b(ones({3}), {.trainable = false, .name = "pop_mean"});
  CHECK(a.name() == "pop_mean:0");
  CHECK(b.name() == "pop_mean_1:0");  // made unique like an op name
  CHECK_FALSE(a.trainable());
  CHECK(trainable_variables().empty());
  Variable c(constant(xt::xarray<float>{1, 2}));
  CHECK(c.name() == "Variable:0");
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(allclose(sess.run(c), {1, 2}));
  CHECK_THROWS_AS(Variable(placeholder(float32, {-1})), ValueError);
}

TEST_CASE("variable.regularizer_and_constraint_are_stored") {
  Graph g;
  auto guard = g.as_default();
  const TensorFn reg = [](const Tensor& w) { return reduce_sum(square(w)); };
  const TensorFn clip = [](const Tensor& w) { return clip_by_value(w, 0.0, 1.0); };
  Variable w;
  {
    variable_scope vs("layer");
    w = get_variable("w", {2}, {.initializer = initializers::constant(3.0), .regularizer = reg, .constraint = clip});
  }
  CHECK(get_collection(GraphKeys::REGULARIZATION_LOSSES).size() == 1);
  {
    variable_scope vs("layer", {.reuse = Reuse::reuse});
    get_variable("w", {2}, {.regularizer = reg});
  }
  CHECK(get_collection(GraphKeys::REGULARIZATION_LOSSES).size() == 1);  // once, at creation
  CHECK(bool(w.constraint()));
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(get_collection(GraphKeys::REGULARIZATION_LOSSES)[0]).scalar<float>() == 18.0f);
  CHECK(allclose(sess.run(w), {3, 3}));  // constraints never apply at init
}

TEST_CASE("variable.initializers") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(42);
  Variable gu = get_variable("gu", {200, 300}, {.initializer = initializers::glorot_uniform()});
  Variable gn = get_variable("gn", {200, 300}, {.initializer = initializers::glorot_normal()});
  Variable hn = get_variable("hn", {3, 3, 64, 128}, {.initializer = initializers::he_normal()});
  Variable rn = get_variable("rn", {10000}, {.initializer = initializers::random_normal(1.0, 0.5)});
  Variable tn = get_variable("tn", {10000}, {.initializer = initializers::truncated_normal(0.0, 2.0)});
  Variable ru = get_variable("ru", {10000}, {.initializer = initializers::random_uniform(2.0, 4.0)});
  Variable vs = get_variable("vs", {100, 100}, {.initializer = initializers::variance_scaling(2.0, "fan_out", "uniform")});
  Variable dflt = get_variable("dflt", {50, 50});  // glorot_uniform, like TF1
  Session sess;
  sess.run(global_variables_initializer());
  // Limits and standard deviations from the definitions (TF's VarianceScaling).
  const double glorot_limit = std::sqrt(6.0 / (200 + 300));
  CHECK(xt::amax(xt::abs(sess.run(gu).to_double()))() <= glorot_limit);
  CHECK(xt::stddev(sess.run(gu).to_double())() == doctest::Approx(glorot_limit / std::sqrt(3.0)).epsilon(0.03));
  CHECK(xt::stddev(sess.run(gn).to_double())() == doctest::Approx(std::sqrt(2.0 / 500)).epsilon(0.03));
  CHECK(xt::stddev(sess.run(hn).to_double())() == doctest::Approx(std::sqrt(2.0 / (9 * 64))).epsilon(0.03));
  CHECK(xt::mean(sess.run(rn).to_double())() == doctest::Approx(1.0).epsilon(0.02));
  CHECK(xt::amax(xt::abs(sess.run(tn).to_double()))() <= 4.0);
  CHECK(xt::amin(sess.run(ru).to_double())() >= 2.0);
  CHECK(xt::amax(xt::abs(sess.run(vs).to_double()))() <= std::sqrt(3.0 * 2.0 / 100));
  CHECK(xt::amax(xt::abs(sess.run(dflt).to_double()))() <= std::sqrt(6.0 / 100));
  CHECK_THROWS_AS(initializers::variance_scaling(1.0, "fan_sideways"), ValueError);
  CHECK_THROWS_AS(initializers::variance_scaling(1.0, "fan_in", "cauchy"), ValueError);
  // Reproducible across runs with a seed.
  Graph g2;
  auto guard2 = g2.as_default();
  set_random_seed(42);
  Variable gu2 = get_variable("gu", {200, 300}, {.initializer = initializers::glorot_uniform()});
  Session sess2;
  sess2.run(global_variables_initializer());
  CHECK(sess2.run(gu2).to_double() == sess.run(gu).to_double());
}

TEST_CASE("variable.scope_initializer_and_init_scope") {
  Graph g;
  auto guard = g.as_default();
  Operation dep = no_op("dep");
  control_dependencies d({dep});
  variable_scope vs("s", {.initializer = initializers::ones()});
  Variable v = get_variable("v", {2});
  // Variable creation ignores the surrounding control dependencies (TF's init_scope).
  CHECK(v.initializer().control_inputs().empty());
  Session sess;
  sess.run(v.initializer());
  CHECK(allclose(sess.run(v), {1, 1}));
}

TEST_CASE("initializers.constant_takes_a_number_or_an_array") {
  // TF's constant_initializer(value): an array (loading weights) must have the variable's shape;
  // it is converted to the variable's dtype.
  Graph g;
  auto guard = g.as_default();
  Variable w = get_variable("w", {2, 2}, {.initializer = initializers::constant(xt::xarray<double>{{1, 2}, {3, 4}})});
  Variable i = get_variable("i", {3}, {.dtype = int64, .initializer = initializers::constant(xt::xarray<float>{1, 2, 3})});
  Variable s = get_variable("s", {2}, {.initializer = initializers::constant(Array(2.5))});  // 0-d: fills
  Variable n = get_variable("n", {2}, {.initializer = initializers::constant(7)});            // a number
  CHECK(w.dtype() == float32);
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(w).as<float>() == xt::xarray<float>{{1, 2}, {3, 4}});
  CHECK(sess.run(i).as<std::int64_t>() == xt::xarray<std::int64_t>{1, 2, 3});
  CHECK(sess.run(s).as<float>() == xt::xarray<float>{2.5, 2.5});
  CHECK(sess.run(n).as<float>() == xt::xarray<float>{7, 7});

  // Another shape: ValueError naming the variable and both shapes; nothing is left behind.
  const auto vars = global_variables();
  const int nodes = g.num_nodes();
  std::string msg;
  try {
    variable_scope vs("block");
    get_variable("kernel", {3, 2}, {.initializer = initializers::constant(xt::xarray<float>{{1, 2}, {3, 4}})});
  } catch (const ValueError& e) {
    msg = e.what();
  }
  CHECK(contains(msg, "block/kernel"));
  CHECK(contains(msg, "[2,2]"));
  CHECK(contains(msg, "[3,2]"));
  CHECK(global_variables() == vars);
  CHECK(g.num_nodes() == nodes);
  {
    variable_scope vs("block", {.reuse = Reuse::reuse});
    CHECK(contains(kiln::testing::message_of<ValueError>([] { get_variable("kernel", {3, 2}); }), "does not exist"));
  }
  CHECK_THROWS_AS(initializers::constant(Array()), ValueError);
}

TEST_CASE("ops.fill_takes_its_dtype_like_tf") {
  // tf.fill(dims, value) takes the value's dtype; a C++ double gives float32 unless told.
  Graph g;
  auto guard = g.as_default();
  Tensor f = fill({2, 2}, 1.5);
  Tensor i = fill({3}, 4, int64);
  Tensor d = fill({1}, 0.25, float64);
  CHECK(f.dtype() == float32);
  CHECK(f.shape() == Shape{2, 2});
  CHECK(i.dtype() == int64);
  CHECK(d.dtype() == float64);
  Session sess;
  CHECK(sess.run(f).as<float>() == xt::xarray<float>{{1.5, 1.5}, {1.5, 1.5}});
  CHECK(sess.run(i).as<std::int64_t>() == xt::xarray<std::int64_t>{4, 4, 4});
  CHECK(sess.run(d).as<double>() == xt::xarray<double>{0.25});
}
