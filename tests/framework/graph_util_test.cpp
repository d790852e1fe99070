// graph_util: convert_variables_to_constants (no variable, Switch, Merge or update op is left; the
// outputs are those of the original graph in inference mode, bit for bit) and fold_batch_norms
// (the folded graph's outputs equal the unfolded inference outputs within 1e-5 relative on random
// inputs: NHWC and NCHW, conv with and without bias, scale/center off, fused and composed batch
// norms; the expected values are the original graph's own outputs).
#include <doctest/doctest.h>

#include <map>

#include <kiln.hpp>

#include "framework/graph_util.hpp"

#include "tests/support/approx.hpp"
#include "tests/support/bn_network.hpp"

using namespace kiln;
using kiln::testing::BnNetworkOptions;

namespace {

std::map<std::string, int> op_types(const Graph& g) {
  std::map<std::string, int> count;
  for (const Operation& op : g.operations()) ++count[op.type()];
  return count;
}

struct Frozen {
  std::unique_ptr<Graph> graph;
  xt::xarray<float> input;
  Array expected;  // the original graph's inference output
};

Frozen freeze(const BnNetworkOptions& o) {
  Graph g;
  auto guard = g.as_default();
  Session sess(g);
  const auto m = kiln::testing::build_bn_network(sess, o);
  Frozen f;
  f.input = kiln::testing::network_input(o, 5, 42);
  f.expected = sess.run(m.logits, {{m.x, f.input}, {m.training, false}});
  f.graph = graph_util::convert_variables_to_constants(sess, g, {m.logits.op().name()});
  return f;
}

Array run_logits(Graph& g, const xt::xarray<float>& input) {
  Session s(g);
  return s.run(g.get_tensor_by_name("logits/BiasAdd:0"), {{g.get_tensor_by_name("x:0"), input}});
}

void check_fold(const BnNetworkOptions& o) {
  const Frozen f = freeze(o);
  auto folded = graph_util::fold_batch_norms(*f.graph);
  const auto types = op_types(*folded);
  CHECK(types.count("FusedBatchNorm") == 0);
  CHECK(types.count("Rsqrt") == 0);
  CHECK(folded->num_nodes() < f.graph->num_nodes());
  CHECK(kiln::testing::allclose(run_logits(*folded, f.input), f.expected.to_double(), 1e-5, 1e-6));
}

}  // namespace

TEST_CASE("graph_util.freeze_leaves_no_variable_switch_merge_or_update") {
  for (const bool fused : {true, false}) {
    CAPTURE(fused);
    const Frozen f = freeze({.fused = fused});
    const auto types = op_types(*f.graph);
    for (const char* t : {"VariableV2", "Switch", "Merge", "Assign", "AssignSub", "AssignAdd"}) {
      CAPTURE(t);
      CHECK(types.count(t) == 0);
    }
    for (const Operation& op : f.graph->operations()) CHECK(!kiln::testing::contains(op.name(), "AssignMovingAvg"));
    // Once the conds are resolved nothing reads the training flag: it is gone. The input stays.
    CHECK_THROWS_AS(f.graph->get_operation_by_name("training"), NotFoundError);
    CHECK(f.graph->get_operation_by_name("x").type() == "Placeholder");
    CHECK(f.graph->get_operation_by_name("logits/kernel").type() == "Const");
    // Same kernels on the same values: bit-identical outputs.
    const Array out = run_logits(*f.graph, f.input);
    CHECK(xt::all(xt::equal(out.as<float>(), f.expected.as<float>())));
  }
}

TEST_CASE("graph_util.freeze_errors") {
  Graph g;
  auto guard = g.as_default();
  Session sess(g);
  const auto m = kiln::testing::build_bn_network(sess, {.train_steps = 0});
  Graph other;
  Session elsewhere(other);
  CHECK_THROWS_AS(graph_util::convert_variables_to_constants(elsewhere, g, {"logits/BiasAdd"}), ValueError);
  CHECK_THROWS_AS(graph_util::convert_variables_to_constants(sess, g, {"no_such_op"}), NotFoundError);
  // The train op writes variables: it cannot be frozen.
  CHECK_THROWS_AS(graph_util::convert_variables_to_constants(sess, g, {m.train_op.name()}), ValueError);
  // The bound name must be a scalar boolean placeholder.
  CHECK_THROWS_AS(graph_util::convert_variables_to_constants(sess, g, {"logits/BiasAdd"}, {.false_placeholders = {"x"}}),
                  TypeError);
  // fold_batch_norms wants a frozen graph.
  CHECK_THROWS_AS(graph_util::fold_batch_norms(g), ValueError);
}

TEST_CASE("graph_util.fold_nhwc_and_nchw_with_and_without_bias") {
  for (const bool channels_first : {false, true})
    for (const bool conv_bias : {false, true})
      for (const bool fused : {true, false}) {
        CAPTURE(channels_first);
        CAPTURE(conv_bias);
        CAPTURE(fused);
        check_fold({.channels_first = channels_first, .conv_bias = conv_bias, .fused = fused});
      }
}

TEST_CASE("graph_util.fold_with_scale_or_center_off") {
  for (const bool scale : {false, true})
    for (const bool center : {false, true}) {
      CAPTURE(scale);
      CAPTURE(center);
      check_fold({.conv_bias = true, .scale = scale, .center = center});
      check_fold({.channels_first = true, .scale = scale, .center = center, .fused = false});
    }
}

TEST_CASE("graph_util.fold_moves_the_statistics_into_kernel_and_bias") {
  // conv -> bn (fused): the folded graph computes Conv2D -> BiasAdd, with no multiply-add left.
  const Frozen f = freeze({.hidden_bn = false});
  auto folded = graph_util::fold_batch_norms(*f.graph);
  const auto types = op_types(*folded);
  CHECK(types.count("Mul") == 0);
  CHECK(types.at("Conv2D") == 1);
  // The op that produced the normalized output keeps its name, now a BiasAdd after the Conv2D.
  int folded_bias_adds = 0;
  for (const Operation& op : folded->operations())
    if (op.type() == "BiasAdd" && op.inputs()[0].op().type() == "Conv2D") {
      ++folded_bias_adds;
      CHECK(f.graph->get_operation_by_name(op.name()).type() == "FusedBatchNorm");
    }
  CHECK(folded_bias_adds == 1);
}

TEST_CASE("graph_util.fold_other_batch_norms_become_one_multiply_add") {
  // A batch norm on the input itself has nothing to fold into.
  Graph g;
  auto guard = g.as_default();
  const Tensor x = placeholder(float32, {-1, 4, 4, 3}, "x");
  const Tensor training = placeholder(boolean, {}, "training");
  const Tensor y = layers::batch_normalization(x, {.momentum = 0.5, .training = training, .name = "bn"});
  Session sess(g);
  sess.run(global_variables_initializer());
  const auto input = kiln::testing::random_input({6, 4, 4, 3}, 3);
  sess.run(get_collection(GraphKeys::UPDATE_OPS), {{x, input}, {training, true}});
  const Array expected = sess.run(y, {{x, input}, {training, false}});
  auto frozen = graph_util::convert_variables_to_constants(sess, g, {y.name()});
  auto folded = graph_util::fold_batch_norms(*frozen);
  const auto types = op_types(*folded);
  CHECK(types.at("Mul") == 1);
  CHECK(types.at("Add") == 1);
  CHECK(types.count("FusedBatchNorm") == 0);
  Session s(*folded);
  const Array out = s.run(folded->get_tensor_by_name(y.name()), {{folded->get_tensor_by_name("x:0"), input}});
  CHECK(kiln::testing::allclose(out, expected.to_double(), 1e-5, 1e-6));
}
