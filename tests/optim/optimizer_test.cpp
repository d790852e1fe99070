// Optimizers: the first three steps of each against the TF1 update equations computed here with
// plain doubles; slots, constraints after the update, non-trainable variables, the global step,
// TF's error messages, a user-derived optimizer and a small network converging.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::error_of;

namespace {

using Vec = std::vector<double>;
/// One reference step: updates w (and the captured optimizer state) from the gradient g at step t.
using RefStep = std::function<void(Vec& w, const Vec& g, int t)>;

/// Trains w (float64, 3 elements) on loss = c*w^2 + b*w (gradient 2cw + b) for three steps with the
/// train op `build(loss)` returns, and compares w after each step with the reference.
void check_three_steps(const std::function<Operation(const Tensor&)>& build, const RefStep& ref, double tol = 1e-12) {
  Graph graph;
  auto guard = graph.as_default();
  const Vec w0{1.0, -2.0, 0.5}, c{1.0, 0.5, 2.0}, b{0.3, -0.1, 0.2};
  Variable w(constant(xt::xarray<double>{w0[0], w0[1], w0[2]}), {.name = "w"});
  Tensor loss = w.value() * w.value() * constant(xt::xarray<double>{c[0], c[1], c[2]}) +
                w.value() * constant(xt::xarray<double>{b[0], b[1], b[2]});
  Operation train_op = build(loss);
  Session sess;
  sess.run(global_variables_initializer());
  Vec expect = w0;
  for (int t = 1; t <= 3; ++t) {
    Vec g(3);
    for (std::size_t i = 0; i < 3; ++i) g[i] = 2 * c[i] * expect[i] + b[i];
    ref(expect, g, t);
    sess.run(train_op);
    const auto got = sess.run(w).as<double>();
    for (std::size_t i = 0; i < 3; ++i) {
      INFO("step " << t << ", element " << i);
      CHECK(got(i) == doctest::Approx(expect[i]).epsilon(tol));
    }
  }
}

}  // namespace

TEST_CASE("optim.gradient_descent_three_steps") {
  const double lr = 0.1;
  check_three_steps([&](const Tensor& loss) { return train::GradientDescentOptimizer(lr).minimize(loss); },
                    [&](Vec& w, const Vec& g, int) {
                      for (std::size_t i = 0; i < w.size(); ++i) w[i] -= lr * g[i];
                    });
  // A float32 scalar tensor as the learning rate: cast to the variable's dtype (0.1f in double).
  check_three_steps(
      [&](const Tensor& loss) { return train::GradientDescentOptimizer(scalar(0.1, float32)).minimize(loss); },
      [&](Vec& w, const Vec& g, int) {
        for (std::size_t i = 0; i < w.size(); ++i) w[i] -= static_cast<double>(0.1f) * g[i];
      });
}

TEST_CASE("optim.momentum_three_steps") {
  const double lr = 0.1, m = 0.9;
  for (bool nesterov : {false, true}) {
    INFO("nesterov " << nesterov);
    Vec accum(3, 0.0);
    check_three_steps(
        [&](const Tensor& loss) {
          return train::MomentumOptimizer(lr, m, {.use_nesterov = nesterov}).minimize(loss);
        },
        [&](Vec& w, const Vec& g, int) {
          for (std::size_t i = 0; i < w.size(); ++i) {
            accum[i] = m * accum[i] + g[i];
            w[i] -= nesterov ? lr * g[i] + lr * m * accum[i] : lr * accum[i];
          }
        });
  }
}

TEST_CASE("optim.adam_three_steps") {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Vec m(3, 0.0), v(3, 0.0);
  check_three_steps([&](const Tensor& loss) { return train::AdamOptimizer(lr, b1, b2, eps).minimize(loss); },
                    [&](Vec& w, const Vec& g, int t) {
                      const double lr_t = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
                      for (std::size_t i = 0; i < w.size(); ++i) {
                        m[i] = b1 * m[i] + (1 - b1) * g[i];
                        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                        w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
                      }
                    });
  // A large epsilon shows it is added to sqrt(v) (TF's "epsilon hat"), not to sqrt(v_hat).
  Vec m2(3, 0.0), v2(3, 0.0);
  check_three_steps([&](const Tensor& loss) { return train::AdamOptimizer(lr, b1, b2, 0.5).minimize(loss); },
                    [&](Vec& w, const Vec& g, int t) {
                      const double lr_t = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
                      for (std::size_t i = 0; i < w.size(); ++i) {
                        m2[i] = b1 * m2[i] + (1 - b1) * g[i];
                        v2[i] = b2 * v2[i] + (1 - b2) * g[i] * g[i];
                        w[i] -= lr_t * m2[i] / (std::sqrt(v2[i]) + 0.5);
                      }
                    });
}

TEST_CASE("optim.rmsprop_three_steps") {
  const double lr = 0.01, decay = 0.9, eps = 1e-10;
  for (double momentum : {0.0, 0.5}) {
    for (bool centered : {false, true}) {
      INFO("momentum " << momentum << " centered " << centered);
      Vec ms(3, 1.0), mg(3, 0.0), mom(3, 0.0);  // ms starts at ones, like TF1
      check_three_steps(
          [&](const Tensor& loss) {
            return train::RMSPropOptimizer(lr, {.decay = decay, .momentum = momentum, .epsilon = eps, .centered = centered})
                .minimize(loss);
          },
          [&](Vec& w, const Vec& g, int) {
            for (std::size_t i = 0; i < w.size(); ++i) {
              ms[i] = decay * ms[i] + (1 - decay) * g[i] * g[i];
              mg[i] = decay * mg[i] + (1 - decay) * g[i];
              const double denom = centered ? ms[i] - mg[i] * mg[i] + eps : ms[i] + eps;
              mom[i] = momentum * mom[i] + lr * g[i] / std::sqrt(denom);
              w[i] -= mom[i];
            }
          });
    }
  }
}

TEST_CASE("optim.adagrad_three_steps") {
  const double lr = 0.1, init = 0.1;
  Vec accum(3, init);
  check_three_steps([&](const Tensor& loss) { return train::AdagradOptimizer(lr, init).minimize(loss); },
                    [&](Vec& w, const Vec& g, int) {
                      for (std::size_t i = 0; i < w.size(); ++i) {
                        accum[i] += g[i] * g[i];
                        w[i] -= lr * g[i] / std::sqrt(accum[i]);
                      }
                    });
  CHECK(contains(error_of<ValueError>([] { train::AdagradOptimizer(0.1, 0.0); }),
                 "initial_accumulator_value must be positive: 0"));
}

TEST_CASE("optim.adam_float32_and_beta_powers_once_per_step") {
  Graph graph;
  auto guard = graph.as_default();
  Variable a(constant(xt::xarray<float>{1.0f, 2.0f}), {.name = "a"});
  Variable b(constant(xt::xarray<float>{-1.0f}), {.name = "b"});
  Tensor loss = a.value() * a.value() + b.value() * 3.0f;  // ga = 2a, gb = 3
  train::AdamOptimizer opt(0.01);
  Operation train_op = opt.minimize(loss);
  Session sess;
  sess.run(global_variables_initializer());
  double ra[2] = {1, 2}, rb = -1, ma[2] = {0, 0}, va[2] = {0, 0}, mb = 0, vb = 0;
  for (int t = 1; t <= 3; ++t) {
    const double lr_t = 0.01 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    for (int i = 0; i < 2; ++i) {
      const double g = 2 * ra[i];
      ma[i] = 0.9 * ma[i] + 0.1 * g;
      va[i] = 0.999 * va[i] + 0.001 * g * g;
      ra[i] -= lr_t * ma[i] / (std::sqrt(va[i]) + 1e-8);
    }
    mb = 0.9 * mb + 0.1 * 3;
    vb = 0.999 * vb + 0.001 * 9;
    rb -= lr_t * mb / (std::sqrt(vb) + 1e-8);
    sess.run(train_op);
  }
  CHECK(kiln::testing::allclose(sess.run(a), {ra[0], ra[1]}, 1e-5, 1e-6));
  CHECK(kiln::testing::allclose(sess.run(b), {rb}, 1e-5, 1e-6));
  // Two variables, three runs: the powers advanced three times (beta^4), not six.
  Variable b1p = graph.get_collection(GraphKeys::GLOBAL_VARIABLES).at(2).as_variable();
  CHECK(b1p.name() == "beta1_power:0");
  CHECK(sess.run(b1p).scalar<float>() == doctest::Approx(std::pow(0.9, 4)).epsilon(1e-6));
  CHECK(sess.run(graph.get_tensor_by_name("beta2_power:0")).scalar<float>() ==
        doctest::Approx(std::pow(0.999, 4)).epsilon(1e-6));
}

TEST_CASE("optim.slots_names_and_creation_outside_control_dependencies") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor fed = placeholder(float32, {}, "fed");
  Tensor needs_feed = fed * 2.0;
  Variable w;
  {
    variable_scope vs("dense");
    w = get_variable("kernel", {2, 2});
  }
  Tensor loss = w.value() * w.value();
  train::AdamOptimizer opt;
  Operation train_op;
  {
    control_dependencies deps({needs_feed});  // like UPDATE_OPS: slots must not inherit it
    train_op = opt.minimize(loss);
  }
  CHECK(train_op.name() == "Adam");
  REQUIRE(opt.get_slot(w, "m"));
  REQUIRE(opt.get_slot(w, "v"));
  CHECK(opt.get_slot(w, "m")->name() == "dense/kernel/Adam:0");
  CHECK(opt.get_slot(w, "v")->name() == "dense/kernel/Adam_1:0");
  CHECK_FALSE(opt.get_slot(w, "momentum"));
  CHECK(opt.get_slot_names() == std::vector<std::string>{"m", "v"});
  CHECK_FALSE(opt.get_slot(w, "m")->trainable());
  CHECK(trainable_variables().size() == 1);
  CHECK(global_variables().size() == 5);  // kernel, beta1_power, beta2_power, m, v
  CHECK(opt.variables().size() == 4);
  CHECK(opt.get_slot(w, "m")->initializer().control_inputs().empty());

  Session sess;
  sess.run(global_variables_initializer());  // no feed needed: the slots do not depend on `fed`
  CHECK(kiln::testing::allclose(sess.run(*opt.get_slot(w, "m")), {{0, 0}, {0, 0}}));
  CHECK_THROWS_AS(sess.run(train_op), InvalidArgumentError);  // the train op does need the feed
  sess.run(train_op, {{fed, 1.0f}});

  // The update ops live under "Adam/update_dense/kernel/"; TRAIN_OP holds the train op.
  CHECK_NOTHROW(graph.get_operation_by_name("Adam/update_dense/kernel/ApplyAdam"));
  const auto train_ops = get_collection(GraphKeys::TRAIN_OP);
  REQUIRE(train_ops.size() == 1);
  CHECK(train_ops[0].op() == train_op);
  // A second minimize with the same optimizer reuses the slots.
  train_op = opt.minimize(loss);
  CHECK(train_op.name() == "Adam_1");
  CHECK(global_variables().size() == 5);
}

TEST_CASE("optim.constraint_applied_after_update") {
  Graph graph;
  auto guard = graph.as_default();
  const double lo = -0.5, hi = 0.8, lr = 0.1;
  Variable w(constant(xt::xarray<double>{1.0, -2.0, 0.5}),
             {.name = "w", .constraint = [&](const Tensor& v) { return clip_by_value(v, lo, hi); }});
  Variable u(constant(xt::xarray<double>{-1.0, 3.0}), {.name = "u", .constraint = constraints::non_neg()});
  Tensor loss = w.value() * w.value() * 0.5 + w.value() * 3.0;  // g = w + 3
  Tensor loss_u = u.value() * 4.0;                             // g = 4
  Operation train_op = train::GradientDescentOptimizer(lr).minimize(add(reduce_sum(loss), reduce_sum(loss_u)));
  Session sess;
  sess.run(global_variables_initializer());
  Vec rw{1.0, -2.0, 0.5}, ru{-1.0, 3.0};
  for (int t = 1; t <= 3; ++t) {
    for (auto& x : rw) x = std::clamp(x - lr * (x + 3.0), lo, hi);  // v = constraint(v - lr*g)
    for (auto& x : ru) x = std::max(x - lr * 4.0, 0.0);
    sess.run(train_op);
    CHECK(kiln::testing::allclose(sess.run(w), {rw[0], rw[1], rw[2]}, 1e-12, 1e-12));
    CHECK(kiln::testing::allclose(sess.run(u), {ru[0], ru[1]}, 1e-12, 1e-12));
  }
  // The constraint assign depends on the update.
  Operation c = graph.get_operation_by_name("GradientDescent/update_w/constraint");
  REQUIRE(c.control_inputs().size() >= 1);
  bool after_update = false;
  for (auto& ci : c.control_inputs()) after_update |= ci.name() == "GradientDescent/update_w/ApplyGradientDescent";
  CHECK(after_update);
}

TEST_CASE("optim.non_trainable_variables_untouched") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w(constant(xt::xarray<double>{1.0, 2.0}), {.name = "w"});
  Variable moving(constant(xt::xarray<double>{5.0, 6.0}), {.trainable = false, .name = "moving_mean"});
  Tensor loss = w.value() * moving.value() + moving.value() * moving.value();
  train::MomentumOptimizer opt(0.1, 0.9);
  auto gv = opt.compute_gradients(loss);
  REQUIRE(gv.size() == 1);
  CHECK(gv[0].second == w);
  Operation train_op = opt.apply_gradients(gv);
  CHECK_FALSE(opt.get_slot(moving, "momentum"));
  Session sess;
  sess.run(global_variables_initializer());
  for (int i = 0; i < 3; ++i) sess.run(train_op);
  CHECK(kiln::testing::allclose(sess.run(moving), {5.0, 6.0}, 0, 0));
  CHECK_FALSE(kiln::testing::allclose(sess.run(w), {1.0, 2.0}));
}

TEST_CASE("optim.global_step_incremented_once_after_updates") {
  Graph graph;
  auto guard = graph.as_default();
  Variable step = train::get_or_create_global_step();
  CHECK(step.name() == "global_step:0");
  CHECK(step.dtype() == int64);
  CHECK_FALSE(step.trainable());
  CHECK(train::get_or_create_global_step() == step);
  CHECK(train::get_global_step() == step);
  CHECK(contains(error_of<ValueError>([] { train::create_global_step(); }), "\"global_step\" already exists."));

  Variable a(constant(xt::xarray<double>{1.0}), {.name = "a"});
  Variable b(constant(xt::xarray<double>{2.0}), {.name = "b"});
  // lr = 0.1 * (step + 1): read by the updates; if the step were incremented first they would see
  // the next value.
  Tensor lr = (cast(step.value(), float64) + 1.0) * 0.1;
  Tensor loss = a.value() * a.value() + b.value() * 3.0;  // ga = 2a, gb = 3
  Operation train_op = train::GradientDescentOptimizer(lr).minimize(loss, {.global_step = step});
  CHECK(train_op.name() == "GradientDescent");
  CHECK(train_op.type() == "AssignAdd");
  Session sess;
  sess.run(global_variables_initializer());
  double ra = 1, rb = 2;
  for (int t = 1; t <= 3; ++t) {
    const double lr_t = 0.1 * t;
    ra -= lr_t * 2 * ra;
    rb -= lr_t * 3;
    sess.run(train_op);
    CHECK(sess.run(step).scalar<std::int64_t>() == t);  // once per run, two variables
  }
  CHECK(sess.run(a).scalar<double>() == doctest::Approx(ra).epsilon(1e-12));
  CHECK(sess.run(b).scalar<double>() == doctest::Approx(rb).epsilon(1e-12));
}

TEST_CASE("optim.fetched_loss_is_computed_before_the_updates") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w(constant(xt::xarray<double>{3.0}), {.name = "w"});
  Tensor loss = w.value() * w.value();
  Operation train_op = train::GradientDescentOptimizer(0.1).minimize(loss);
  Session sess;
  sess.run(global_variables_initializer());
  for (double expect_w : {3.0, 2.4, 1.92}) {
    auto out = sess.run({train_op, loss});
    CHECK(out[1].scalar<double>() == doctest::Approx(expect_w * expect_w));
  }
  CHECK(sess.run(w).scalar<double>() == doctest::Approx(1.536));
}

TEST_CASE("optim.learning_rate_placeholder") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w(constant(xt::xarray<float>{1.0f}), {.name = "w"});
  Tensor lr = placeholder(float32, {}, "lr");
  Operation train_op = train::GradientDescentOptimizer(lr).minimize(w.value() * 2.0f);  // g = 2
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(train_op, {{lr, 0.5f}});
  sess.run(train_op, {{lr, 0.25f}});
  CHECK(sess.run(w).scalar<float>() == doctest::Approx(1.0 - 1.0 - 0.5));
  CHECK(contains(error_of<ValueError>([&] {
                   train::GradientDescentOptimizer(placeholder(float32, {2})).minimize(w.value() * 2.0f);
                 }),
                 "must be a scalar"));
}

TEST_CASE("optim.error_messages") {
  Graph graph;
  auto guard = graph.as_default();
  Tensor x = placeholder(float32, {2}, "x");
  train::GradientDescentOptimizer opt(0.1);
  CHECK(error_of<ValueError>([&] { opt.minimize(x * 2.0f); }) == "No variables to optimize.");

  Variable w(constant(xt::xarray<float>{1.0f, 2.0f}), {.name = "w"});
  Tensor unconnected = multiply(x, x, "loss");
  const std::string no_grad = error_of<ValueError>([&] { opt.minimize(unconnected); });
  CHECK(contains(no_grad, "No gradients provided for any variable, check your graph for ops that do not support "
                          "gradients, between variables [<Variable 'w:0' shape=[2] dtype=float>] and loss "
                          "Tensor(\"loss:0\", shape=[2], dtype=float)."));
  CHECK(error_of<ValueError>([&] { opt.apply_gradients({}); }) == "No variables provided.");
  CHECK(error_of<ValueError>([&] { opt.apply_gradients({{std::nullopt, w}}); }) ==
        "No gradients provided for any variable: [<Variable 'w:0' shape=[2] dtype=float>].");
  CHECK(contains(error_of<TypeError>([&] { opt.minimize(cast(x, int32)); }), "Invalid type int32 for loss"));
  CHECK(contains(error_of<TypeError>([&] { opt.apply_gradients({{constant(xt::xarray<double>{1, 2}), w}}); }),
                 "has dtype double but variable 'w:0' has dtype float"));
  CHECK(get_collection(GraphKeys::TRAIN_OP).empty());  // nothing half-built was registered
}

TEST_CASE("optim.apply_gradients_skips_pairs_without_gradient") {
  Graph graph;
  auto guard = graph.as_default();
  Variable a(constant(xt::xarray<double>{1.0}), {.name = "a"});
  Variable b(constant(xt::xarray<double>{1.0}), {.name = "b"});
  train::GradientDescentOptimizer opt(0.5);
  auto gv = opt.compute_gradients(a.value() * 4.0, {a, b});
  REQUIRE(gv.size() == 2);
  CHECK(gv[0].first.has_value());
  CHECK_FALSE(gv[1].first.has_value());
  Operation op = opt.apply_gradients(gv);
  Session sess;
  sess.run(global_variables_initializer());
  sess.run(op);
  CHECK(sess.run(a).scalar<double>() == doctest::Approx(-1.0));
  CHECK(sess.run(b).scalar<double>() == doctest::Approx(1.0));
}

namespace {
// A user-defined optimizer: sign descent with a per-variable step counter slot.
class SignDescent : public train::Optimizer {
 public:
  explicit SignDescent(train::Hyper lr) : Optimizer("SignDescent"), lr_(std::move(lr)) {}

 protected:
  void create_slots(const std::vector<Variable>& vars) override {
    for (auto& v : vars) constant_slot(v, 0.0, "count");
  }
  Operation apply_dense(const Tensor& g, const Variable& v) override {
    const Tensor counted = assign_add(slot(v, "count"), ones_like(g));
    control_dependencies after({counted});
    return assign_sub(v, hyper(lr_, v.dtype()) * sign(g)).op();
  }

 private:
  train::Hyper lr_;
};
}  // namespace

TEST_CASE("optim.user_derived_optimizer") {
  Graph graph;
  auto guard = graph.as_default();
  Variable w(constant(xt::xarray<double>{1.0, -1.0, 0.05}),
             {.name = "w", .constraint = [](const Tensor& v) { return clip_by_value(v, -0.95, 10.0); }});
  Variable step = train::get_or_create_global_step();
  SignDescent opt(0.1);
  Operation train_op = opt.minimize(w.value() * 3.0, {.global_step = step});  // g = 3: sign 1
  Session sess;
  sess.run(global_variables_initializer());
  for (int i = 0; i < 2; ++i) sess.run(train_op);
  CHECK(kiln::testing::allclose(sess.run(w), {0.8, -0.95, -0.15}, 1e-12, 1e-12));
  CHECK(kiln::testing::allclose(sess.run(*opt.get_slot(w, "count")), {2, 2, 2}));
  CHECK(opt.get_slot(w, "count")->name() == "w/SignDescent:0");
  CHECK(sess.run(step).scalar<std::int64_t>() == 2);
}

TEST_CASE("optim.small_dense_network_converges") {
  Graph graph;
  auto guard = graph.as_default();
  set_random_seed(3);
  Tensor x = placeholder(float32, {-1, 2}, "x");
  Tensor labels = placeholder(int64, {-1}, "labels");
  auto dense = [](const Tensor& in, std::int64_t units, const std::string& name) {
    variable_scope vs(name);
    Variable k = get_variable("kernel", {in.shape()[1], units}, {.regularizer = regularizers::l2(1e-4)});
    Variable b = get_variable("bias", {units}, {.initializer = initializers::zeros()});
    return matmul(in, k) + b.value();
  };
  Tensor logits = dense(nn::tanh(dense(x, 8, "hidden")), 2, "out");
  Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits) + losses::get_regularization_loss();
  Tensor acc = metrics::accuracy(labels, argmax(logits, 1));
  Variable step = train::get_or_create_global_step();
  Operation train_op = train::AdamOptimizer(0.05).minimize(loss, {.global_step = step});
  const FeedDict xor_data{{x, xt::xarray<float>{{0, 0}, {0, 1}, {1, 0}, {1, 1}}},
                          {labels, xt::xarray<std::int64_t>{0, 1, 1, 0}}};
  Session sess;
  sess.run(global_variables_initializer());
  const float first = sess.run(loss, xor_data).scalar<float>();
  for (int i = 0; i < 300; ++i) sess.run(train_op, xor_data);
  const float last = sess.run(loss, xor_data).scalar<float>();
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.05f);
  CHECK(sess.run(acc, xor_data).scalar<float>() == 1.0f);
  CHECK(sess.run(step).scalar<std::int64_t>() == 300);
}
