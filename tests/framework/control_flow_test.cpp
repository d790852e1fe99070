// cond with dead-value propagation (only the taken branch runs, side effects included), group,
// no_op, Switch/Merge.
#include <doctest/doctest.h>

#include <algorithm>

#include <kiln.hpp>

#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::ran;
using kiln::testing::allclose;


TEST_CASE("control_flow.cond_runs_only_the_taken_branch") {
  Graph g;
  auto guard = g.as_default();
  Tensor pred = placeholder(boolean, {}, "pred");
  Tensor x = placeholder(float32, {2}, "x");
  Tensor y = cond(
      pred, [&] { return multiply(x, scalar(10.0, float32, "ten"), "times_ten"); },
      [&] { return add(x, scalar(1.0, float32, "one"), "plus_one"); });
  CHECK(y.shape() == Shape{2});
  Session sess;
  const xt::xarray<float> xv{1, 2};
  CHECK(allclose(sess.run(y, {{x, xv}, {pred, true}}), {10, 20}));
  CHECK(ran(sess, "cond/times_ten"));
  CHECK_FALSE(ran(sess, "cond/plus_one"));
  CHECK_FALSE(ran(sess, "cond/one"));  // the false branch's constant
  CHECK(allclose(sess.run(y, {{x, xv}, {pred, false}}), {2, 3}));
  CHECK(ran(sess, "cond/plus_one"));
  CHECK_FALSE(ran(sess, "cond/times_ten"));
  CHECK_FALSE(ran(sess, "cond/ten"));
}

TEST_CASE("control_flow.side_effects_only_in_the_taken_branch") {
  Graph g;
  auto guard = g.as_default();
  Variable v = get_variable("v", {}, {.initializer = initializers::zeros()});
  Tensor pred = placeholder(boolean, {}, "pred");
  Tensor r = cond(
      pred, [&] { return assign_add(v, scalar(1.0), "increment"); },
      [&] { return identity(v.value(), "keep"); });
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(r, {{pred, false}});
  sess.run(r, {{pred, false}});
  CHECK(sess.run(v).scalar<float>() == 0.0f);
  CHECK_FALSE(ran(sess, "cond/increment"));
  CHECK(sess.run(r, {{pred, true}}).scalar<float>() == 1.0f);
  sess.run(r, {{pred, true}});
  CHECK(sess.run(v).scalar<float>() == 2.0f);
  // The Operation form: an update op gated by the predicate.
  Operation gated = cond(
      pred, [&] { return assign_add(v, scalar(5.0)).op(); }, [&] { return no_op(); });
  sess.run(gated, {{pred, false}});
  CHECK(sess.run(v).scalar<float>() == 2.0f);
  sess.run(gated, {{pred, true}});
  CHECK(sess.run(v).scalar<float>() == 7.0f);
}

TEST_CASE("control_flow.cond_with_constant_pred_and_outside_results") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = constant(Array(3.0f), "a");
  Tensor b = constant(Array(4.0f), "b");
  // Branches may return tensors built outside them.
  Tensor r = cond(constant(Array(true)), [&] { return a; }, [&] { return b; });
  Session sess;
  CHECK(sess.run(r).scalar<float>() == 3.0f);
}

TEST_CASE("control_flow.nested_cond") {
  Graph g;
  auto guard = g.as_default();
  Tensor p = placeholder(boolean, {}, "p");
  Tensor q = placeholder(boolean, {}, "q");
  Tensor x = placeholder(float32, {}, "x");
  Tensor y = cond(
      p, [&] { return cond(q, [&] { return x * 2.0; }, [&] { return x * 3.0; }); }, [&] { return x - 1.0; });
  Session sess;
  CHECK(sess.run(y, {{p, true}, {q, true}, {x, 5.0f}}).scalar<float>() == 10.0f);
  CHECK(sess.run(y, {{p, true}, {q, false}, {x, 5.0f}}).scalar<float>() == 15.0f);
  CHECK(sess.run(y, {{p, false}, {q, true}, {x, 5.0f}}).scalar<float>() == 4.0f);
  // q is only needed inside the taken outer branch, but the graph still reads it through a Switch.
}

TEST_CASE("control_flow.cond_errors") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {}, "x");
  try {
    cond(x, [&] { return x; }, [&] { return x; });
    FAIL("expected TypeError");
  } catch (const TypeError& e) {
    CHECK(contains(e.what(), "x:0"));
  }
  CHECK_THROWS_AS(cond(placeholder(boolean, {2}, "vec"), [&] { return x; }, [&] { return x; }), ValueError);
  CHECK_THROWS_AS(cond(placeholder(boolean, {}), [&] { return x; }, [&] { return cast(x, float64); }), TypeError);
  CHECK_THROWS_AS(cond(
                      placeholder(boolean, {}), [&] { return std::vector<Tensor>{x, x}; },
                      [&] { return std::vector<Tensor>{x}; }),
                  ValueError);
}

TEST_CASE("control_flow.fetching_an_untaken_branch_is_an_error") {
  Graph g;
  auto guard = g.as_default();
  Tensor p = placeholder(boolean, {}, "p");
  Tensor x = placeholder(float32, {}, "x");
  auto [f, t] = switch_(x, p);
  Session sess;
  CHECK(sess.run(t, {{p, true}, {x, 1.0f}}).scalar<float>() == 1.0f);
  try {
    sess.run(t, {{p, false}, {x, 1.0f}});
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(contains(e.what(), "Switch:1"));
  }
  auto [m, index] = merge({f, t});
  CHECK(sess.run(index, {{p, false}, {x, 1.0f}}).scalar<std::int32_t>() == 0);
  CHECK(sess.run(index, {{p, true}, {x, 1.0f}}).scalar<std::int32_t>() == 1);
  (void)m;
}

TEST_CASE("control_flow.group_and_no_op") {
  Graph g;
  auto guard = g.as_default();
  Variable a = get_variable("a", {}, {.initializer = initializers::zeros()});
  Variable b = get_variable("b", {}, {.initializer = initializers::zeros()});
  Operation both = group({assign_add(a, scalar(1.0)), assign_add(b, scalar(2.0))}, "both");
  CHECK(both.type() == "NoOp");
  CHECK(both.name() == "both");
  CHECK(both.control_inputs().size() == 2);
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(both).empty());
  CHECK(sess.run(a).scalar<float>() == 1.0f);
  CHECK(sess.run(b).scalar<float>() == 2.0f);
}
