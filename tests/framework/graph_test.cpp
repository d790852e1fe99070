// Graph building: dtypes, shapes, names, scopes, collections, control dependencies, lookups,
// graphviz, the op registry.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::ran;


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
    CHECK(std::any_of(d->kernels.begin(), d->kernels.end(), [](const Kernel& k) { return bool(k); }));
    CHECK_FALSE((d->gradient && d->not_differentiable));
  }
  CHECK_THROWS_AS(op_registry().get("NoSuchOp"), NotFoundError);
  CHECK_THROWS_AS(op_registry().add(OpDef{.type = "Add"}), InternalError);
}
