// The Layer base (TF1's tf.layers.Layer): build on the first call under a variable scope, naming
// (unique default names, functional names as scopes), reuse, trainable, updates, regularizer losses.
// A minimal layer, Scale (y = x * w, one update per call), exercises the machinery.
#include <doctest/doctest.h>

#include <string>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/graph_state.hpp"


using namespace kiln;

namespace {

using kiln::testing::contains;
using kiln::testing::message_of;

struct ScaleOptions {
  std::string name{};
  Reuse reuse = Reuse::inherit;
  bool trainable = true;
  TensorFn regularizer{};
  bool functional = false;
};

class Scale : public layers::Layer {
 public:
  explicit Scale(ScaleOptions o = {})
      : Layer(o.name, "scale", o.trainable, o.reuse, o.functional), reg_(std::move(o.regularizer)) {}
  Tensor operator()(const Tensor& x) {
    return call_in_scope(x.shape(), [&] {
      add_update(assign_add(counter_, scalar(1.0)));
      const Tensor y = multiply(x, w_.value(), "mul");
      if (fail_in_call) throw ValueError("call failed on purpose in " + display_name());
      return y;
    });
  }
  Variable w_, counter_;
  int builds = 0;
  bool fail = false;
  bool fail_in_call = false;

 protected:
  void build(const Shape& s) override {
    ++builds;
    if (fail) throw ValueError("build failed on purpose in " + display_name());
    w_ = add_variable("w", Shape{s[-1]}, {.initializer = initializers::ones(), .regularizer = reg_});
    counter_ = add_variable("counter", Shape{}, {.initializer = initializers::zeros(), .trainable = false});
  }
  void forget_variables() override { w_ = counter_ = Variable(); }

 private:
  TensorFn reg_;
};

std::vector<std::string> names(const std::vector<GraphElement>& items) {
  std::vector<std::string> r;
  for (auto& i : items) r.push_back(i.name());
  return r;
}

}  // namespace

TEST_CASE("layer.unnamed_layers_get_unique_zero_based_names") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Scale a, b;
  CHECK_FALSE(a.built());
  a(x);
  b(x);
  CHECK(a.built());
  CHECK(a.scope_name() == "scale");
  CHECK(b.scope_name() == "scale_1");
  CHECK(a.name() == "scale");
  CHECK(b.w_.name() == "scale_1/w:0");
  {
    variable_scope vs("block");
    Scale c, d;
    Tensor y = c(x);
    d(x);
    CHECK(c.scope_name() == "block/scale");
    CHECK(d.scope_name() == "block/scale_1");
    CHECK(c.w_.name() == "block/scale/w:0");
    CHECK(y.op().name() == "block/scale/mul");
  }
  {  // the counters are per enclosing scope
    variable_scope vs("other");
    Scale e;
    e(x);
    CHECK(e.scope_name() == "other/scale");
  }
}

TEST_CASE("layer.second_call_shares_variables_and_appends_updates") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Tensor x2 = placeholder(float32, {4, 3}, "x2");
  Scale a;
  Tensor y1 = a(x);
  Tensor y2 = a(x2);
  CHECK(a.builds == 1);
  CHECK(a.variables().size() == 2);
  CHECK(a.updates().size() == 2);
  CHECK(names(get_collection(GraphKeys::UPDATE_OPS)) == names(a.updates()));
  // The second call re-enters the first call's name scope.
  CHECK(y1.op().name() == "scale/mul");
  CHECK(y2.op().name() == "scale/mul_1");
  CHECK(global_variables().size() == 2);
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(a.updates());
  CHECK(sess.run(a.counter_).scalar<float>() == 2.0f);
}

TEST_CASE("layer.named_objects_are_unique_functional_names_are_scopes") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Scale a({.name = "s"}), b({.name = "s"});
  a(x);
  b(x);
  CHECK(a.scope_name() == "s");
  CHECK(b.scope_name() == "s_1");  // TF: a layer object's name is a default name
  Scale f1({.name = "f", .functional = true});
  f1(x);
  CHECK(f1.scope_name() == "f");
  Scale f2({.name = "f", .functional = true});
  const std::string m = message_of<ValueError>([&] { f2(x); });
  CHECK(contains(m, "Variable f/w already exists, disallowed. Did you mean to set reuse=true or reuse=auto_reuse in VarScope?"));
  CHECK_FALSE(f2.built());
}

TEST_CASE("layer.reuse_shares_variables_and_reports_missing_ones") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Scale f1({.name = "f", .functional = true});
  Tensor y1 = f1(x);
  Scale f2({.name = "f", .reuse = Reuse::reuse, .functional = true});
  Tensor y2 = f2(x);
  CHECK(f2.w_ == f1.w_);
  CHECK(f2.scope_name() == "f");
  CHECK(y1.op().name() == "f/mul");
  CHECK(y2.op().name() == "f_1/mul");  // op names are made unique separately
  CHECK(global_variables().size() == 2);
  // A reusing object without a name uses the base name itself.
  Scale unnamed;
  unnamed(x);
  Scale again({.reuse = Reuse::reuse});
  again(x);
  CHECK(again.w_ == unnamed.w_);
  Scale missing({.name = "nope", .reuse = Reuse::reuse});
  CHECK(contains(message_of<ValueError>([&] { missing(x); }),
                 "Variable nope/w does not exist, or was not created with get_variable()"));
  // auto_reuse creates when absent and reuses when present.
  Scale ar1({.name = "ar", .reuse = Reuse::auto_reuse}), ar2({.name = "ar", .reuse = Reuse::auto_reuse});
  ar1(x);
  ar2(x);
  CHECK(ar1.w_ == ar2.w_);
}

TEST_CASE("layer.reentering_a_scope_with_reuse_rebuilds_the_same_names") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Scale a, b;
  {
    variable_scope vs("outer");
    a(x);
  }
  {
    variable_scope vs("outer", {.reuse = Reuse::reuse});
    b(x);
  }
  CHECK(b.scope_name() == "outer/scale");
  CHECK(b.w_ == a.w_);
  CHECK(global_variables().size() == 2);
}

TEST_CASE("layer.trainable_flag_and_variable_lists") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Scale t, f({.trainable = false});
  t(x);
  f(x);
  CHECK(t.trainable_variables() == std::vector<Variable>{t.w_});
  CHECK(t.non_trainable_variables() == std::vector<Variable>{t.counter_});
  CHECK(t.variables() == std::vector<Variable>{t.w_, t.counter_});
  CHECK(f.trainable_variables().empty());
  CHECK(f.non_trainable_variables() == std::vector<Variable>{f.w_, f.counter_});
  CHECK(trainable_variables() == std::vector<Variable>{t.w_});
}

TEST_CASE("layer.regularizer_losses_are_created_once") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  const TensorFn reg = [](const Tensor& w) { return reduce_sum(square(w)) * 0.5; };
  Scale a({.name = "r", .regularizer = reg, .functional = true});
  a(x);
  a(x);
  CHECK(a.losses().size() == 1);
  Scale b({.name = "r", .reuse = Reuse::reuse, .regularizer = reg, .functional = true});
  b(x);
  CHECK(b.losses().empty());
  const auto losses = get_collection(GraphKeys::REGULARIZATION_LOSSES);
  REQUIRE(losses.size() == 1);
  CHECK(losses[0].as_tensor() == a.losses()[0]);
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(a.losses()[0]).scalar<float>() == doctest::Approx(1.5));
}

TEST_CASE("layer.a_failed_build_leaves_the_layer_unbuilt") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Scale a;
  a.fail = true;
  CHECK(contains(message_of<ValueError>([&] { a(x); }), "build failed on purpose in scale"));
  CHECK_FALSE(a.built());
  CHECK(a.variables().empty());
  a.fail = false;
  a(x);
  CHECK(a.built());
  CHECK(a.builds == 2);
  CHECK(a.variables().size() == 2);
}

TEST_CASE("layer.a_failed_call_is_all_or_nothing") {
  // A first call that fails after build() created variables, ops and updates leaves the graph as
  // it was (ops, names, variables, store, collections, counters) and the layer unbuilt; the retry
  // builds the same names.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  const std::string before = kiln::testing::graph_state(g);
  Scale a({.name = "s", .regularizer = [](const Tensor& t) { return reduce_sum(t); }});
  a.fail_in_call = true;
  CHECK(contains(message_of<ValueError>([&] { a(x); }), "call failed on purpose in s"));
  CHECK(kiln::testing::graph_state(g) == before);
  CHECK_FALSE(a.built());
  CHECK(a.variables().empty());
  CHECK(a.updates().empty());
  CHECK(a.losses().empty());
  CHECK_FALSE(a.w_.valid());  // forget_variables()
  CHECK_FALSE(g.name_in_use("s"));
  a.fail_in_call = false;
  Tensor y = a(x);
  CHECK(a.scope_name() == "s");
  CHECK(a.w_.name() == "s/w:0");
  CHECK(y.op().name() == "s/mul");
  CHECK(a.losses().size() == 1);

  // A later call that fails takes back its ops and updates, and keeps the layer built.
  const std::string built = kiln::testing::graph_state(g);
  a.fail_in_call = true;
  CHECK_THROWS_AS(a(x), ValueError);
  CHECK(kiln::testing::graph_state(g) == built);
  CHECK(a.built());
  CHECK(a.updates().size() == 1);
  a.fail_in_call = false;
  CHECK(a(x).op().name() == "s/mul_1");
  CHECK(a.updates().size() == 2);
}
