// The plan's rewrites of the composed batch norm's gradient (framework/simplify.hpp, the fourth
// and fifth rules and the centered form of the third): the fused ops run, their values are bit for
// bit the graph's (NaN and infinities too), they do not apply where they would change the run, and
// the fused ops check their inputs and name themselves.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/traced.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;
using kiln::testing::mixed;
using kiln::testing::require_same_bits;
using kiln::testing::run_traced;
using kiln::testing::Traced;

namespace {
const float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();
}  // namespace

namespace {

// The MomentsGrad among the inputs of the gradient's AddN (the pair the plan fuses).
Tensor moments_grad_of(const Tensor& dx) {
  REQUIRE(dx.op().type() == "AddN");
  for (const Tensor& in : dx.op().inputs())
    if (in.op().type() == "MomentsGrad") return in;
  FAIL("no MomentsGrad reaches the AddN");
  return dx;
}

// d/dx of sum(mean * wm) + sum(var * wv) + sum(x * a): AddN(a, MomentsGrad(x, mean, dmean, dvar)),
// run as _MomentsGradAdd; with a scale s (one value per channel), of ... + sum(x * s * a):
// AddN(MomentsGrad(...), Mul(a, s)), run as _MomentsGradAddScaled (the composed batch norm's input
// gradient has these forms). The fused op's result against the one of a run that keeps what it
// fuses (fetching the MomentsGrad, or the product, as well).
template <class T>
void check_moments_grad_fusion(const std::vector<std::size_t>& shape, const std::vector<int>& axes,
                               const std::optional<std::vector<std::size_t>>& scale = std::nullopt) {
  Graph g;
  auto as_default = g.as_default();
  const DType dt = dtype_of<T>();
  const Shape sx(std::vector<std::int64_t>(shape.begin(), shape.end()));
  Tensor x = placeholder(dt, sx, "x"), a = placeholder(dt, sx, "a");
  const auto [mean, var] = nn::moments(x, axes);
  const Shape stats = mean.shape();
  const std::vector<std::size_t> stat_dims(stats.dims().begin(), stats.dims().end());
  Tensor wm = placeholder(dt, stats, "wm"), wv = placeholder(dt, stats, "wv");
  xt::xarray<T> xv(mixed(shape, 1)), av(mixed(shape, 2));
  xv.data()[3] = kNaN;  // a NaN channel, an infinite addend
  av.data()[av.size() - 1] = kInf;  // in another channel
  FeedDict feeds{{x, xv}, {a, av}, {wm, xt::xarray<T>(mixed(stat_dims, 3))}, {wv, xt::xarray<T>(mixed(stat_dims, 4))}};
  Tensor term = x * a;
  if (scale) {
    Tensor s = placeholder(dt, Shape(std::vector<std::int64_t>(scale->begin(), scale->end())), "s");
    xt::xarray<T> sv(mixed(*scale, 5));
    sv.data()[0] = T(0);  // a zero scale
    feeds.emplace_back(s, sv);
    term = x * s * a;
  }
  Tensor dx = *gradients(reduce_sum(mean * wm) + reduce_sum(var * wv) + reduce_sum(term), {x})[0];
  const std::vector<Tensor> addends = dx.op().inputs();
  const auto product = std::find_if(addends.begin(), addends.end(), [](const Tensor& t) { return t.op().type() == "Mul"; });
  if (scale) REQUIRE(product != addends.end());
  Session sess;
  const Traced fused = run_traced(sess, {dx}, feeds);
  CHECK(fused.count(scale ? "_MomentsGradAddScaled" : "_MomentsGradAdd") == 1);
  CHECK(fused.count("MomentsGrad") == 0);
  CHECK(fused.count("AddN") == 0);
  if (scale) CHECK(fused.count("Mul") == 0);
  // Fetching the MomentsGrad's value as well keeps the pair; fetching the product stores it, and
  // the fourth rule's op adds it.
  const Traced kept = run_traced(sess, {dx, scale ? *product : moments_grad_of(dx)}, feeds);
  CHECK(kept.count("_MomentsGradAddScaled") == 0);
  CHECK(kept.count(scale ? "_MomentsGradAdd" : "AddN") == 1);
  require_same_bits(fused.values[0].as<T>(), kept.values[0].as<T>());
  const auto& v = fused.values[0].as<T>();
  CHECK(std::count_if(v.begin(), v.end(), [](T e) { return std::isnan(e); }) >= 1);
  if (!scale) CHECK(std::count_if(v.begin(), v.end(), [](T e) { return std::isinf(e); }) >= 1);
}

}  // namespace

TEST_CASE("simplify.a_moments_gradient_added_to_another_runs_as_one_op_with_the_same_bits") {
  // Rows (NHWC: the channels last; long enough for the threads), planes (NCHW), a kept middle
  // axis with reduced axes on both sides; float32 and float64.
  SUBCASE("rows") { check_moments_grad_fusion<float>({3000, 64}, {0}); }
  SUBCASE("planes") { check_moments_grad_fusion<float>({4, 3, 200}, {0, 2}); }
  SUBCASE("rank 4, NHWC") { check_moments_grad_fusion<float>({2, 5, 6, 3}, {0, 1, 2}); }
  SUBCASE("float64") { check_moments_grad_fusion<double>({40, 3, 7}, {0, 2}); }
}

TEST_CASE("simplify.a_moments_gradient_is_not_fused_where_it_would_change_the_run") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {6, 5}, "x"), a = placeholder(float32, {6, 5}, "a");
  const FeedDict feeds{{x, mixed({6, 5}, 1)}, {a, mixed({6, 5}, 2)}};
  const auto [mean, var] = nn::moments(x, {0});
  SUBCASE("another op reads the moments gradient") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0];
    const Tensor mg = moments_grad_of(dx);
    const Traced t = run_traced(sess, {dx, reduce_max(mg)}, feeds);
    CHECK(t.count("MomentsGrad") == 1);
    CHECK(t.count("_MomentsGradAdd") == 0);
  }
  SUBCASE("an op waits for the moments gradient") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0];
    Tensor after;
    {
      control_dependencies deps({moments_grad_of(dx).op()});
      after = identity(a);
    }
    const Traced t = run_traced(sess, {dx, after}, feeds);
    CHECK(t.count("MomentsGrad") == 1);
    CHECK(t.count("_MomentsGradAdd") == 0);
  }
  SUBCASE("three terms") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a) + reduce_sum(x * x), {x})[0];
    const Traced t = run_traced(sess, {dx}, feeds);
    CHECK(t.count("MomentsGrad") == 1);
    CHECK(t.count("AddN") == 1);
    CHECK(t.count("_MomentsGradAdd") == 0);
  }
  SUBCASE("the moments gradient is fed") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0];
    const Tensor mg = moments_grad_of(dx);
    FeedDict fed = feeds;
    fed.emplace_back(mg, xt::xarray<float>(xt::ones<float>({6, 5})));
    const Traced t = run_traced(sess, {dx}, fed);
    CHECK(t.count("_MomentsGradAdd") == 0);
    require_same_bits(t.values[0].as<float>(), xt::xarray<float>(mixed({6, 5}, 2) + 1.f));
  }
}

TEST_CASE("simplify.the_fused_moments_gradient_checks_its_addend_and_names_itself") {
  // Built by hand with a MomentsGrad's attributes (a gradient op, then build_op from its attributes).
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 5}, "x"), a = placeholder(float32, {-1, 5}, "a");
  const auto [mean, var] = nn::moments(x, {0});
  const Operation mg = moments_grad_of(*gradients(reduce_sum(var) + reduce_sum(x * a), {x})[0]).op();
  std::vector<Tensor> ins{placeholder(float32, {6, 4})};
  for (const Tensor& in : mg.inputs()) ins.push_back(in);
  const std::string built = message_of<ValueError>([&] { build_op("_MomentsGradAdd", ins, mg.node()->attrs, "mga"); });
  CHECK(contains(built, "'mga' (op: '_MomentsGradAdd')"));
  CHECK(contains(built, "the addend must have x's dtype and shape, got [6,4] for x of shape [?,5]"));
  ins[0] = a;
  Tensor dx = build_op("_MomentsGradAdd", ins, mg.node()->attrs, "mga2").output(0);
  Session sess;
  const std::string run = message_of<InvalidArgumentError>(
      [&] { sess.run(dx, {{x, xt::xarray<float>(xt::ones<float>({6, 5}))}, {a, xt::xarray<float>(xt::ones<float>({3, 5}))}}); });
  CHECK(contains(run, "'mga2': the addend's shape [3,5] is not x's [6,5]"));
  CHECK(contains(run, "(op: '_MomentsGradAdd')"));
  // Statistics of another size than x's channels (a mean of 4 values for 5 channels).
  Tensor m = placeholder(float32, Shape::unknown(), "m");
  std::vector<Tensor> with_m = ins;
  with_m[2] = m;
  Tensor dx3 = build_op("_MomentsGradAdd", with_m, mg.node()->attrs, "mga3").output(0);
  const xt::xarray<float> six = xt::ones<float>({6, 5});
  const std::string stats = message_of<InvalidArgumentError>(
      [&] { sess.run(dx3, {{x, six}, {a, six}, {m, xt::xarray<float>(xt::ones<float>({4}))}}); });
  CHECK(contains(stats, "'mga3': input 2 has shape [4], expected 5 statistics for x of shape [6,5]"));
  CHECK(contains(stats, "(op: '_MomentsGradAdd')"));
}

TEST_CASE("simplify.sums_of_centered_products_and_of_scaled_values_run_as_one_op_with_the_same_bits") {
  // sum_to_shape((x - m) * b) and sum_to_shape(x * m), m broadcast to x's shape: the fused op's
  // result against the ops' own in the same run (fetching the product as well keeps them).
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  struct Case {
    std::vector<std::size_t> x, m;
    std::vector<std::int32_t> target;
  };
  // NHWC rows, wide (long enough for the threads; wider than a column chunk) and narrow; NCHW
  // planes; a value per row summed along the rows; a value per element; a value along the first
  // and last axes (formed a block at a time); a scalar to a scalar.
  const std::vector<Case> cases{{{3000, 64}, {64}, {64}},          {{300, 2500}, {2500}, {2500}},
                                {{2000, 32}, {32}, {32}},          {{2, 5, 6, 3}, {3}, {3}},
                                {{4, 3, 200}, {3, 1}, {1, 3, 1}},  {{5, 7}, {5, 1}, {5, 1}},
                                {{5, 7}, {5, 7}, {1, 7}},          {{4, 6, 5}, {4, 1, 5}, {1, 6, 1}},
                                {{33, 9}, {}, {}}};
  const auto shape_of = [](const std::vector<std::size_t>& d) { return Shape(std::vector<std::int64_t>(d.begin(), d.end())); };
  for (const bool centered : {true, false})
    for (const Case& c : cases) {
      CAPTURE(centered);
      CAPTURE(c.x.size());
      CAPTURE(c.x[0]);
      CAPTURE(c.m.size());
      Tensor x = placeholder(float32, shape_of(c.x), "x"), b = placeholder(float32, shape_of(c.x), "b");
      Tensor m = placeholder(float32, shape_of(c.m), "m");
      xt::xarray<std::int32_t> target = xt::xarray<std::int32_t>::from_shape({c.target.size()});
      std::copy(c.target.begin(), c.target.end(), target.begin());
      Tensor product = centered ? (x - m) * b : x * m;
      Tensor sum = sum_to_shape(product, constant(Array(target)));
      xt::xarray<float> xv = mixed(c.x, 1), bv = mixed(c.x, 2), mv = mixed(c.m, 4);
      xv.data()[3] = kNaN;  // a NaN, and an infinity times 0
      xv.data()[10] = kInf;
      bv.data()[10] = 0.f;
      mv.data()[10 % mv.size()] = 0.f;
      FeedDict feeds{{x, xv}, {m, mv}};
      if (centered) feeds.emplace_back(b, bv);
      const Traced fused = run_traced(sess, {sum}, feeds);
      // (x * m with m of x's shape is the third rule's plain product.)
      CHECK(fused.count(centered ? "_SumOfCenteredProducts" : c.m == c.x ? "_SumOfProducts" : "_SumOfScaledValues") == 1);
      CHECK(fused.count("Sub") == 0);
      CHECK(fused.count("Mul") == 0);
      const Traced kept = run_traced(sess, {sum, product}, feeds);
      CHECK(kept.count("Mul") == 1);
      CHECK(kept.count("SumToShape") == 1);
      require_same_bits(fused.values[0].as<float>(), kept.values[0].as<float>());
    }
}

TEST_CASE("simplify.the_composed_batch_norm_gradient_stores_neither_x_minus_mean_nor_dy_times_scale") {
  // Gradients only (no y fetched): the scale gradient sum((x - mean) * dy) reads x and dy, the
  // mean's sum(dy * scale) and the input gradient's dy * scale read dy. With y fetched as well,
  // x - mean is read by y's Mul: stored once, summed as _SumOfProducts. With dy * scale fetched,
  // it is stored, then read by a SumToShape and a _MomentsGradAdd.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {64, 6, 6, 8}, "x"), dy = placeholder(float32, {64, 6, 6, 8}, "dy");
  Tensor y = layers::batch_normalization(x, {.training = true, .fused = false});
  const std::vector<Variable> gamma_beta = trainable_variables();
  const auto grads = gradients(reduce_sum(y * dy), {x, gamma_beta.at(0), gamma_beta.at(1)});
  const std::vector<Tensor> addends = grads[0]->op().inputs();
  const auto scaled = std::find_if(addends.begin(), addends.end(), [](const Tensor& t) { return t.op().type() == "Mul"; });
  REQUIRE(scaled != addends.end());
  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{x, mixed({64, 6, 6, 8}, 1)}, {dy, mixed({64, 6, 6, 8}, 2)}};
  const Traced only = run_traced(sess, {*grads[0], *grads[1], *grads[2]}, feeds);
  CHECK(only.count("_SumOfCenteredProducts") == 1);
  CHECK(only.count("_SumOfScaledValues") == 1);
  CHECK(only.count("_MomentsGradAddScaled") == 1);
  CHECK(only.count("Sub") == 0);
  const Traced with_y = run_traced(sess, {*grads[0], *grads[1], *grads[2], y}, feeds);
  CHECK(with_y.count("_SumOfCenteredProducts") == 0);
  CHECK(with_y.count("_SumOfProducts") == 1);
  const Traced with_product = run_traced(sess, {*grads[0], *grads[1], *grads[2], *scaled}, feeds);
  CHECK(with_product.count("_SumOfScaledValues") == 0);
  CHECK(with_product.count("_MomentsGradAddScaled") == 0);
  CHECK(with_product.count("_MomentsGradAdd") == 1);
  for (std::size_t k = 0; k < 3; ++k) {
    require_same_bits(only.values[k].as<float>(), with_y.values[k].as<float>());
    require_same_bits(only.values[k].as<float>(), with_product.values[k].as<float>());
  }
}

TEST_CASE("simplify.a_centered_product_is_not_fused_where_it_would_change_the_run") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {6, 5}, "x"), b = placeholder(float32, {6, 5}, "b"), m = placeholder(float32, {5}, "m");
  Tensor row = constant(Array(xt::xarray<std::int32_t>{5}));
  const FeedDict feeds{{x, mixed({6, 5}, 1)}, {b, mixed({6, 5}, 2)}, {m, mixed({5}, 3)}};
  SUBCASE("another op reads the difference") {
    Tensor d = x - m;
    const Traced t = run_traced(sess, {sum_to_shape(d * b, row), reduce_max(d)}, feeds);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
    CHECK(t.count("_SumOfProducts") == 1);
  }
  SUBCASE("the difference is fed") {
    Tensor d = x - m;
    FeedDict fed = feeds;
    fed.emplace_back(d, xt::xarray<float>(xt::ones<float>({6, 5})));
    const Traced t = run_traced(sess, {sum_to_shape(d * b, row)}, fed);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
  }
  SUBCASE("a mean of unknown shape") {
    Tensor u = placeholder(float32, Shape::unknown(), "u");
    FeedDict fed = feeds;
    fed.emplace_back(u, xt::xarray<float>(mixed({5}, 3)));
    const Traced t = run_traced(sess, {sum_to_shape((x - u) * b, row)}, fed);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
  }
  SUBCASE("x broadcasts against the mean") {
    Tensor r = placeholder(float32, {1, 5}, "r");
    FeedDict fed = feeds;
    fed.emplace_back(r, xt::xarray<float>(mixed({1, 5}, 3)));
    const Traced t = run_traced(sess, {sum_to_shape((r - x) * b, row)}, fed);
    CHECK(t.count("_SumOfCenteredProducts") == 0);
  }
}

TEST_CASE("simplify.the_fused_centered_product_checks_its_inputs_and_names_itself") {
  Graph g;
  auto as_default = g.as_default();
  Tensor target = constant(Array(xt::xarray<std::int32_t>{5}));
  const std::string built = message_of<ValueError>([&] {
    build_op("_SumOfCenteredProducts", {placeholder(float32, {6, 5}), placeholder(float32, {4}), placeholder(float32, {6, 5}), target},
             {}, "scp");
  });
  CHECK(contains(built, "'scp' (op: '_SumOfCenteredProducts')"));
  CHECK(contains(built, "the mean of shape [4] does not broadcast to x's [6,5]"));
  const std::string typed = message_of<TypeError>([&] {
    build_op("_SumOfCenteredProducts", {placeholder(float32, {6, 5}), placeholder(float64, {5}), placeholder(float32, {6, 5}), target},
             {}, "scp4");
  });
  CHECK(contains(typed, "'scp4' (op: '_SumOfCenteredProducts')"));
  CHECK(contains(typed, "x, the mean and the other factor must have one dtype"));
  Tensor x = placeholder(float32, {-1, 5}, "x"), m = placeholder(float32, {-1}, "m"), b = placeholder(float32, {-1, 5}, "b");
  Tensor sum = build_op("_SumOfCenteredProducts", {x, m, b, target}, {}, "scp2").output(0);
  Session sess;
  const xt::xarray<float> six = xt::ones<float>({6, 5});
  const std::string run = message_of<InvalidArgumentError>(
      [&] { sess.run(sum, {{x, six}, {b, six}, {m, xt::xarray<float>(xt::ones<float>({4}))}}); });
  CHECK(contains(run, "'scp2': x [6,5], the mean [4] and the other factor [6,5] do not fit together"));
  CHECK(contains(run, "(op: '_SumOfCenteredProducts')"));
  // (x - 0.5) * 1 summed over 6 rows: 3 per column.
  require_same_bits(sess.run(sum, {{x, six}, {b, six}, {m, xt::xarray<float>(xt::ones<float>({5}) * 0.5f)}}).as<float>(),
                    xt::xarray<float>(xt::ones<float>({5}) * 3.f));
  // One element (no dimension left once the size-1 ones are dropped): (3 - 1) * 2.
  Tensor one = placeholder(float32, {1, 1}, "one");
  Tensor single = build_op("_SumOfCenteredProducts", {one * 3.f, constant(1.f), one * 2.f, constant(Array(xt::xarray<std::int32_t>{1}))},
                           {}, "scp3").output(0);
  const xt::xarray<float> one_value = xt::ones<float>({1, 1}), four = xt::ones<float>({1}) * 4.f;
  require_same_bits(sess.run(single, {{one, one_value}}).as<float>(), four);
}

TEST_CASE("simplify.a_moments_gradient_plus_a_scaled_value_runs_as_one_op_with_the_same_bits") {
  SUBCASE("rows") { check_moments_grad_fusion<float>({3000, 64}, {0}, std::vector<std::size_t>{64}); }
  SUBCASE("planes") { check_moments_grad_fusion<float>({4, 3, 200}, {0, 2}, std::vector<std::size_t>{3, 1}); }
  SUBCASE("rank 4, NHWC") { check_moments_grad_fusion<float>({2, 5, 6, 3}, {0, 1, 2}, std::vector<std::size_t>{3}); }
  SUBCASE("float64") { check_moments_grad_fusion<double>({40, 3, 7}, {0, 2}, std::vector<std::size_t>{1, 3, 1}); }
}

TEST_CASE("simplify.a_scaled_value_is_not_fused_where_it_would_change_the_run") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor x = placeholder(float32, {6, 5}, "x"), a = placeholder(float32, {6, 5}, "a");
  Tensor s = placeholder(float32, {5}, "s"), r = placeholder(float32, {6, 1}, "r");
  Tensor row = constant(Array(xt::xarray<std::int32_t>{5}));
  const FeedDict feeds{{x, mixed({6, 5}, 1)}, {a, mixed({6, 5}, 2)}, {s, mixed({5}, 3)}, {r, mixed({6, 1}, 3)}};
  const auto [mean, var] = nn::moments(x, {0});
  SUBCASE("another op reads the product") {
    Tensor p = a * s;
    const Traced t = run_traced(sess, {sum_to_shape(p, row), reduce_max(p)}, feeds);
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfScaledValues") == 0);
  }
  SUBCASE("an op waits for the product") {
    Tensor p = a * s;
    Tensor after;
    {
      control_dependencies deps({p.op()});
      after = identity(a);
    }
    const Traced t = run_traced(sess, {sum_to_shape(p, row), after}, feeds);
    CHECK(t.count("Mul") == 1);
    CHECK(t.count("_SumOfScaledValues") == 0);
  }
  SUBCASE("the scale is not one value per channel: the product is stored and added") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * r * a), {x})[0];
    const Traced t = run_traced(sess, {dx}, feeds);
    CHECK(t.count("_MomentsGradAddScaled") == 0);
    CHECK(t.count("_MomentsGradAdd") == 1);
    CHECK(t.count("Mul") >= 1);
  }
  SUBCASE("the moments gradient is read elsewhere: the pair runs, the product is stored") {
    Tensor dx = *gradients(reduce_sum(var) + reduce_sum(x * s * a), {x})[0];
    const Tensor mg = moments_grad_of(dx);
    const Traced t = run_traced(sess, {dx, reduce_max(mg)}, feeds);
    CHECK(t.count("_MomentsGradAddScaled") == 0);
    CHECK(t.count("AddN") == 1);
  }
}

TEST_CASE("simplify.the_scaled_fused_ops_check_their_inputs_and_name_themselves") {
  Graph g;
  auto as_default = g.as_default();
  Session sess;
  Tensor target = constant(Array(xt::xarray<std::int32_t>{5}));
  const std::string built = message_of<ValueError>(
      [&] { build_op("_SumOfScaledValues", {placeholder(float32, {6, 5}), placeholder(float32, {4}), target}, {}, "ssv"); });
  CHECK(contains(built, "'ssv' (op: '_SumOfScaledValues')"));
  CHECK(contains(built, "the scale of shape [4] does not broadcast to the values' [6,5]"));
  const std::string typed = message_of<TypeError>(
      [&] { build_op("_SumOfScaledValues", {placeholder(float32, {6, 5}), placeholder(float64, {5}), target}, {}, "ssv2"); });
  CHECK(contains(typed, "'ssv2' (op: '_SumOfScaledValues')"));
  CHECK(contains(typed, "the values and the scale must have one dtype"));
  Tensor a = placeholder(float32, {-1, 5}, "a"), s = placeholder(float32, {-1}, "s");
  Tensor sum = build_op("_SumOfScaledValues", {a, s, target}, {}, "ssv3").output(0);
  const xt::xarray<float> six = xt::ones<float>({6, 5});
  const std::string run = message_of<InvalidArgumentError>([&] { sess.run(sum, {{a, six}, {s, xt::xarray<float>(xt::ones<float>({4}))}}); });
  CHECK(contains(run, "'ssv3': the scale of shape [4] does not broadcast to the values' [6,5]"));
  CHECK(contains(run, "(op: '_SumOfScaledValues')"));
  // 1 * 0.5 summed over 6 rows: 3 per column.
  require_same_bits(sess.run(sum, {{a, six}, {s, xt::xarray<float>(xt::ones<float>({5}) * 0.5f)}}).as<float>(),
                    xt::xarray<float>(xt::ones<float>({5}) * 3.f));

  // _MomentsGradAddScaled, built by hand with a MomentsGrad's attributes.
  Tensor x = placeholder(float32, {-1, 5}, "x"), addend = placeholder(float32, {-1, 5}, "addend");
  const auto [mean, var] = nn::moments(x, {0});
  const Operation mg = moments_grad_of(*gradients(reduce_sum(var) + reduce_sum(x * addend), {x})[0]).op();
  std::vector<Tensor> ins{addend, placeholder(float32, {6, 1}, "per_row")};
  for (const Tensor& in : mg.inputs()) ins.push_back(in);
  const Tensor fixed_x = placeholder(float32, {6, 5}, "fixed_x");
  std::vector<Tensor> fixed = ins;
  fixed[0] = placeholder(float32, {6, 5}), fixed[2] = fixed_x;
  std::vector<Tensor> other_dtype = fixed;
  other_dtype[1] = placeholder(float64, {5});
  const std::string mixed_types = message_of<TypeError>([&] { build_op("_MomentsGradAddScaled", other_dtype, mg.node()->attrs, "mgas3"); });
  CHECK(contains(mixed_types, "'mgas3' (op: '_MomentsGradAddScaled')"));
  CHECK(contains(mixed_types, "the addend and its scale must have x's dtype"));
  std::vector<Tensor> other_shape = fixed;
  other_shape[0] = placeholder(float32, {6, 4});
  const std::string shaped = message_of<ValueError>([&] { build_op("_MomentsGradAddScaled", other_shape, mg.node()->attrs, "mgas4"); });
  CHECK(contains(shaped, "'mgas4' (op: '_MomentsGradAddScaled')"));
  CHECK(contains(shaped, "the addend must have x's shape, got [6,4] for x of shape [6,5]"));
  const std::string per_row = message_of<ValueError>([&] { build_op("_MomentsGradAddScaled", fixed, mg.node()->attrs, "mgas"); });
  CHECK(contains(per_row, "'mgas' (op: '_MomentsGradAddScaled')"));
  CHECK(contains(per_row, "the addend's scale of shape [6,1] is not one value per channel of x's [6,5]"));
  ins[1] = s;  // [?]: checked at run time
  Tensor dx = build_op("_MomentsGradAddScaled", ins, mg.node()->attrs, "mgas2").output(0);
  const std::string wrong = message_of<InvalidArgumentError>(
      [&] { sess.run(dx, {{x, six}, {addend, six}, {s, xt::xarray<float>(xt::ones<float>({6}))}}); });
  CHECK(contains(wrong, "'mgas2': the addend's scale of shape [6] is not one value per channel of x's [6,5]"));
  CHECK(contains(wrong, "(op: '_MomentsGradAddScaled')"));
  // x constant: dvar = 0 and dmean = 0 (the loss's gradients), so dx = addend * s.
  const xt::xarray<float> threes = six * 3.f, halves = xt::ones<float>({5}) * 0.5f, expected = six * 1.5f;
  require_same_bits(sess.run(dx, {{x, six}, {addend, threes}, {s, halves}}).as<float>(), expected);
}
