// write_graphviz: clusters, collapsed scopes, dashed and reduced control edges, UPDATE_OPS and
// the training branch (framework/graphviz.hpp). The DOT text is checked statement by statement.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/dot_text.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::count_lines_with;
using kiln::testing::parse_dot;

namespace {

// A layer block with batch norm fed a `training` placeholder, and the seed's train op.
void build_block(Graph& g) {
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4}, "x");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor h;
  {
    variable_scope vs("block");
    h = layers::dense(x, 3, {.use_bias = false});
    h = layers::batch_normalization(h, {.training = training});
    h = nn::relu(h);
  }
  Tensor loss = reduce_mean(h * h);
  control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
  train::GradientDescentOptimizer(0.1).minimize(loss);
}

std::string dot_of(const Graph& g, const GraphvizOptions& options) {
  std::ostringstream os;
  write_graphviz(g, os, options);
  return os.str();
}

}  // namespace

TEST_CASE("graphviz.collapsed_scopes_are_boxes_with_op_count_shape_and_variables") {
  Graph g;
  build_block(g);
  const std::string text = dot_of(g, {.collapse_below = 2});
  const auto dot = parse_dot(text);
  // "block" holds sub-scopes: a cluster; its layers are one box each.
  CHECK(count_lines_with(dot.clusters, {"subgraph cluster_"}) >= 2);  // block, gradients, ...
  CHECK(contains(text, "label=block"));
  CHECK(count_lines_with(dot.nodes, {"label=\"dense\\n", " ops \u2192 float[?,3]", "kernel [4,3]"}) == 1);
  CHECK(count_lines_with(dot.nodes, {"label=\"batch_normalization\\n", "gamma [3]", "beta [3]", "moving_mean [3]",
                                     "moving_variance [3]", "2 in UPDATE_OPS", "color=\"#d62728\""}) == 1);
  // Its training branch (batch statistics, the moving-average updates): a shaded box of its own.
  CHECK(count_lines_with(dot.nodes, {"label=\"batch_normalization\\ntraining branch", "fillcolor=\"#ffe9a8\""}) == 1);
  // A top-level scope without sub-scopes is one box too; placeholders stay ops.
  CHECK(count_lines_with(dot.nodes, {"label=\"x\\nPlaceholder\\nfloat[?,4]\""}) == 1);
  CHECK(dot.nodes.size() < 25u);
  // The train op waits for UPDATE_OPS: a dashed red edge; data edges into the updates are red too.
  CHECK(count_lines_with(dot.edges, {"style=dashed", "color=\"#d62728\""}) >= 1);
  const int red = count_lines_with(dot.edges, {"color=\"#d62728\""});
  CHECK(red - count_lines_with(dot.edges, {"style=dashed", "color=\"#d62728\""}) >= 1);  // solid ones
  CHECK(contains(text, "red: into or out of UPDATE_OPS"));
}

TEST_CASE("graphviz.one_node_per_op_in_scope_clusters") {
  Graph g;
  build_block(g);
  const std::string text = dot_of(g, {});
  const auto dot = parse_dot(text);
  CHECK(dot.nodes.size() == static_cast<std::size_t>(g.num_nodes()));
  CHECK(contains(text, "label=block"));
  CHECK(contains(text, "label=batch_normalization"));
  // A cond's true branch shaded op by op: the moving-average update runs only when training.
  CHECK(count_lines_with(dot.nodes, {"AssignSub", "fillcolor=\"#ffe9a8\""}) == 2);
  CHECK(count_lines_with(dot.nodes, {"label=\"Relu\\nfloat[?,3]\"", "fillcolor=white"}) == 1);
  // Flat: full names, no clusters.
  const auto flat = parse_dot(dot_of(g, {.clusters = false, .highlight_update_ops = false}));
  CHECK(flat.clusters.empty());
  CHECK(count_lines_with(flat.nodes, {"label=\"block/Relu\\nfloat[?,3]\""}) == 1);
  CHECK(count_lines_with(flat.edges, {"#d62728"}) == 0);
}

TEST_CASE("graphviz.control_edges_dashed_unless_a_longer_path_implies_them") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = placeholder(float32, {2}, "a");
  Operation first = no_op("first");
  Tensor b, c;
  {
    control_dependencies deps({first});
    b = identity(a, "b");  // first -> b: drawn dashed
    c = identity(b, "c");  // first -> c: implied by first -> b -> c, left out
  }
  const auto dot = parse_dot(dot_of(g, {}));
  REQUIRE(dot.nodes.size() == 4u);
  CHECK(count_lines_with(dot.edges, {"style=dashed"}) == 1);
  CHECK(count_lines_with(dot.edges, {"->"}) == 3);  // a -> b, b -> c, first -> b
  // Without options: the same picture.
  std::ostringstream os;
  write_graphviz(g, os);
  CHECK(os.str() == dot_of(g, {}));
}

TEST_CASE("graphviz.series_and_variables_are_one_node_each") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2}, "x");
  Variable w = get_variable("w", {2}, {.initializer = initializers::ones()});
  Tensor s = x * w;
  for (int i = 0; i < 4; ++i) s = add_n({s, x});
  const auto dot = parse_dot(dot_of(g, {.collapse_below = 1}));
  CHECK(count_lines_with(dot.nodes, {"label=\"AddN \u00d74\\nAddN\""}) == 1);
  CHECK(count_lines_with(dot.nodes, {"label=\"w\\nfloat[2]\"", "shape=cylinder"}) == 1);
}

TEST_CASE("graphviz.rejects_bad_options") {
  Graph g;
  std::ostringstream os;
  CHECK_THROWS_AS(write_graphviz(g, os, {.collapse_below = -1}), ValueError);
  CHECK_THROWS_WITH_AS(write_graphviz(g, os, {.rankdir = "XY"}),
                       doctest::Contains("rankdir must be TB, LR, BT or RL, got 'XY'"), ValueError);
}
