// layers::dense / layers::Dense: variable names, shapes and collections (TF1's "dense/kernel:0"),
// values against hand-computed products, the tensordot path for rank > 2 (static and run-time
// shapes), sharing through the class, functional names and reuse, options (use_bias, trainable,
// regularizers, activity regularizer, constraints, initializers incl. the glorot_uniform default),
// errors naming the layer, and a float64 gradient check.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::check_grad;
using kiln::testing::contains;
using kiln::testing::message_of;
using kiln::testing::near_eq;

namespace {

using Arr = xt::xarray<double>;

std::vector<std::string> names(const std::vector<GraphElement>& items) {
  std::vector<std::string> r;
  for (const auto& i : items) r.push_back(i.name());
  return r;
}

bool has_op(const Graph& g, const std::string& name) {
  for (const Operation& op : g.operations())
    if (op.name() == name) return true;
  return false;
}

}  // namespace

TEST_CASE("dense.variables_names_shapes_and_collections") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Tensor y = layers::dense(x, 4);
  CHECK(y.shape() == Shape{-1, 4});
  CHECK(y.dtype() == float32);
  CHECK(g.get_tensor_by_name("dense/kernel:0").shape() == Shape{3, 4});
  CHECK(g.get_tensor_by_name("dense/bias:0").shape() == Shape{4});
  CHECK(y.op().name() == "dense/BiasAdd");
  CHECK(has_op(g, "dense/MatMul"));
  Tensor y2 = layers::dense(y, 2);
  CHECK(y2.shape() == Shape{-1, 2});
  CHECK(names(get_collection(GraphKeys::TRAINABLE_VARIABLES)) ==
        std::vector<std::string>{"dense/kernel:0", "dense/bias:0", "dense_1/kernel:0",
                                 "dense_1/bias:0"});
  CHECK(names(get_collection(GraphKeys::GLOBAL_VARIABLES)).size() == 4);
  {
    variable_scope vs("block");
    layers::dense(x, 2);
  }
  CHECK(g.get_tensor_by_name("block/dense/kernel:0").shape() == Shape{3, 2});
  // float64 inputs make float64 variables.
  Tensor y64 = layers::dense(placeholder(float64, {2, 3}), 5);
  CHECK(y64.dtype() == float64);
  CHECK(g.get_tensor_by_name("dense_2/kernel:0").dtype() == float64);
}

TEST_CASE("dense.values_with_initializers_and_activation") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 2}, "x");
  // kernel all 0.5, bias 1: y = 0.5 (x0 + x1) + 1 on each of 3 units.
  Tensor y = layers::dense(x, 3,
                           {.kernel_initializer = initializers::constant(0.5),
                            .bias_initializer = initializers::constant(1.0)});
  // relu(0.5 (x0 + x1) - 2) with a -2 bias.
  Tensor r = layers::dense(x, 1,
                           {.activation = [](const Tensor& t) { return nn::relu(t); },
                            .kernel_initializer = initializers::constant(0.5),
                            .bias_initializer = initializers::constant(-2.0)});
  CHECK(r.op().type() == "Relu");
  Session sess;
  sess.run(global_variables_initializer());
  const xt::xarray<float> xv{{1, 2}, {4, 6}};
  CHECK(near_eq(sess.run(y, {{x, xv}}), Arr{{2.5, 2.5, 2.5}, {6, 6, 6}}));
  const Arr rv = sess.run(r, {{x, xv}}).to_double();  // [2, 1]: 0.5 * 3 - 2 < 0, 0.5 * 10 - 2
  REQUIRE(rv.shape() == std::vector<std::size_t>{2, 1});
  CHECK(rv(0, 0) == 0.0);
  CHECK(rv(1, 0) == 3.0);
}

TEST_CASE("dense.default_kernel_initializer_is_glorot_uniform") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(3);
  layers::Dense fc(40);
  fc(placeholder(float32, {-1, 60}));
  Session sess;
  sess.run(global_variables_initializer());
  // glorot_uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 100).
  const auto k = sess.run(fc.kernel()).to_double();
  const double limit = std::sqrt(6.0 / 100.0);
  CHECK(xt::amax(xt::abs(k))() <= limit);
  CHECK(xt::amax(xt::abs(k))() > 0.9 * limit);
  CHECK(std::abs(xt::mean(k)()) < 0.02);
  CHECK(xt::amax(xt::abs(sess.run(fc.bias()).to_double()))() == 0.0);  // zeros
}

TEST_CASE("dense.class_shares_variables_across_calls") {
  Graph g;
  auto guard = g.as_default();
  layers::Dense fc(2, {.kernel_initializer = initializers::ones()});
  Tensor x1 = placeholder(float32, {-1, 3}), x2 = placeholder(float32, {5, 3});
  Tensor a = fc(x1), b = fc(x2);
  CHECK(fc.name() == "dense");
  CHECK(fc.variables().size() == 2);
  CHECK(global_variables().size() == 2);
  CHECK(b.shape() == Shape{5, 2});
  CHECK(b.op().name() == "dense/BiasAdd_1");  // later calls re-enter the first call's name scope
  Session sess;
  sess.run(global_variables_initializer());
  const xt::xarray<float> v{{1, 2, 3}};
  CHECK(near_eq(sess.run(a, {{x1, v}}), Arr{{6, 6}}));
  // A later input with another last dimension or dtype names the layer.
  const std::string m = message_of<ValueError>([&] { fc(placeholder(float32, {-1, 4})); });
  CHECK(contains(m, "expected axis -1 of input shape to have value 3"));
  CHECK(contains(m, "layer 'dense'"));
  CHECK(contains(message_of<TypeError>([&] { fc(placeholder(float64, {-1, 3})); }), "layer 'dense'"));
}

TEST_CASE("dense.functional_names_and_reuse") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3});
  layers::dense(x, 2, {.name = "fc"});
  CHECK(contains(message_of<ValueError>([&] { layers::dense(x, 2, {.name = "fc"}); }),
                 "Variable fc/kernel already exists"));
  Tensor y = layers::dense(x, 2, {.name = "fc", .reuse = Reuse::reuse});
  CHECK(global_variables().size() == 2);
  CHECK(y.shape() == Shape{-1, 2});
  CHECK(contains(message_of<ValueError>(
                     [&] { layers::dense(x, 2, {.name = "other", .reuse = Reuse::reuse}); }),
                 "does not exist"));
  CHECK(contains(message_of<ValueError>(
                     [&] { layers::dense(x, 3, {.name = "fc", .reuse = Reuse::reuse}); }),
                 "fc/kernel"));
  layers::dense(x, 2, {.name = "auto", .reuse = Reuse::auto_reuse});
  layers::dense(x, 2, {.name = "auto", .reuse = Reuse::auto_reuse});
  CHECK(global_variables().size() == 4);
}

TEST_CASE("dense.higher_rank_inputs_use_tensordot") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {-1, 2, 3}, "x");
  layers::Dense fc(2, {.kernel_initializer = initializers::constant(1.0),
                       .bias_initializer = initializers::constant(0.5)});
  Tensor y = fc(x);
  CHECK(y.shape() == Shape{-1, 2, 2});
  // Two unknown leading dimensions: the target shape is computed at run time.
  Tensor xu = placeholder(float64, {-1, -1, 3}, "xu");
  Tensor yu = fc(xu);
  CHECK(yu.shape().rank() == 3);
  CHECK(yu.shape()[2] == 2);
  Session sess;
  sess.run(global_variables_initializer());
  // Each output is the row sum + 0.5.
  const Arr xv{{{1, 2, 3}, {4, 5, 6}}};
  const Arr want{{{6.5, 6.5}, {15.5, 15.5}}};
  CHECK(near_eq(sess.run(y, {{x, xv}}), want));
  CHECK(near_eq(sess.run(yu, {{xu, xv}}), want));
}

TEST_CASE("dense.options_bias_trainable_regularizers_constraints") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3});
  layers::Dense nobias(2, {.use_bias = false});
  Tensor y = nobias(x);
  CHECK(y.op().type() == "MatMul");
  CHECK(!nobias.bias().valid());
  CHECK(nobias.variables().size() == 1);

  layers::Dense frozen(2, {.trainable = false});
  frozen(x);
  CHECK(frozen.trainable_variables().empty());
  CHECK(frozen.non_trainable_variables().size() == 2);
  CHECK(names(get_collection(GraphKeys::TRAINABLE_VARIABLES)) ==
        std::vector<std::string>{"dense/kernel:0"});

  layers::Dense reg(2, {.kernel_regularizer = regularizers::l2(0.1),
                        .bias_regularizer = regularizers::l1(0.2),
                        .activity_regularizer = regularizers::l2(0.3),
                        .kernel_constraint = constraints::non_neg(),
                        .name = "reg"});
  reg(x);
  CHECK(reg.losses().size() == 3);
  CHECK(get_collection(GraphKeys::REGULARIZATION_LOSSES).size() == 3);
  CHECK(reg.kernel().constraint());
  CHECK(!reg.bias().constraint());
  reg(x);  // variable losses once; the activity loss per call
  CHECK(get_collection(GraphKeys::REGULARIZATION_LOSSES).size() == 4);
  CHECK(reg.losses().size() == 4);
}

TEST_CASE("dense.errors_name_the_layer") {
  Graph g;
  auto guard = g.as_default();
  const auto value_error = [](auto fn, const std::string& part, const std::string& layer) {
    const std::string m = message_of<ValueError>(fn);
    INFO(m);
    CHECK(contains(m, part));
    CHECK(contains(m, "layer '" + layer + "'"));
  };
  value_error([] { layers::dense(placeholder(float32, {-1, -1}), 3); },
              "The last dimension of the inputs to `Dense` should be defined. Found `None`",
              "dense");
  value_error([] { layers::dense(placeholder(float32, {-1, -1}), 3, {.name = "fc"}); },
              "input shape [?,?]", "fc");
  value_error([] { layers::dense(placeholder(float32, {3}), 3); }, "expected min_ndim=2, found ndim=1",
              "dense");
  value_error([] { layers::dense(placeholder(float32), 3); }, "its rank is undefined", "dense");
  value_error([] { layers::Dense(0); }, "units must be >= 1", "dense");
  const std::string t = message_of<TypeError>([] { layers::dense(placeholder(int32, {2, 3}), 3); });
  CHECK(contains(t, "float32 or float64"));
  CHECK(contains(t, "layer 'dense'"));
  // A failed first call leaves no variables behind and no built layer.
  CHECK(global_variables().empty());
}

TEST_CASE("dense.gradient_check") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2, 2, 3}, "x");
  layers::Dense fc(2, {.activation = [](const Tensor& t) { return nn::tanh(t); }});
  Tensor y = fc(x);
  const Arr xv{{{0.1, -0.4, 0.3}, {0.7, 0.2, -0.5}}, {{-0.3, 0.6, 0.2}, {0.4, -0.1, 0.8}}};
  const Arr kv{{0.5, -0.2}, {0.3, 0.8}, {-0.6, 0.1}};
  check_grad(y, {{x, xv}, {fc.kernel(), kv}, {fc.bias(), Arr{0.1, -0.3}}});
}

TEST_CASE("dense.activation_takes_the_nn_functions_as_values") {
  // TF1's `activation=tf.nn.relu` ports as `{.activation = nn::relu}` (dense and conv2d); the
  // activations stay callable with and without a name.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {2, 3}, "x");
  CHECK(layers::dense(x, 4, {.activation = nn::relu}).op().type() == "Relu");
  CHECK(layers::dense(x, 4, {.activation = nn::tanh}).op().type() == "Tanh");
  CHECK(layers::dense(x, 4, {.activation = nn::sigmoid, .name = "fc"}).op().name() == "fc/Sigmoid");
  Tensor img = placeholder(float32, {1, 5, 5, 2}, "img");
  CHECK(layers::conv2d(img, 3, 3, {.activation = nn::elu}).op().type() == "Elu");
  CHECK(layers::conv2d(img, 3, 3, {.activation = nn::relu6}).op().type() == "Relu6");
  CHECK(layers::conv2d(img, 3, 3, {.activation = nn::softplus}).op().type() == "Softplus");
  const TensorFn act = nn::relu;
  CHECK(act(x).op().type() == "Relu");
  CHECK(nn::relu(x).op().name() == "Relu_1");
  CHECK(nn::relu(x, "named_relu").op().name() == "named_relu");
  CHECK(nn::tanh(x, "t").op().name() == "t");
  // Values: the activation of the layer's output.
  Session sess;
  sess.run(global_variables_initializer());
  Tensor y = layers::dense(x, 2, {.activation = nn::relu, .kernel_initializer = initializers::constant(-1.0)});
  sess.run(global_variables_initializer());
  CHECK(sess.run(y, {{x, xt::xarray<float>{{1, 1, 1}, {-1, -1, -1}}}}).to_double() == Arr{{0, 0}, {3, 3}});
}
