// layers::conv2d / Conv2D, max_pooling2d / average_pooling2d, flatten and dropout: variable names
// and shapes ("conv2d/kernel:0" [kh, kw, in, filters]), static shapes incl. -1 batch, both data
// formats (channels_first must give the channels_last numbers, transposed), values against
// hand-computed cases, options, sharing and reuse, errors naming the layer, dropout with a bool,
// a constant and a boolean placeholder, and float64 gradient checks through the layers.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>

#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>

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

Arr uniform(const std::vector<std::size_t>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Arr a = Arr::from_shape(shape);
  for (auto& v : a) v = u(rng);
  return a;
}

Arr to_nchw(const Arr& a) { return xt::transpose(a, {0, 3, 1, 2}); }

// A [1, H, W, 1] image from its rows.
Arr image(std::initializer_list<std::initializer_list<double>> rows) {
  Arr a = Arr::from_shape({1, rows.size(), rows.begin()->size(), 1});
  std::size_t i = 0;
  for (const auto& r : rows)
    for (const double v : r) a.data()[i++] = v;
  return a;
}

bool has_op_type(const Graph& g, const std::string& type) {
  for (const Operation& op : g.operations())
    if (op.type() == type) return true;
  return false;
}

const TensorFn relu = [](const Tensor& t) { return nn::relu(t); };

}  // namespace

// ---------------------------------------------------------------- conv2d

TEST_CASE("layers.conv2d_variables_names_and_shapes") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 28, 28, 1}, "x");
  Tensor h = layers::conv2d(x, 32, {3, 3}, {.padding = "same", .use_bias = false});
  CHECK(h.shape() == Shape{-1, 28, 28, 32});
  CHECK(h.op().name() == "conv2d/Conv2D");
  CHECK(g.get_tensor_by_name("conv2d/kernel:0").shape() == Shape{3, 3, 1, 32});
  CHECK_THROWS_AS(g.get_tensor_by_name("conv2d/bias:0"), NotFoundError);
  Tensor v = layers::conv2d(h, 8, 5, {.strides = 2});  // valid: ceil((28 - 5 + 1) / 2) = 12
  CHECK(v.shape() == Shape{-1, 12, 12, 8});
  CHECK(v.op().name() == "conv2d_1/BiasAdd");
  CHECK(g.get_tensor_by_name("conv2d_1/kernel:0").shape() == Shape{5, 5, 32, 8});
  CHECK(g.get_tensor_by_name("conv2d_1/bias:0").shape() == Shape{8});
  // Dilation 2: effective 5x5 window on 12 -> 8 (valid); strides (1, 2) with same -> (12, 6).
  CHECK(layers::conv2d(v, 4, 3, {.dilation_rate = 2}).shape() == Shape{-1, 8, 8, 4});
  CHECK(layers::conv2d(v, 4, {3, 1}, {.strides = {1, 2}, .padding = "SAME"}).shape() ==
        Shape{-1, 12, 6, 4});
  // channels_first: [N, C, H, W]; the kernel layout is the same, the bias goes on axis 1.
  Tensor xc = placeholder(float32, {-1, 3, 9, 7}, "xc");
  Tensor yc = layers::conv2d(xc, 4, {3, 2}, {.strides = 2, .data_format = "channels_first"});
  CHECK(yc.shape() == Shape{-1, 4, 4, 3});
  CHECK(g.get_tensor_by_name("conv2d_4/kernel:0").shape() == Shape{3, 2, 3, 4});
  CHECK(yc.op().type() == "BiasAdd");
}

TEST_CASE("layers.conv2d_values_hand_computed") {
  Graph g;
  auto guard = g.as_default();
  // Kernel of ones, bias 0.5, valid 2x2 on [[1 2 3] [4 5 6] [7 8 9]]: window sums + 0.5.
  Tensor x = constant(image({{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}));
  Tensor y = layers::conv2d(x, 1, 2,
                            {.kernel_initializer = initializers::ones(),
                             .bias_initializer = initializers::constant(0.5)});
  CHECK(y.dtype() == float64);
  // relu(sum - 20): only 24 and 28 survive.
  Tensor r = layers::conv2d(x, 1, 2,
                            {.activation = relu,
                             .kernel_initializer = initializers::ones(),
                             .bias_initializer = initializers::constant(-20.0)});
  Session sess;
  sess.run(global_variables_initializer());
  CHECK(near_eq(sess.run(y), image({{12.5, 16.5}, {24.5, 28.5}})));
  CHECK(near_eq(sess.run(r), image({{0, 0}, {4, 8}})));
}

TEST_CASE("layers.conv2d_channels_first_matches_channels_last") {
  Graph g;
  auto guard = g.as_default();
  const Arr xv = uniform({2, 6, 5, 3}, 1), kv = uniform({3, 2, 3, 4}, 2), bv = uniform({4}, 3);
  for (const std::string padding : {"valid", "same"}) {
    CAPTURE(padding);
    Tensor x = placeholder(float64, {-1, 6, 5, 3});
    Tensor xc = placeholder(float64, {-1, 3, 6, 5});
    layers::Conv2D last(4, {3, 2}, {.strides = {2, 1}, .padding = padding, .dilation_rate = 1});
    layers::Conv2D first(4, {3, 2}, {.strides = {2, 1}, .padding = padding,
                                     .data_format = "channels_first"});
    Tensor y = last(x), yc = first(xc);
    // Reference: the op directly, plus the bias.
    Tensor ref = nn::conv2d(x, constant(kv), {2, 1}, padding == "same" ? "SAME" : "VALID") +
                 constant(bv);
    Session sess;
    const auto out = sess.run({y, yc, ref}, {{x, xv},
                                             {xc, to_nchw(xv)},
                                             {last.kernel(), kv},
                                             {last.bias(), bv},
                                             {first.kernel(), kv},
                                             {first.bias(), bv}});
    const Arr want = out[2].to_double();
    CHECK(near_eq(out[0], want, 1e-12, 1e-12));
    CHECK(near_eq(out[1], to_nchw(want), 1e-12, 1e-12));
  }
}

TEST_CASE("layers.conv2d_sharing_reuse_and_options") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 6, 6, 2});
  layers::Conv2D conv(3, 3, {.name = "c"});
  CHECK(conv(x).shape() == Shape{-1, 4, 4, 3});
  Tensor b = conv(placeholder(float32, {4, 8, 8, 2}));
  CHECK(conv.variables().size() == 2);
  CHECK(global_variables().size() == 2);
  CHECK(conv.kernel().name() == "c/kernel:0");
  CHECK(b.shape() == Shape{4, 6, 6, 3});
  CHECK(contains(message_of<ValueError>([&] { conv(placeholder(float32, {-1, 6, 6, 3})); }),
                 "expected axis 3 of input shape to have value 2"));
  // Functional names are scopes: a second call needs reuse.
  layers::conv2d(x, 3, 3, {.name = "f"});
  CHECK(contains(message_of<ValueError>([&] { layers::conv2d(x, 3, 3, {.name = "f"}); }),
                 "Variable f/kernel already exists"));
  layers::conv2d(x, 3, 3, {.name = "f", .reuse = Reuse::reuse});
  CHECK(global_variables().size() == 4);
  // trainable, regularizers (variables once, activity per call), constraints.
  layers::Conv2D frozen(2, 1, {.trainable = false});
  frozen(x);
  CHECK(frozen.trainable_variables().empty());
  layers::Conv2D reg(2, 1, {.kernel_regularizer = regularizers::l2(0.1),
                            .activity_regularizer = regularizers::l1(0.01),
                            .bias_constraint = constraints::non_neg()});
  reg(x);
  reg(x);
  CHECK(reg.losses().size() == 3);
  CHECK(get_collection(GraphKeys::REGULARIZATION_LOSSES).size() == 3);
  CHECK(static_cast<bool>(reg.bias().constraint()));
  CHECK(!reg.kernel().constraint());
  // The glorot_uniform default: limit sqrt(6 / (fan_in + fan_out)) with the receptive field,
  // here sqrt(6 / (3*3*2 + 3*3*3)).
  Session sess;
  sess.run(global_variables_initializer());
  const auto k = sess.run(conv.kernel()).to_double();
  CHECK(xt::amax(xt::abs(k))() <= std::sqrt(6.0 / 45.0));
  CHECK(xt::amax(xt::abs(sess.run(conv.bias()).to_double()))() == 0.0);
}

TEST_CASE("layers.conv2d_errors_name_the_layer") {
  Graph g;
  auto guard = g.as_default();
  const auto value_error = [](auto fn, const std::string& part, const std::string& layer) {
    const std::string m = message_of<ValueError>(fn);
    INFO(m);
    CHECK(contains(m, part));
    CHECK(contains(m, "layer '" + layer + "'"));
  };
  Tensor x = placeholder(float32, {-1, 5, 5, 2});
  value_error([] { layers::conv2d(placeholder(float32, {-1, 5, 5}), 3, 3); },
              "expected ndim=4, found ndim=3", "conv2d");
  value_error([] { layers::conv2d(placeholder(float32), 3, 3, {.name = "c"}); },
              "expected ndim=4, found an undefined rank", "c");
  value_error([] { layers::conv2d(placeholder(float32, {-1, 5, 5, -1}), 3, 3); },
              "The channel dimension of the inputs should be defined", "conv2d");
  value_error([] { layers::conv2d(placeholder(float32, {-1, -1, 5, 5}), 3, 3,
                                  {.data_format = "channels_first"}); },
              "The channel dimension", "conv2d");
  value_error([&] { layers::conv2d(x, 3, 3, {.padding = "full"}); },
              "The `padding` argument must be one of \"valid\", \"same\"", "conv2d");
  value_error([&] { layers::conv2d(x, 3, 3, {.data_format = "NHWC"}); },
              "The `data_format` argument must be one of", "conv2d");
  value_error([&] { layers::conv2d(x, 0, 3); }, "filters must be >= 1", "conv2d");
  value_error([&] { layers::conv2d(x, 3, {0, 3}); }, "kernel_size must be >= 1", "conv2d");
  value_error([&] { layers::conv2d(x, 3, 3, {.strides = 0}); }, "strides must be >= 1", "conv2d");
  value_error([&] { layers::conv2d(x, 3, 3, {.dilation_rate = {1, -1}}); },
              "dilation_rate must be >= 1", "conv2d");
  value_error([&] { layers::conv2d(x, 3, 6); },
              "the kernel's effective height 6 exceeds the input's height 5", "conv2d");
  value_error([&] { layers::conv2d(x, 3, 3, {.dilation_rate = 3}); },
              "effective height 7", "conv2d");
  CHECK(contains(message_of<TypeError>([] { layers::conv2d(placeholder(int32, {1, 5, 5, 1}), 3, 3); }),
                 "layer 'conv2d'"));
  CHECK(global_variables().empty());
  CHECK(layers::conv2d(x, 3, 6, {.padding = "same"}).shape() == Shape{-1, 5, 5, 3});
}

TEST_CASE("layers.conv2d_gradient_check") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {2, 2, 4, 3}, "x");  // NCHW
  layers::Conv2D conv(2, 2, {.strides = {1, 2}, .padding = "same", .data_format = "channels_first",
                             .activation = [](const Tensor& t) { return nn::tanh(t); }});
  Tensor y = conv(x);
  CHECK(y.shape() == Shape{2, 2, 4, 2});
  check_grad(y, {{x, uniform({2, 2, 4, 3}, 5)},
                 {conv.kernel(), uniform({2, 2, 2, 2}, 6)},
                 {conv.bias(), Arr{0.1, -0.2}}});
}

// ---------------------------------------------------------------- pooling

TEST_CASE("layers.pooling_shapes_names_and_values") {
  Graph g;
  auto guard = g.as_default();
  Arr x16 = Arr::from_shape({1, 4, 4, 1});
  for (int i = 0; i < 16; ++i) x16.data()[i] = i;
  Tensor x = placeholder(float64, {-1, 4, 4, 1});
  Tensor m = layers::max_pooling2d(x, {2, 2}, {2, 2});
  Tensor a = layers::average_pooling2d(x, 2, 2);
  CHECK(m.op().name() == "max_pooling2d/MaxPool");
  CHECK(a.op().name() == "average_pooling2d/AvgPool");
  CHECK(m.shape() == Shape{-1, 2, 2, 1});
  // same, 3x3 windows, stride 2 on 4x4: out 2, pad_total = 1 (after).
  Tensor s = layers::max_pooling2d(x, 3, 2, {.padding = "same"});
  CHECK(s.shape() == Shape{-1, 2, 2, 1});
  Tensor xc = placeholder(float64, {-1, 1, 4, 4});
  Tensor mc = layers::max_pooling2d(xc, 2, 2, {.data_format = "channels_first"});
  Tensor ac = layers::average_pooling2d(xc, {2, 1}, {2, 1}, {.data_format = "channels_first"});
  CHECK(ac.shape() == Shape{-1, 1, 2, 4});
  CHECK(global_variables().empty());
  Session sess;
  // 0..15 as 4x4: 2x2/2 max = window's bottom-right, average = top-left + 2.5.
  CHECK(near_eq(sess.run(m, {{x, x16}}), image({{5, 7}, {13, 15}})));
  CHECK(near_eq(sess.run(a, {{x, x16}}), image({{2.5, 4.5}, {10.5, 12.5}})));
  // same: windows rows/cols {0,1,2} and {2,3}: max 10 11 14 15.
  CHECK(near_eq(sess.run(s, {{x, x16}}), image({{10, 11}, {14, 15}})));
  const Arr x16c = to_nchw(x16);
  CHECK(near_eq(sess.run(mc, {{xc, x16c}}), to_nchw(image({{5, 7}, {13, 15}}))));
  // 2x1 windows: (0 + 4) / 2 = 2, 3, 4, 5, then 10 .. 13.
  Arr want = Arr::from_shape({1, 1, 2, 4});
  for (int i = 0; i < 8; ++i) want.data()[i] = (i < 4 ? 2 : 6) + i;
  CHECK(near_eq(sess.run(ac, {{xc, x16c}}), want));
  // The class, called twice.
  layers::MaxPooling2D pool(2, 2, {.name = "p"});
  pool(x);
  Tensor again = pool(x);
  CHECK(again.op().name() == "p/MaxPool_1");
}

TEST_CASE("layers.pooling_errors_name_the_layer") {
  Graph g;
  auto guard = g.as_default();
  const auto value_error = [](auto fn, const std::string& part, const std::string& layer) {
    const std::string m = message_of<ValueError>(fn);
    INFO(m);
    CHECK(contains(m, part));
    CHECK(contains(m, "layer '" + layer + "'"));
  };
  Tensor x = placeholder(float32, {-1, 3, 3, 2});
  value_error([&] { layers::max_pooling2d(placeholder(float32, {3, 3, 2}), 2, 2); },
              "expected ndim=4, found ndim=3", "max_pooling2d");
  value_error([&] { layers::average_pooling2d(x, 2, 2, {.padding = "causal"}); },
              "The `padding` argument", "average_pooling2d");
  value_error([&] { layers::max_pooling2d(x, 2, 2, {.data_format = "NCHW", .name = "p"}); },
              "The `data_format` argument", "p");
  value_error([&] { layers::max_pooling2d(x, 0, 2); }, "pool_size must be >= 1", "max_pooling2d");
  value_error([&] { layers::max_pooling2d(x, 2, {1, 0}); }, "strides must be >= 1", "max_pooling2d");
  value_error([&] { layers::average_pooling2d(x, {2, 4}, 1); },
              "the pool's width 4 exceeds the input's width 3", "average_pooling2d");
  CHECK(contains(message_of<TypeError>([] { layers::max_pooling2d(placeholder(int32, {1, 4, 4, 1}), 2, 2); }),
                 "layer 'max_pooling2d'"));
}

// ---------------------------------------------------------------- flatten

TEST_CASE("layers.flatten_shapes_values_and_formats") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float64, {-1, 2, 3, 2}, "x");
  Tensor f = layers::flatten(x);
  CHECK(f.shape() == Shape{-1, 12});
  CHECK(f.op().name() == "flatten/Reshape");
  CHECK(layers::flatten(placeholder(float32, {5, 4})).shape() == Shape{5, 4});
  CHECK(layers::flatten(placeholder(float32, {5})).shape() == Shape{5, 1});
  // channels_first puts the channels last before flattening: same order as channels_last.
  Tensor xc = placeholder(float64, {-1, 2, 2, 3}, "xc");
  Tensor fc = layers::flatten(xc, {.data_format = "channels_first"});
  CHECK(fc.shape() == Shape{-1, 12});
  // An unknown inner dimension: the target shape is computed at run time.
  Tensor xu = placeholder(float64, {-1, -1, 3, 2}, "xu");
  Tensor fu = layers::flatten(xu);
  CHECK(fu.shape().rank() == 2);
  Tensor xr = placeholder(float64, Shape::unknown(), "xr");
  Tensor fr = layers::flatten(xr);
  const Arr xv = uniform({2, 2, 3, 2}, 7);
  const Arr want = xt::reshape_view(xv, {2, 12});
  Session sess;
  CHECK(near_eq(sess.run(f, {{x, xv}}), want));
  CHECK(near_eq(sess.run(fu, {{xu, xv}}), want));
  CHECK(near_eq(sess.run(fr, {{xr, xv}}), want));
  CHECK(near_eq(sess.run(fc, {{xc, Arr(to_nchw(xv))}}), want));
  const std::string m = message_of<ValueError>([] { layers::flatten(placeholder(float32, {})); });
  CHECK(contains(m, "layer 'flatten'"));
  CHECK(contains(m, "rank >= 1"));
  CHECK_THROWS_AS(layers::Flatten({.data_format = "NCHW"}), ValueError);
}

// ---------------------------------------------------------------- dropout

TEST_CASE("layers.dropout_with_bool_constant_and_placeholder") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 50}, "x");
  const xt::xarray<float> ones_v = xt::ones<float>({4, 50});
  Session sess;
  // training false (the default): the input itself, no ops.
  const int before = g.num_nodes();
  CHECK(layers::dropout(x) == x);
  CHECK(layers::dropout(x, {.rate = 0.3, .training = false}) == x);
  CHECK(g.num_nodes() == before);
  // training true: each element 0 or 1 / (1 - rate) = 2.
  Tensor d = layers::dropout(x, {.rate = 0.5, .training = true});
  CHECK(d.shape() == Shape{-1, 50});
  CHECK(!has_op_type(g, "Switch"));
  const Arr dv = sess.run(d, {{x, ones_v}}).to_double();
  CHECK(std::all_of(dv.begin(), dv.end(), [](double v) { return v == 0.0 || v == 2.0; }));
  const double kept = xt::mean(xt::equal(dv, 2.0))();
  CHECK(kept > 0.3);
  CHECK(kept < 0.7);
  // A boolean constant counts as its value (no cond).
  CHECK(layers::dropout(x, {.training = constant(Array(false))}) == x);
  CHECK(!has_op_type(g, "Switch"));
  // A boolean placeholder: cond, decided per run.
  Tensor training = placeholder(boolean, {}, "training");
  Tensor c = layers::dropout(x, {.rate = 0.75, .training = training, .name = "drop"});
  CHECK(c.op().type() == "Merge");
  CHECK(c.shape() == Shape{-1, 50});
  CHECK(near_eq(sess.run(c, {{x, ones_v}, {training, false}}), xt::ones<double>({4, 50})));
  const Arr cv = sess.run(c, {{x, ones_v}, {training, true}}).to_double();
  CHECK(std::all_of(cv.begin(), cv.end(), [](double v) { return v == 0.0 || v == 4.0; }));
  CHECK(xt::amax(cv)() == 4.0);
  // rate 0: the input, whatever `training` says.
  CHECK(layers::dropout(x, {.rate = 0.0, .training = true}) == x);
}

TEST_CASE("layers.dropout_noise_shape_seed_and_class") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(1);
  Tensor x = placeholder(float64, {-1, 6, 8}, "x");
  const Arr ones_v = xt::ones<double>({5, 6, 8});
  // noise_shape {-1, 6, 1}: one decision per (batch, row), shared along the last axis.
  Tensor d = layers::dropout(x, {.rate = 0.5, .noise_shape = {-1, 6, 1}, .seed = 4, .training = true});
  Session s1;
  const Arr a = s1.run(d, {{x, ones_v}}).to_double();
  for (std::size_t n = 0; n < 5; ++n)
    for (std::size_t r = 0; r < 6; ++r)
      for (std::size_t k = 1; k < 8; ++k) CHECK(a(n, r, k) == a(n, r, 0));
  // Seeded: a new session replays the same masks.
  Session s2;
  CHECK(near_eq(s2.run(d, {{x, ones_v}}), a));
  // The class: training per call, a name scope per layer.
  layers::Dropout drop({.rate = 0.5, .name = "drop"});
  CHECK(drop(x) == x);
  Tensor training = placeholder(boolean, {}, "training");
  Tensor t = drop(x, training);
  CHECK(t.shape() == Shape{-1, 6, 8});
  CHECK(drop.rate() == 0.5);
  // Errors name the layer.
  const auto value_error = [](auto fn, const std::string& part) {
    const std::string m = message_of<ValueError>(fn);
    INFO(m);
    CHECK(contains(m, part));
    CHECK(contains(m, "layer 'dropout'"));
  };
  value_error([&] { layers::dropout(x, {.rate = 1.0}); }, "rate must be in the range [0, 1)");
  value_error([&] { layers::dropout(x, {.rate = -0.1}); }, "rate must be in the range");
  value_error([&] { layers::dropout(placeholder(int32, {3}), {.training = true}); },
              "floating point");
  value_error([&] { layers::dropout(x, {.training = placeholder(boolean, {2})}); },
              "must be a scalar boolean tensor");
  CHECK(contains(message_of<TypeError>([&] { layers::dropout(x, {.training = placeholder(float32, {})}); }),
                 "layer 'dropout'"));
}

// ---------------------------------------------------------------- the API example's network

TEST_CASE("layers.api_example_network_builds_runs_and_differentiates") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(2);
  Tensor x = placeholder(float32, {-1, 8, 8, 1}, "x");
  Tensor labels = placeholder(int64, {-1}, "labels");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor h = layers::conv2d(x, 4, {3, 3}, {.padding = "same", .use_bias = false});
  h = nn::relu(h);
  h = layers::max_pooling2d(h, {2, 2}, {2, 2});
  h = layers::dropout(h, {.rate = 0.25, .training = training});
  Tensor logits = layers::dense(layers::flatten(h), 3);
  CHECK(logits.shape() == Shape{-1, 3});
  Tensor loss = reduce_mean(nn::sparse_softmax_cross_entropy_with_logits(labels, logits));
  const auto vars = trainable_variables();
  REQUIRE(vars.size() == 3);  // conv2d/kernel, dense/kernel, dense/bias
  std::vector<Tensor> xs(vars.begin(), vars.end());
  const auto grads = gradients(loss, xs);
  Session sess;
  sess.run(global_variables_initializer());
  const xt::xarray<float> xv = xt::ones<float>({2, 8, 8, 1});
  const xt::xarray<std::int64_t> yv{0, 2};
  for (const bool t : {true, false}) {
    std::vector<GraphElement> fetches{loss};
    for (const auto& gr : grads) {
      REQUIRE(gr);
      fetches.push_back(*gr);
    }
    const auto out = sess.run(fetches, {{x, xv}, {labels, yv}, {training, t}});
    CHECK(std::isfinite(out[0].scalar<float>()));
    CHECK(out[1].shape() == Shape{3, 3, 1, 4});
    CHECK(out[2].shape() == Shape{64, 3});
  }
}
