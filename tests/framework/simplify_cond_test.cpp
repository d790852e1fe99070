// The seventh rule of framework/simplify.hpp: AddN of Merges with zeros (a cond's gradient, as TF1
// builds it) runs as _CondGradAddN without materializing the zeros. Each case compares a run where
// the rule applies with one that also fetches the Merges (a fetched value is not fused), bit for
// bit (memcmp: -0 and +0 differ), dead results included.
#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/traced.hpp"

using namespace kiln;
using kiln::testing::contains;
using kiln::testing::message_of;
using kiln::testing::mixed;
using kiln::testing::run_traced;
using kiln::testing::Traced;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();

void require_identical(const Array& a, const Array& b) {
  REQUIRE(a.empty() == b.empty());  // both dead, or both values
  if (a.empty()) return;
  REQUIRE(a.shape() == b.shape());
  const auto &x = a.as<float>(), &y = b.as<float>();
  CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
}

// Runs `sum` (an AddN of the Merges `merges`) fused and, fetching the Merges too, unfused; checks
// that the fused run has no ZerosLike and the same result. Returns the fused result, or an empty
// Array when the sum is dead (both runs then fail alike: a fetch without a value).
Array fused_equals_unfused(Session& sess, const Tensor& sum, const std::vector<Tensor>& merges, const FeedDict& feeds) {
  std::vector<GraphElement> all{sum};
  all.insert(all.end(), merges.begin(), merges.end());
  std::string fused_error, pair_error;
  Traced fused, pair;
  try {
    fused = run_traced(sess, {sum}, feeds);
  } catch (const Error& e) {
    fused_error = e.what();
  }
  try {
    pair = run_traced(sess, all, feeds);
  } catch (const Error& e) {
    pair_error = e.what();
  }
  if (!fused_error.empty() || !pair_error.empty()) {
    CHECK(contains(fused_error, "Fetch '" + sum.name() + "' has no value"));
    CHECK(contains(pair_error, "Fetch '" + sum.name() + "' has no value"));
    return Array();
  }
  CHECK(fused.count("_CondGradAddN") == 1);
  CHECK(fused.count("AddN") == 0);
  CHECK(fused.count("ZerosLike") == 0);
  CHECK(pair.count("_CondGradAddN") == 0);
  require_identical(fused.values[0], pair.values[0]);
  return fused.values[0];
}

}  // namespace

TEST_CASE("simplify.a_cond_gradient_adds_the_taken_branch_without_the_zeros") {
  // x read by both branches of a cond: its gradient is AddN(Merge(zeros, g_true), Merge(g_false,
  // zeros)), each branch's Switch giving zeros for the other. With either branch taken: the taken
  // branch's gradient, +0 where it is -0 (w holds -0: g = w * 2 is -0 there), NaN and infinity
  // kept; without any -0 the fused op hands on the gradient itself.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 5}, "x"), w = placeholder(float32, {-1, 5}, "w");
  Tensor p = placeholder(boolean, {}, "p");
  Tensor y = cond(p, [&] { return x * 2.0; }, [&] { return x * 3.0; });
  const Tensor dx = *gradients(reduce_sum(y * w), {x})[0];
  REQUIRE(dx.op().type() == "AddN");
  const std::vector<Tensor> merges = dx.op().inputs();
  Session sess;
  xt::xarray<float> xv = mixed({4, 5}, 1), wv = mixed({4, 5}, 3);
  wv(0, 1) = -0.f, wv(1, 2) = kNaN, wv(2, 3) = kInf, wv(3, 4) = 0.f;
  xt::xarray<float> positive = xt::abs(wv) + 1.f;
  for (bool branch : {true, false}) {
    CAPTURE(branch);
    const Array with_zero = fused_equals_unfused(sess, dx, merges, {{x, xv}, {w, wv}, {p, branch}});
    CHECK(!std::signbit(with_zero.as<float>()(0, 1)));  // -0 * k + 0 = +0
    CHECK(std::isnan(with_zero.as<float>()(1, 2)));
    fused_equals_unfused(sess, dx, merges, {{x, xv}, {w, positive}, {p, branch}});
  }
}

TEST_CASE("simplify.the_fused_cond_gradient_is_every_merge_and_sum_the_graph_says") {
  // Merges built by hand: two values and zeros; only zeros; a term whose both inputs are live
  // (the Merge takes its first: zeros when they come first); a dead term (the sum is dead).
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Tensor p = placeholder(boolean, {}, "p");
  auto [f, t] = switch_(x, p);
  const Tensor taken2 = merge({zeros_like(f), t * 2.0}).first;  // t * 2 when p, else zeros
  const Tensor taken5 = merge({zeros_like(f), t * 5.0}).first;
  const Tensor other3 = merge({f * 3.0, zeros_like(t)}).first;  // f * 3 when not p, else zeros
  const Tensor both_zeros_first = merge({zeros_like(x), x * 7.0}).first;  // always zeros
  const Tensor both_value_first = merge({x * 11.0, zeros_like(x)}).first;  // always x * 11
  const Tensor dead_unless_p = merge({zeros_like(t), t * 13.0}).first;  // dead when not p
  Session sess;
  xt::xarray<float> xv = mixed({2, 3}, 1);
  xv(0, 0) = -0.f, xv(0, 1) = kNaN, xv(1, 2) = -kInf;
  for (bool branch : {true, false}) {
    CAPTURE(branch);
    const FeedDict feeds{{x, xv}, {p, branch}};
    fused_equals_unfused(sess, add_n({taken2, taken5, other3}), {taken2, taken5, other3}, feeds);
    fused_equals_unfused(sess, add_n({taken2, other3}), {taken2, other3}, feeds);
    fused_equals_unfused(sess, add_n({other3, taken2, both_zeros_first}), {other3, taken2, both_zeros_first}, feeds);
    fused_equals_unfused(sess, add_n({both_value_first, other3}), {both_value_first, other3}, feeds);
    const Array dead = fused_equals_unfused(sess, add_n({taken2, dead_unless_p}), {taken2, dead_unless_p}, feeds);
    CHECK(dead.empty() == !branch);
  }
  // Only zeros (p false: both terms zeros, of x's shape).
  const Array zeros = fused_equals_unfused(sess, add_n({taken2, taken5}), {taken2, taken5}, {{x, xv}, {p, false}});
  CHECK(zeros.as<float>().shape() == xv.shape());
  CHECK(xt::all(xt::equal(zeros.as<float>(), 0.f)));
}

TEST_CASE("simplify.the_fused_cond_gradient_reports_unequal_shapes_as_add_n") {
  // Shapes unknown when built, unequal when run: InvalidArgumentError naming the AddN, fused or not.
  Graph g;
  auto as_default = g.as_default();
  Tensor a = placeholder(float32, Shape::unknown(), "a"), b = placeholder(float32, Shape::unknown(), "b");
  Tensor p = placeholder(boolean, {}, "p");
  auto [fa, ta] = switch_(a, p);
  auto [fb, tb] = switch_(b, p);
  const Tensor ma = merge({zeros_like(fa), ta * 2.0}).first, mb = merge({fb * 3.0, zeros_like(tb)}).first;
  const Tensor sum = add_n({ma, mb}, "sum");
  Session sess;
  const FeedDict feeds{{a, xt::xarray<float>{1.f, 2.f}}, {b, xt::xarray<float>{1.f, 2.f, 3.f}}, {p, true}};
  for (const std::vector<GraphElement>& fetches : {std::vector<GraphElement>{sum}, std::vector<GraphElement>{sum, ma, mb}}) {
    const std::string message = message_of<InvalidArgumentError>([&] { sess.run(fetches, feeds); });
    CHECK(contains(message, "'sum'"));
    CHECK(contains(message, "[2]"));
    CHECK(contains(message, "[3]"));
  }
}

TEST_CASE("simplify.a_batch_norm_layer_with_a_training_tensor_gets_its_gradients_without_zeros") {
  // The TF1 pattern: layers::batch_normalization(training = a bool placeholder) on 4-D input (the
  // fused kernels) builds a cond around the layer; the gradients of its input, gamma and beta are
  // AddNs of the two branches'. In training and in inference, fused, they equal the graph's.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 3, 3, 4}, "x"), dy = placeholder(float32, {-1, 3, 3, 4}, "dy");
  Tensor training = placeholder(boolean, {}, "training");
  Tensor y = layers::batch_normalization(x, {.training = training});
  const std::vector<Variable> gb = trainable_variables();
  auto grads = gradients(reduce_sum(y * dy), {x, gb.at(0), gb.at(1)});
  Session sess;
  sess.run(global_variables_initializer());
  for (bool mode : {true, false}) {
    CAPTURE(mode);
    const FeedDict feeds{{x, mixed({2, 3, 3, 4}, 1)}, {dy, mixed({2, 3, 3, 4}, 3)}, {training, mode}};
    for (const auto& grad : grads) {
      REQUIRE(grad.has_value());
      REQUIRE(grad->op().type() == "AddN");
      CHECK(!fused_equals_unfused(sess, *grad, grad->op().inputs(), feeds).empty());
    }
  }
}
