// Graph building: dtypes, shapes, names, scopes, collections, control dependencies, lookups,
// graphviz, the op registry.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <sstream>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/graph_state.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::ran;
using kiln::testing::graph_state;
using kiln::testing::message_of;


TEST_CASE("types.dtype_names_and_shapes") {
  CHECK(std::string(dtype_name(float32)) == "float");
  CHECK(std::string(dtype_name(int64)) == "int64");
  CHECK(Shape{-1, 28, 28, 1}.to_string() == "[?,28,28,1]");
  CHECK(Shape::unknown().to_string() == "<unknown>");
  CHECK(Shape::unknown().rank() == -1);
  CHECK(Shape{2, 3}.is_fully_defined());
  CHECK_FALSE(Shape{-1, 3}.is_fully_defined());
  CHECK(Shape{-1, 3}.is_compatible_with(Shape{5, 3}));
  CHECK_FALSE(Shape{2, 3}.is_compatible_with(Shape{2, 4}));
  CHECK(Shape{-1, 3}.merge_with(Shape{5, -1}) == Shape{5, 3});
  CHECK(Shape{-1, 3}[-1] == 3);
  CHECK(broadcast_shapes(Shape{4, 1, 3}, Shape{2, 1}) == Shape{4, 2, 3});
  CHECK(broadcast_shapes(Shape{-1, 3}, Shape{3}) == Shape{-1, 3});
  CHECK_THROWS_AS(broadcast_shapes(Shape{2, 3}, Shape{4}), ValueError);
}

TEST_CASE("graph.unique_hierarchical_names") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = placeholder(float32, {2}, "x");
  Tensor b = placeholder(float32, {2}, "x");
  CHECK(a.name() == "x:0");
  CHECK(b.name() == "x_1:0");
  {
    name_scope ns("block");
    Tensor c = identity(a, "dense");
    Tensor d = identity(a, "dense");
    CHECK(c.op().name() == "block/dense");
    CHECK(d.op().name() == "block/dense_1");
    name_scope inner("inner");
    CHECK(identity(a).op().name() == "block/inner/Identity");
  }
  {
    name_scope ns("block");  // re-entered: made unique like TF
    CHECK(ns.prefix() == "block_1/");
    CHECK(identity(a, "dense").name() == "block_1/dense:0");
  }
  {
    name_scope ns("block/");  // exact re-entry
    CHECK(identity(a, "dense").name() == "block/dense_2:0");
  }
  CHECK((a + b).op().name() == "add");
  CHECK((a + b).op().name() == "add_1");
}

TEST_CASE("graph.default_graph_is_raii") {
  Graph g1;
  Operation outer;
  {
    auto guard = g1.as_default();
    CHECK(&get_default_graph() == &g1);
    Graph g2;
    {
      auto guard2 = g2.as_default();
      CHECK(&get_default_graph() == &g2);
      outer = no_op("inner");
      CHECK(&outer.graph() == &g2);
      CHECK_THROWS_AS(reset_default_graph(), ValueError);
    }
    CHECK(&get_default_graph() == &g1);
  }
  CHECK(&get_default_graph() != &g1);
  reset_default_graph();
  CHECK(get_default_graph().operations().empty());
}

TEST_CASE("graph.lookups_by_name") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {3}, "x");
  CHECK(g.get_operation_by_name("x") == x.op());
  CHECK(g.get_tensor_by_name("x:0") == x);
  CHECK_THROWS_AS(g.get_operation_by_name("nope"), NotFoundError);
  CHECK_THROWS_AS(g.get_tensor_by_name("nope:0"), NotFoundError);
  CHECK_THROWS_AS(g.get_tensor_by_name("x:1"), NotFoundError);
  CHECK_THROWS_AS(g.get_tensor_by_name("x"), ValueError);
  CHECK_THROWS_AS(g.get_operation_by_name("x:0"), ValueError);
  try {
    g.get_tensor_by_name("bn/gamma");
  } catch (const ValueError& e) {
    CHECK(contains(e.what(), "bn/gamma"));
  }
  CHECK(g.operations().size() == 1);
}

TEST_CASE("graph.operation_accessors") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  Tensor y = placeholder(float32, {3}, "y");
  Operation dep = no_op("dep");
  Tensor z;
  {
    control_dependencies c({dep});
    z = add(x, y, "z");
  }
  CHECK(z.op().type() == "Add");
  CHECK(z.op().inputs().size() == 2);
  CHECK(z.op().inputs()[1] == y);
  CHECK(z.op().control_inputs().size() == 1);
  CHECK(z.op().control_inputs()[0] == dep);
  CHECK(z.op().outputs().size() == 1);
  CHECK(z.op().output(0) == z);
  CHECK_THROWS_AS(z.op().output(1), ValueError);
  CHECK(z.value_index() == 0);
  CHECK(z.dtype() == float32);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(&z.op().graph() == &g);
}

TEST_CASE("graph.collections_copy_order_and_scope_filter") {
  Graph g;
  auto guard = g.as_default();
  Tensor a, b, c;
  {
    name_scope ns("s1");
    a = placeholder(float32, {}, "a");
  }
  {
    name_scope ns("s2");
    b = placeholder(float32, {}, "b");
    c = placeholder(float32, {}, "c");
  }
  add_to_collection("mine", b);
  add_to_collection("mine", a.op());
  add_to_collection("mine", c);
  auto items = get_collection("mine");
  REQUIRE(items.size() == 3);
  CHECK(items[0].name() == "s2/b:0");
  CHECK(items[1].name() == "s1/a");
  CHECK(items[2].name() == "s2/c:0");
  items.clear();  // a copy: the graph's collection is untouched
  CHECK(get_collection("mine").size() == 3);
  CHECK(get_collection("mine", "s2").size() == 2);
  CHECK(get_collection("absent").empty());
  CHECK(get_collection("mine")[1].as_operation() == a.op());
  CHECK_THROWS_AS(get_collection("mine")[1].as_variable(), TypeError);
  // Items can be fetched and passed to control_dependencies.
  control_dependencies deps(get_collection("mine"));
  CHECK(no_op().control_inputs().size() == 3);
}

TEST_CASE("graph.control_dependencies_nest_union_and_clear") {
  Graph g;
  auto guard = g.as_default();
  Operation a = no_op("a"), b = no_op("b");
  Tensor t = placeholder(float32, {}, "t");
  Variable v = get_variable("v", {}, {.initializer = initializers::zeros()});
  Operation outside = no_op("outside");
  {
    control_dependencies d1({a});
    CHECK(no_op().control_inputs() == std::vector<Operation>{a});
    {
      control_dependencies d2({b, t, v});
      const auto deps = no_op().control_inputs();
      CHECK(deps.size() == 4);
      CHECK(std::find(deps.begin(), deps.end(), a) != deps.end());
      CHECK(std::find(deps.begin(), deps.end(), v.op()) != deps.end());
      {
        control_dependencies clear(nullptr);
        CHECK(no_op().control_inputs().empty());
        control_dependencies d3({b});
        CHECK(no_op().control_inputs() == std::vector<Operation>{b});
      }
    }
    CHECK(no_op().control_inputs() == std::vector<Operation>{a});
    // A dependency that is already a data input is not repeated.
    control_dependencies d4({t});
    CHECK(identity(t).op().control_inputs() == std::vector<Operation>{a});
  }
  CHECK(outside.control_inputs().empty());
  CHECK(no_op().control_inputs().empty());
}

TEST_CASE("graph.shape_inference_at_build_time") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 28, 28, 1}, "x");
  Tensor y = x * 2.0;
  CHECK(y.shape() == Shape{-1, 28, 28, 1});
  Tensor u = placeholder(float32, Shape::unknown(), "u");
  CHECK((u + x).shape() == Shape::unknown());
  CHECK(reshape(x, Shape{-1, 784}).shape() == Shape{-1, 784});
  CHECK(reshape(placeholder(float32, {2, 6}), Shape{3, -1}).shape() == Shape{3, 4});
  try {
    reshape(placeholder(float32, {2, 6}, "p"), Shape{5, 5}, "bad_reshape");
    FAIL("expected ValueError");
  } catch (const ValueError& e) {
    CHECK(contains(e.what(), "bad_reshape"));
    CHECK(contains(e.what(), "Reshape"));
    CHECK(contains(e.what(), "[2,6]"));
  }
}

TEST_CASE("graph.graphviz_draws_types_shapes_and_dashed_control_edges") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Operation before = no_op("before");
  Tensor y;
  {
    control_dependencies d({before});
    y = identity(x, "y");
  }
  std::ostringstream os;
  write_graphviz(g, os);
  const std::string dot = os.str();
  CHECK(contains(dot, "digraph"));
  CHECK(contains(dot, "Placeholder"));
  CHECK(contains(dot, "float[?,3]"));
  CHECK(contains(dot, "style=dashed"));
  CHECK(std::count(dot.begin(), dot.end(), '>') >= 2);  // "->" of two edges
}

TEST_CASE("graph.op_registry_records_are_complete") {
  const auto defs = op_registry().all();
  CHECK(defs.size() > 30);
  for (const OpDef* d : defs) {
    INFO(d->type);
    CHECK(d->shape_fn);
    CHECK(std::any_of(d->kernels.begin(), d->kernels.end(), [](const KernelFactory& k) { return bool(k); }));
    CHECK_FALSE((d->gradient && d->not_differentiable));
  }
  CHECK_THROWS_AS(op_registry().get("NoSuchOp"), NotFoundError);
  CHECK_THROWS_AS(op_registry().add(OpDef{.type = "Add"}), InternalError);
}

TEST_CASE("graph.invalid_names_raise_value_error_naming_the_name") {
  // TF's patterns: ops [A-Za-z0-9.][A-Za-z0-9_.\-/>]*, nested scopes [A-Za-z0-9_.\-/>]*.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2}, "x");
  const std::string before = graph_state(g);
  for (const char* bad : {"a b", "x:0", "_x", "-x", "/x", "caf\xc3\xa9", "tab\t"}) {
    const std::string m = message_of<ValueError>([&] { identity(x, bad); });
    std::string expected = "'";  // (appended, not "'" + s: g++ 12 warns -Wrestrict on that)
    expected.append(bad).append("' is not a valid node name");
    CHECK(contains(m, expected));
  }
  CHECK(contains(message_of<ValueError>([&] { placeholder(float32, {}, "my input"); }), "'my input'"));
  CHECK(contains(message_of<ValueError>([&] { name_scope ns("block 1"); }), "'block 1' is not a valid scope name"));
  CHECK(contains(message_of<ValueError>([&] { name_scope ns("_b"); }), "'_b' is not a valid scope name"));
  CHECK(contains(message_of<ValueError>([&] { name_scope ns("a:b/"); }), "'a:b/' is not a valid scope name"));
  CHECK(contains(message_of<ValueError>([&] { get_variable("w 1", {2}); }),
                 "Variable name 'w 1' is not a valid node name"));
  CHECK(contains(message_of<ValueError>([&] { get_variable("w:0", {2}); }), "'w:0'"));
  CHECK(contains(message_of<ValueError>([&] { variable_scope vs("my block"); }), "'my block' is not a valid scope name"));
  CHECK(contains(message_of<ValueError>([&] { Variable v(x, {.name = "v 1"}); }), "'v 1' is not a valid node name"));
  CHECK(graph_state(g) == before);  // nothing was built
  CHECK(current_variable_scope_name().empty());
  CHECK(g.name_scope_prefix().empty());

  // Valid: nested names may start with '_' or '-' (the full name starts with the outer scope),
  // '.', '-', '>' and digits anywhere, a leading '.' or digit at the root.
  CHECK(identity(x, ".x-1>y").op().name() == ".x-1>y");
  CHECK(identity(x, "0x").op().name() == "0x");
  {
    name_scope ns("outer");
    CHECK(identity(x, "_private").op().name() == "outer/_private");
    name_scope inner("_inner");
    CHECK(identity(x).op().name() == "outer/_inner/Identity");
  }
  {
    variable_scope vs("vs");
    CHECK(get_variable("_w", {2}).name() == "vs/_w:0");
  }
}

TEST_CASE("graph.names_kiln_makes_are_valid") {
  // Initializers, gradients, optimizer slots, layers' scopes, cond plumbing and "_1" suffixes: a
  // training graph built twice (so that names are made unique) has only valid names.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 6, 6, 2}, "x");
  Tensor labels = placeholder(int64, {-1}, "labels");
  Tensor training = placeholder(boolean, {}, "training");
  for (int i = 0; i < 2; ++i) {
    Tensor h = layers::conv2d(x, 3, 3, {.padding = "same", .activation = nn::relu});
    h = layers::batch_normalization(h, {.training = training, .renorm = i == 1});
    h = layers::dropout(layers::flatten(layers::max_pooling2d(h, 2, 2)), {.training = training});
    Tensor loss = losses::sparse_softmax_cross_entropy(labels, layers::dense(h, 4));
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    train::AdamOptimizer(1e-3).minimize(loss, {.global_step = train::get_or_create_global_step()});
  }
  global_variables_initializer();
  CHECK(g.num_nodes() > 300);
  for (const Operation& op : g.operations()) CHECK_MESSAGE(kiln::detail::is_valid_node_name(op.name()), op.name());
}

TEST_CASE("graph.control_dependencies_on_another_graph_raise_value_error") {
  Graph other;
  Operation foreign;
  Tensor foreign_t;
  {
    auto og = other.as_default();
    foreign = no_op("foreign_op");
    foreign_t = placeholder(float32, {}, "foreign_t");
  }
  Graph g;
  auto guard = g.as_default();
  Operation local = no_op("local_op");
  std::string m = message_of<ValueError>([&] { control_dependencies deps({local, foreign}); });
  CHECK(contains(m, "'foreign_op'"));
  CHECK(contains(m, "'local_op'"));
  CHECK(contains(message_of<ValueError>([&] { control_dependencies deps(foreign_t); }), "'foreign_t:0'"));
  CHECK(contains(message_of<ValueError>([&] { control_dependencies deps({Operation()}); }), "null"));
  CHECK(no_op("after").control_inputs().empty());  // no frame was left behind
  // add_control_input keeps its promise: ValueError naming both, no edge added.
  m = message_of<ValueError>([&] { local.add_control_input(foreign); });
  CHECK(contains(m, "'foreign_op'"));
  CHECK(contains(m, "'local_op'"));
  CHECK(contains(message_of<ValueError>([&] { local.add_control_input(local); }), "'local_op'"));
  CHECK(local.control_inputs().empty());
}

TEST_CASE("graph.control_dependencies_take_ranges_and_single_items") {
  Graph g;
  auto guard = g.as_default();
  Operation a = no_op("a"), b = no_op("b");
  Tensor t = placeholder(float32, {}, "t");
  Variable v = get_variable("v", {}, {.initializer = initializers::zeros()});
  const auto deps_of_new_op = [] { return no_op().control_inputs().size(); };
  {
    const std::vector<Operation> ops{a, b};
    control_dependencies deps(ops);
    CHECK(deps_of_new_op() == 2);
  }
  {
    control_dependencies deps(std::vector<Tensor>{t, v.value()});
    CHECK(deps_of_new_op() == 2);
  }
  {
    control_dependencies deps(a);
    CHECK(no_op().control_inputs() == std::vector<Operation>{a});
  }
  {
    control_dependencies deps(t);
    CHECK(no_op().control_inputs() == std::vector<Operation>{t.op()});
  }
  {
    control_dependencies deps(v);
    CHECK(no_op().control_inputs() == std::vector<Operation>{v.op()});
  }
  {
    const std::array<Variable, 1> vars{v};
    control_dependencies deps(vars);
    CHECK(deps_of_new_op() == 1);
  }
  {
    control_dependencies deps({a, t});  // braced lists keep working
    CHECK(deps_of_new_op() == 2);
  }
}

TEST_CASE("graph.checkpoint_rolls_back_everything_built_since") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2}, "x");
  Operation old_op = no_op("old");
  Variable w = get_variable("w", {2}, {.initializer = initializers::ones()});
  add_to_collection("mine", x);
  { name_scope ns("block"); identity(x); }
  const std::string before = graph_state(g);
  const int nodes = g.num_nodes();

  const auto build = [&] {
    name_scope ns("block");  // block_1
    Tensor y = identity(x) * w.value();
    Variable u = get_variable("u", {2}, {.initializer = initializers::zeros(), .regularizer = [](const Tensor& t) {
                                           return reduce_sum(t);
                                         }});
    add_to_collection("mine", y);
    add_to_collection("new_key", u);
    add_to_collection(GraphKeys::UPDATE_OPS, assign(u, y));
    old_op.add_control_input(y.op());  // an edge from the old part of the graph into the new one
    cond(placeholder(boolean, {}, "p"), [&] { return x + 1.0; }, [&] { return x; });
    return y;
  };
  std::string names_first;
  {
    GraphCheckpoint checkpoint(g);
    Tensor y = build();
    names_first = y.name();
    CHECK(g.num_nodes() > nodes);
  }  // not committed: rolled back
  CHECK(graph_state(g) == before);
  CHECK(g.num_nodes() == nodes);
  CHECK(old_op.control_inputs().empty());
  CHECK(global_variables() == std::vector<Variable>{w});
  CHECK(get_collection(GraphKeys::REGULARIZATION_LOSSES).empty());
  CHECK_THROWS_AS(g.get_operation_by_name("u"), NotFoundError);
  CHECK_FALSE(g.name_in_use("block_1"));
  CHECK(g.name_in_use("block"));

  // The same names again, then kept when committed; nesting: an inner rollback inside.
  {
    GraphCheckpoint outer(g);
    Tensor y = build();
    CHECK(y.name() == names_first);
    const std::string built = graph_state(g);
    {
      GraphCheckpoint inner(g);
      identity(y, "scratch");
      get_variable("scratch_var", {1});
    }
    CHECK(graph_state(g) == built);
    outer.commit();
  }
  CHECK(g.get_operation_by_name("u").type() == "VariableV2");
  CHECK(old_op.control_inputs().size() == 1);
  CHECK(identity(x, "block_1").op().name() == "block_1_1");  // the counters were kept too
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(sess.run(get_collection("mine")[1], {{x, xt::xarray<float>{1, 2}}}).to_double() == xt::xarray<double>{1, 2});
}
