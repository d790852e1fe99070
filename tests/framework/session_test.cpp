// Session::run: fetches, feeds and their validation, pruning, plan cache, cycles, random seeds.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include <kiln.hpp>
#include <xtensor/xmath.hpp>

#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::ran;
using kiln::testing::allclose;


TEST_CASE("session.fetches_tensors_lists_and_operations") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = constant(xt::xarray<float>{1, 2, 3}, "a");
  Tensor b = a * 2.0;
  Session sess;
  CHECK(allclose(sess.run(b), {2, 4, 6}));
  auto both = sess.run({a, b});
  REQUIRE(both.size() == 2);
  CHECK(allclose(both[1], {2, 4, 6}));
  CHECK(sess.run(no_op()).empty());
  const Array v = sess.run(b);
  CHECK(v.dtype() == float32);
  CHECK(v.shape() == Shape{3});
  CHECK(v.as<float>()(2) == 6.0f);
  CHECK_THROWS_AS(v.as<double>(), InvalidArgumentError);
  CHECK(Array(2.5).scalar<double>() == 2.5);
}

TEST_CASE("session.feed_validation_names_the_placeholder") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Tensor y = x * 2.0;
  Session sess;
  CHECK(allclose(sess.run(y, {{x, xt::xarray<float>{{1, 2, 3}}}}), {{2, 4, 6}}));
  try {
    sess.run(y, {{x, xt::xarray<double>{{1, 2, 3}}}});
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(contains(e.what(), "x:0"));
    CHECK(contains(e.what(), "double"));
    CHECK(contains(e.what(), "float"));
  }
  try {
    sess.run(y, {{x, xt::xarray<float>{1, 2, 3}}});
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(contains(e.what(), "x:0"));
    CHECK(contains(e.what(), "[3]"));
    CHECK(contains(e.what(), "[?,3]"));
  }
  try {
    sess.run(y);
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(contains(e.what(), "placeholder tensor 'x'"));
  }
}

TEST_CASE("session.feeding_a_non_placeholder_overrides_it") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {}, "x");
  Tensor h = x * 3.0;
  Tensor y = h + 1.0;
  Session sess;
  // h is fed, so x is neither needed nor run.
  CHECK(sess.run(y, {{h, 10.0f}}).scalar<float>() == 11.0f);
  CHECK_FALSE(ran(sess, "x"));
  CHECK(sess.run(y, {{x, 2.0f}}).scalar<float>() == 7.0f);
}

TEST_CASE("session.prunes_unfetched_ops") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {}, "x");  // needed by `unused` only: need not be fed
  Tensor unused = identity(x, "unused");
  Tensor c = constant(Array(1.0f), "c");
  Operation dep = no_op("dep");
  Tensor out;
  {
    control_dependencies d({dep});
    out = identity(c, "out");
  }
  Session sess;
  CHECK(sess.run(out).scalar<float>() == 1.0f);
  CHECK(ran(sess, "dep"));  // control inputs are part of what a fetch needs
  CHECK(ran(sess, "c"));
  CHECK_FALSE(ran(sess, "unused"));
  CHECK_FALSE(ran(sess, "x"));
  (void)unused;
}

TEST_CASE("session.caches_plans_per_signature") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {}, "x");
  Tensor y = x + 1.0;
  Tensor z = y * 2.0;
  Session sess;
  for (int i = 0; i < 3; ++i) sess.run(y, {{x, 1.0f}});
  CHECK(sess.num_cached_plans() == 1);
  sess.run(z, {{x, 1.0f}});
  CHECK(sess.num_cached_plans() == 2);
  sess.run(z, {{y, 5.0f}});
  CHECK(sess.num_cached_plans() == 3);
  // The graph grows after a plan was cached: old plans stay valid.
  Tensor w = z - 1.0;
  CHECK(sess.run(w, {{x, 1.0f}}).scalar<float>() == 3.0f);
  CHECK(sess.run(y, {{x, 2.0f}}).scalar<float>() == 3.0f);
}

TEST_CASE("session.reports_dependency_cycles_naming_ops") {
  Graph g;
  auto guard = g.as_default();
  Operation a = no_op("a");
  Operation b;
  {
    control_dependencies d({a});
    b = no_op("b");
  }
  a.add_control_input(b);
  Session sess;
  try {
    sess.run(b);
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(contains(e.what(), "cycle"));
    CHECK(contains(e.what(), "'a'"));
    CHECK(contains(e.what(), "'b'"));
  }
  CHECK_THROWS_AS(a.add_control_input(a), ValueError);
}

TEST_CASE("session.rejects_elements_of_other_graphs") {
  Graph g1, g2;
  Tensor t1;
  {
    auto guard = g1.as_default();
    t1 = constant(Array(1.0f));
  }
  auto guard = g2.as_default();
  Session sess;
  CHECK_THROWS_AS(sess.run(t1), InvalidArgumentError);
  CHECK_THROWS_AS(add(t1, constant(Array(1.0f))), ValueError);
}

TEST_CASE("session.random_ops_are_seeded_like_tf1") {
  const auto draw_twice = [](std::optional<std::int64_t> graph_seed, std::optional<std::int64_t> op_seed) {
    Graph g;
    auto guard = g.as_default();
    if (graph_seed) set_random_seed(*graph_seed);
    Tensor r = random_normal({4}, 0.0, 1.0, float64, op_seed);
    Session sess;
    auto first = sess.run(r).to_double();
    auto second = sess.run(r).to_double();
    return std::pair{first, second};
  };
  const auto [a1, a2] = draw_twice(7, std::nullopt);
  const auto [b1, b2] = draw_twice(7, std::nullopt);
  CHECK(a1 == b1);  // reproducible across graphs and sessions
  CHECK(a2 == b2);
  CHECK(a1 != a2);  // new values on every run
  const auto [c1, c2] = draw_twice(std::nullopt, 3);
  const auto [d1, d2] = draw_twice(std::nullopt, 3);
  CHECK(c1 == d1);
  const auto [e1, e2] = draw_twice(8, std::nullopt);
  CHECK(e1 != a1);
  (void)c2, (void)d2, (void)e2, (void)b2;
}

TEST_CASE("session.random_distributions") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(1);
  Session sess;
  const auto n = sess.run(random_normal({20000}, 2.0, 3.0, float64)).to_double();
  CHECK(xt::mean(n)() == doctest::Approx(2.0).epsilon(0.1));
  CHECK(xt::stddev(n)() == doctest::Approx(3.0).epsilon(0.05));
  const auto t = sess.run(truncated_normal({20000}, 0.0, 1.0, float64)).to_double();
  CHECK(xt::amax(xt::abs(t))() <= 2.0);
  const auto u = sess.run(random_uniform({20000}, -1.0, 3.0, float32)).to_double();
  CHECK(xt::amin(u)() >= -1.0);
  CHECK(xt::amax(u)() < 3.0);
  CHECK(xt::mean(u)() == doctest::Approx(1.0).epsilon(0.05));
  CHECK_THROWS_AS(random_uniform({2}, 1.0, 0.0), ValueError);
  CHECK_THROWS_AS(random_normal({2}, 0.0, 1.0, int32), TypeError);
}

TEST_CASE("session.releases_values_after_their_last_reader") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {1000}, "x");
  Tensor h = x;
  for (int i = 0; i < 20; ++i) h = h * 1.5;  // a chain of 20 muls, each with a constant
  Session sess;
  xt::xarray<float> xv = xt::ones<float>({1000});
  const Array y = sess.run(h, {{x, xv}});
  CHECK(y.as<float>()(0) == doctest::Approx(std::pow(1.5, 20)));
  CHECK(sess.last_run_ops().size() == 40);
  // Without release, 40 outputs would be alive at the end; a chain needs about two at a time.
  CHECK(sess.last_run_peak_values() <= 3);
}
