// Session::explain: what a run would do, without running it.
#include <doctest/doctest.h>

#include <kiln.hpp>

#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::contains;

namespace {
// Checked by hand against the graph below: x and training are fed; the false branch (y_1, add and
// its pivot switch_f) is dead because training is true; bn/AssignMovingAvg runs only because
// `train` was built under control_dependencies(UPDATE_OPS); moving's initializer, `unused` and
// the variable's reads outside the run are pruned.
const char* const EXPECTED_TEXT = R"(Run of train with feeds x:0, training:0: 12 ops run, 2 fed, 3 dead, 4 pruned
Execution order, grouped by name scope:
  (root)  [2 ops]
    1. x (Placeholder)  -- fed
    2. training (Placeholder)  -- fed
  cond/  [10 ops]
    3. cond/Switch_2 (Switch)
    4. cond/Switch (Switch)
    5. cond/switch_f (Identity)  -- dead: in the false branch of cond(training:0), which is true
    6. cond/y_1 (Const)  -- dead: in the false branch of cond(training:0), which is true
    7. cond/add (Add)  -- dead: in the false branch of cond(training:0), which is true
    8. cond/Switch_1 (Switch)
    9. cond/switch_t (Identity)
    10. cond/y (Const)
    11. cond/mul (Mul)
    12. cond/Merge (Merge)
  (root)  [1 op]
    13. moving (VariableV2)
  bn/  [3 ops]
    14. bn/y (Const)
    15. bn/mul (Mul)
    16. bn/AssignMovingAvg (Assign)
  (root)  [1 op]
    17. train (NoOp)
Cond branches:
  cond(training:0) = true before the run: the true branch runs, 3 ops of the false branch are dead
Pulled in by control dependencies:
  train depends on cond/Merge through group() or control_dependencies (chain: cond/Merge <- train)
  train depends on bn/AssignMovingAvg through control_dependencies(UPDATE_OPS) (chain: bn/AssignMovingAvg <- train)
Pruned (not run), by name scope:
  (root)  [2 ops]: not needed by the fetches
  moving/Initializer/  [1 op]: not needed by the fetches
  moving/  [1 op]: not needed by the fetches
)";

// A cond on a fed predicate, an op no fetch needs, and an update op the train op depends on only
// through control_dependencies(UPDATE_OPS) — the seed's workflow in miniature.
struct TeachingGraph {
  Graph g;
  Tensor x, training, y;
  Operation train;
  Variable moving;
  TeachingGraph() {
    auto guard = g.as_default();
    x = placeholder(float32, {2}, "x");
    training = placeholder(boolean, {}, "training");
    moving = Variable(zeros({2}), {.trainable = false, .name = "moving"});
    {
      name_scope ns("bn");
      Tensor update = assign(moving, x * 0.5, "AssignMovingAvg");
      add_to_collection(GraphKeys::UPDATE_OPS, update);
    }
    y = cond(training, [&] { return x * 2.0; }, [&] { return x + 1.0; });
    Tensor unused = identity(x, "unused");
    (void)unused;
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    train = group({y}, "train");
  }
};
}  // namespace

TEST_CASE("explain.cond_pruning_and_update_ops") {
  TeachingGraph t;
  Session sess(t.g);
  const xt::xarray<float> xv{1.0f, 2.0f};
  const Explanation e = sess.explain(t.train, {{t.x, xv}, {t.training, true}});
  const std::string text = to_string(e);
  INFO(text);
  CHECK(text == EXPECTED_TEXT);
  // Nothing ran: the variable is still uninitialized, no run was recorded.
  CHECK(sess.last_run_ops().empty());
  // The same run without the dependency: the update op is pruned.
  Operation bare;
  {
    auto guard = t.g.as_default();
    bare = group({t.y}, "bare_train");
  }
  const Explanation without = sess.explain(bare, {{t.x, xv}, {t.training, true}});
  for (const auto& line : without.control_dependencies) CHECK_FALSE(contains(line, "AssignMovingAvg"));
  CHECK(std::any_of(without.pruned.begin(), without.pruned.end(),
                    [](const Explanation::Pruned& p) { return p.name == "bn/AssignMovingAvg"; }));
}

TEST_CASE("explain.computed_predicates_and_fed_tensors") {
  TeachingGraph t;
  Session sess(t.g);
  // Feeding an intermediate tensor: what computes it is pruned, with the reason.
  Tensor h, out;
  {
    auto guard = t.g.as_default();
    h = multiply(t.x, scalar(2.0), "h");
    out = add(h, scalar(1.0), "out");
  }
  const Explanation e = sess.explain(out, {{h, xt::xarray<float>{0.0f, 0.0f}}});
  REQUIRE(e.ops.size() == 3);
  CHECK(e.ops[0].note == "fed");
  CHECK(std::any_of(e.pruned.begin(), e.pruned.end(), [](const Explanation::Pruned& p) {
    return p.name == "x" && p.reason == "only feeds tensors the run is fed instead";
  }));
  // A predicate the run computes: the branch is chosen at run time.
  Tensor p2;
  Tensor z;
  {
    auto guard = t.g.as_default();
    p2 = greater(reduce_sum(t.x), scalar(0.0));
    z = cond(p2, [&] { return t.x * 3.0; }, [&] { return t.x; });
  }
  const Explanation c = sess.explain(z, {{t.x, xt::xarray<float>{1.0f, 2.0f}}});
  REQUIRE(c.conds.size() == 1);
  CHECK(contains(c.conds[0], "is computed by the run"));
  CHECK(c.num_dead() == 0);
  CHECK_THROWS_AS(sess.explain(z, {{t.x, xt::xarray<double>{1.0, 2.0}}}), InvalidArgumentError);
}
