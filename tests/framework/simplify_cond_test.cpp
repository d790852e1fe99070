// The seventh rule of framework/simplify.hpp: AddN of Merges with zeros (a cond's gradient, as TF1
// builds it) runs as _CondGradAddN without materializing the zeros. Each case compares a run where
// the rule applies with one that also fetches the Merges (a fetched value is not fused), bit for
// bit (memcmp: -0 and +0 differ), dead results included.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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
using kiln::testing::run_traced;
using kiln::testing::Traced;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();

const float kSignalling = std::numeric_limits<float>::signaling_NaN();

void require_identical(const Array& a, const Array& b) {
  REQUIRE(a.empty() == b.empty());  // both dead, or both values
  if (a.empty()) return;
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.dtype() == b.dtype());
  const auto same = [](const auto& x, const auto& y) {
    return std::memcmp(x.data(), y.data(), x.size() * sizeof(*x.data())) == 0;
  };
  CHECK((a.dtype() == int32 ? same(a.as<std::int32_t>(), b.as<std::int32_t>()) : same(a.as<float>(), b.as<float>())));
}

// What the plan does for `t`'s op (explain), also when the run would fail; empty when absent.
Explanation::Op explained(Session& sess, const Tensor& t, const FeedDict& feeds) {
  for (const Explanation::Op& op : sess.explain(std::vector<GraphElement>{t}, feeds).ops)
    if (op.name == t.op().name()) return op;
  return {};
}
// The type the plan runs for `t`'s op.
std::string runs_as(Session& sess, const Tensor& t, const FeedDict& feeds) { return explained(sess, t, feeds).type; }

// Runs `sum` (an AddN of the Merges `merges`) fused and, fetching the Merges too, unfused; checks
// that the fused run has no ZerosLike and the same result. Returns the fused result, or an empty
// Array when the sum is dead (both runs then fail alike: a fetch without a value).
Array fused_equals_unfused(Session& sess, const Tensor& sum, const std::vector<Tensor>& merges, const FeedDict& feeds) {
  CHECK(runs_as(sess, sum, feeds) == "_CondGradAddN");
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
    const Tensor sum = add_n({taken2, dead_unless_p});
    const Array dead = fused_equals_unfused(sess, sum, {taken2, dead_unless_p}, feeds);
    CHECK(dead.empty() == !branch);
    if (!branch)  // as the AddN it replaces (whose dead inputs are Merges), not "in the true branch"
      CHECK(explained(sess, sum, feeds).note == "dead: its inputs are dead");
  }
  // Only zeros (p false: both terms zeros, of x's shape).
  const Array zeros = fused_equals_unfused(sess, add_n({taken2, taken5}), {taken2, taken5}, {{x, xv}, {p, false}});
  CHECK(zeros.as<float>().shape() == xv.shape());
  CHECK(xt::all(xt::equal(zeros.as<float>(), 0.f)));
}

TEST_CASE("simplify.the_fused_cond_gradient_hands_on_a_value_only_when_adding_zero_changes_nothing") {
  // One branch's value plus the other's zeros, the value x itself: over 65,536 elements (the
  // check runs in chunks on the pool), with a -0 inside, a -0 in the last element only, a
  // signalling NaN (adding 0 quietens it), or none (the value is handed on as it is); int32 too.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1}, "x"), n = placeholder(int32, {-1}, "n");
  Tensor p = placeholder(boolean, {}, "p");
  auto [f, t] = switch_(x, p);
  const Tensor mt = merge({zeros_like(f), t}).first, mf = merge({f, zeros_like(t)}).first;
  const Tensor sum = add_n({mt, mf});
  auto [fn, tn] = switch_(n, p);
  const Tensor nt = merge({zeros_like(fn), tn}).first, nf = merge({fn, zeros_like(tn)}).first;
  const Tensor int_sum = add_n({nt, nf});
  Session sess;
  const std::size_t size = 100003;
  xt::xarray<float> plain = mixed({size}, 2);
  xt::xarray<float> inside = plain, last = plain, signalling = plain;
  inside(50000) = -0.f, last(size - 1) = -0.f, signalling(70000) = kSignalling;
  xt::xarray<std::int32_t> ints = xt::cast<std::int32_t>(plain * 100.f);
  for (bool branch : {true, false}) {
    CAPTURE(branch);
    for (const auto* xv : {&plain, &inside, &last, &signalling})
      fused_equals_unfused(sess, sum, {mt, mf}, {{x, *xv}, {p, branch}});
    const Array out = fused_equals_unfused(sess, sum, {mt, mf}, {{x, plain}, {p, branch}});
    CHECK(std::memcmp(out.as<float>().data(), plain.data(), size * sizeof(float)) == 0);
    fused_equals_unfused(sess, int_sum, {nt, nf}, {{n, ints}, {p, branch}});
  }
  const Array last_out = fused_equals_unfused(sess, sum, {mt, mf}, {{x, last}, {p, true}});
  CHECK(!std::signbit(last_out.as<float>()(size - 1)));
  const Array quiet = fused_equals_unfused(sess, sum, {mt, mf}, {{x, signalling}, {p, true}});
  const auto bits = std::bit_cast<std::uint32_t>(quiet.as<float>()(70000));
  CHECK((bits & 0x00400000u) != 0);  // the quiet bit
}

TEST_CASE("simplify.the_cond_gradient_is_not_fused_through_a_fed_merge_or_a_control_input") {
  // A Merge whose value is fed (its index is not, so it is not cut) is the fed value; a Merge that
  // waits for an op its AddN does not wait for runs after it. Either keeps the graph's ops.
  Graph g;
  auto as_default = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Tensor p = placeholder(boolean, {}, "p");
  Variable v = get_variable("v", {1}, {.initializer = initializers::zeros()});
  auto [f, t] = switch_(x, p);
  const Tensor mt = merge({zeros_like(f), t * 2.0}).first, mf = merge({f * 3.0, zeros_like(t)}).first;
  const Tensor sum = add_n({mt, mf});
  Operation bump = assign_add(v, ones({1}, float32)).op();
  Tensor waiting;
  {
    control_dependencies deps({bump});
    waiting = merge({zeros_like(f), t * 5.0}).first;
  }
  const Tensor sum2 = add_n({waiting, mf});
  Session sess;
  sess.run(global_variables_initializer());
  const xt::xarray<float> xv = mixed({2, 3}, 1), fed = mixed({2, 3}, 3);
  const Traced t1 = run_traced(sess, {sum}, {{x, xv}, {p, true}, {mt, fed}});
  CHECK(t1.count("_CondGradAddN") == 0);
  CHECK(t1.count("AddN") == 1);
  const xt::xarray<float> expected = fed + 0.f;  // the fed value plus f's zeros
  CHECK(std::memcmp(t1.values[0].as<float>().data(), expected.data(), expected.size() * sizeof(float)) == 0);
  const Traced t2 = run_traced(sess, {sum2}, {{x, xv}, {p, true}});
  CHECK(t2.count("_CondGradAddN") == 0);
  CHECK(t2.count("AssignAdd") == 1);
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
  for (bool branch : {true, false}) {
    CAPTURE(branch);
    const FeedDict feeds{{a, xt::xarray<float>{1.f, 2.f}}, {b, xt::xarray<float>{1.f, 2.f, 3.f}}, {p, branch}};
    CHECK(runs_as(sess, sum, feeds) == "_CondGradAddN");
    for (const std::vector<GraphElement>& fetches : {std::vector<GraphElement>{sum}, std::vector<GraphElement>{sum, ma, mb}}) {
      const std::string message = message_of<InvalidArgumentError>([&] { sess.run(fetches, feeds); });
      CHECK(contains(message, "AddN 'sum': inputs have shapes [2] and [3]"));
    }
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

TEST_CASE("simplify.cond_grad_add_n_built_by_hand_is_refused_naming_itself") {
  // _CondGradAddN is the plan's: built by hand with an odd number of inputs it is a ValueError when
  // built; with pairs that are not a graph AddN's Merges, an InternalError when a run prepares it.
  Graph g;
  auto as_default = g.as_default();
  Tensor a = placeholder(float32, {2}, "a"), b = placeholder(float32, {2}, "b");
  const std::string odd = message_of<ValueError>([&] { build_op("_CondGradAddN", {a, b, a}, {}, "odd"); });
  CHECK(contains(odd, "'odd' (op: '_CondGradAddN')"));
  CHECK(contains(odd, "two inputs per term, got 3"));
  const Tensor pair = build_op("_CondGradAddN", {a, b}, {}, "pair").output(0);
  Session sess;
  const std::string run = message_of<InternalError>(
      [&] { sess.run(pair, {{a, xt::xarray<float>{1.f, 2.f}}, {b, xt::xarray<float>{3.f, 4.f}}}); });
  CHECK(contains(run, "'pair'"));
  CHECK(contains(run, "not all two-input Merges"));
}
