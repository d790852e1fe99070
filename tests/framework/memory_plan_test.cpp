// The memory plan of framework/memory_plan.hpp: shapes from the feeds, buffers shared only where
// the DAG orders the values, in-place outputs, what stays dynamic; and runs that follow it.
#include <doctest/doctest.h>

#include <vector>

#include <kiln.hpp>

#include "framework/memory_plan.hpp"

using namespace kiln;
using kiln::detail::MemoryPlan;

namespace {

struct Planned {
  detail::VariableStore store;
  detail::Plan plan;
  MemoryPlan memory;
  Planned(Graph& g, const std::vector<GraphElement>& fetches, const std::vector<std::pair<Tensor, Array>>& feeds) {
    plan = detail::compile_plan(g, fetches, feeds, store);
    std::vector<Shape> shapes;
    for (const auto& f : feeds) shapes.push_back(f.second.shape());
    memory = detail::plan_memory(plan, shapes);
  }
  // The buffer of a tensor's value (kDynamic when the plan left it to the run).
  int buffer(const Tensor& t) const {
    for (const auto& s : plan.steps)
      if (s.node == t.op().node()) return memory.slot_buffer[static_cast<std::size_t>(s.out_base + t.ref().index)];
    FAIL("tensor not in the plan");
    return -2;
  }
  std::size_t elements(const Tensor& t) const { return memory.buffers[static_cast<std::size_t>(buffer(t))].elements; }
};

}  // namespace

TEST_CASE("memory_plan.values_that_may_be_live_at_once_never_share_a_buffer") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 8}, "x");
  // a and b both read x: the executor may run them at once, and their successors too.
  Tensor a = matmul(x, constant(xt::xarray<float>(xt::ones<float>({8, 8}))));
  Tensor b = matmul(x, constant(xt::xarray<float>(xt::ones<float>({8, 8}))));
  Tensor a2 = matmul(a, constant(xt::xarray<float>(xt::ones<float>({8, 8}))));
  Tensor b2 = matmul(b, constant(xt::xarray<float>(xt::ones<float>({8, 8}))));
  Tensor a3 = matmul(a2, constant(xt::xarray<float>(xt::ones<float>({8, 8}))));
  Tensor y = reduce_sum(a3 + b2);
  Planned p(g, {y}, {{x, xt::xarray<float>(xt::zeros<float>({16, 8}))}});

  for (const Tensor& t : {a, b, a2, b2, a3}) {
    REQUIRE(p.buffer(t) >= 0);
    CHECK(p.elements(t) == 16 * 8);  // the batch dimension came from the feed
  }
  CHECK(p.buffer(a) != p.buffer(b));
  CHECK(p.buffer(a2) != p.buffer(b));   // b may still be read
  CHECK(p.buffer(b2) != p.buffer(a2));  // a2 is read by a3, which may run beside b2
  CHECK(p.buffer(b2) != p.buffer(a));   // a's reader a2 and b2 are not ordered either
  CHECK(p.buffer(a3) != p.buffer(b2));
  // a3 may reuse a's buffer: a's only reader (a2) is an ancestor of a3.
  CHECK(p.buffer(a3) == p.buffer(a));
  CHECK(p.memory.planned_bytes < p.memory.unshared_bytes);
  // The fed x and the fetched y belong to the caller.
  CHECK(p.buffer(y) == MemoryPlan::kDynamic);
}

TEST_CASE("memory_plan.elementwise_ops_write_in_place_of_their_only_reader") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4}, "x");
  Tensor a = matmul(x, constant(xt::xarray<float>(xt::ones<float>({4, 4}))));
  Tensor b = nn::sigmoid(a);  // a's only reader: b may take a's buffer
  Tensor c = exp(b) + b;      // b has two readers: c gets a buffer of its own
  Tensor y = reduce_sum(c);
  Planned p(g, {y}, {{x, xt::xarray<float>(xt::zeros<float>({3, 4}))}});
  CHECK(p.buffer(b) == p.buffer(a));
  CHECK(p.buffer(c.op().inputs()[0]) != p.buffer(b));
}

TEST_CASE("memory_plan.an_elementwise_op_writes_in_place_of_a_value_whose_other_readers_finished") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4}, "x");
  Tensor a = matmul(x, constant(xt::xarray<float>(xt::ones<float>({4, 4}))));
  Tensor c = a * reduce_sum(a);  // a's other reader, the Sum, is an ancestor of the Mul: in place
  Tensor b = matmul(x, constant(xt::xarray<float>(xt::ones<float>({4, 4}))));
  Tensor d = b * 2.f;  // b's other reader (the Sum below) may run after the Mul: a buffer of its own
  Tensor y = reduce_sum(c) + reduce_sum(d) + reduce_sum(b);
  const xt::xarray<float> xv{{1.f, 2.f, 3.f, 4.f}, {-1.f, 0.5f, 0.f, 2.f}, {3.f, 3.f, -3.f, 1.f}};
  Planned p(g, {y}, {{x, xv}});
  CHECK(p.buffer(c) == p.buffer(a));
  CHECK(p.buffer(d) != p.buffer(b));
  // A run hands a's buffer over as planned: a steady-state run of the Sum-then-Mul chain places
  // every output but the fetched one (the Mul's planned buffer is a's, free only if handed over).
  Tensor z = reduce_sum(c);
  Session s;
  const float expected = s.run(z, {{x, xv}}).as<float>()();
  CHECK(s.run(z, {{x, xv}}).as<float>()() == expected);
  CHECK(s.last_run_memory().unplanned_outputs == 1);
  // a's rows are x's row sums (10, 1.5, 4) four times: sum(a) = 62, sum(a * 62) = 62 * 62.
  CHECK(expected == doctest::Approx(62.0 * 62.0));
}

TEST_CASE("memory_plan.batch_norm_writes_dx_over_dy_and_inference_y_over_x") {
  // The fused batch-norm kernels allow dx to alias dy and y to alias x: dx takes the buffer of
  // relu's gradient (read by nothing else); in inference y takes x's. A run that forwards gives
  // the values of one that cannot (dy fetched too, so it has another reader).
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4, 4, 3}, "x");
  Tensor h = x * 2.f;  // an op's output (a fed x is the caller's)
  Tensor gamma = constant(xt::xarray<float>{1.f, 0.5f, 2.f}), beta = constant(xt::xarray<float>{0.f, 1.f, -1.f});
  Tensor y = nn::fused_batch_norm(h, gamma, beta).y;
  const Tensor dx = *gradients(reduce_sum(nn::relu(y)), {h})[0];
  REQUIRE(dx.op().type() == "FusedBatchNormGrad");
  const Tensor dy = dx.op().inputs()[0];
  REQUIRE(dy.op().type() == "ReluGrad");
  xt::xarray<float> xv = xt::xarray<float>::from_shape({2, 4, 4, 3});
  for (std::size_t i = 0; i < xv.size(); ++i) xv.data()[i] = static_cast<float>((i * 7) % 11) - 5.f;
  const Tensor sum = reduce_sum(dx);
  Planned p(g, {sum}, {{x, xv}});
  REQUIRE(p.buffer(dx) >= 0);
  CHECK(p.buffer(dx) == p.buffer(dy));
  // The values: 3 dx (dx planned over dy, which has no other reader) against 3 dx fetched with dy.
  const Tensor scaled = dx * 3.f;
  Planned r(g, {scaled}, {{x, xv}});
  CHECK(r.buffer(dx) == r.buffer(dy));
  Session s;
  const xt::xarray<float> forwarded = s.run(scaled, {{x, xv}}).as<float>();
  CHECK(s.run(scaled, {{x, xv}}).as<float>() == forwarded);
  CHECK(s.run({scaled, dy}, {{x, xv}})[0].as<float>() == forwarded);

  Tensor inference = nn::fused_batch_norm(h, gamma, beta, constant(xt::xarray<float>{0.f, 1.f, 2.f}),
                                          constant(xt::xarray<float>{1.f, 2.f, 3.f}), 1e-3, "NHWC", false)
                         .y;
  const Tensor total = reduce_sum(inference);
  Planned q(g, {total}, {{x, xv}});
  REQUIRE(q.buffer(inference) >= 0);
  CHECK(q.buffer(inference) == q.buffer(h));
  const Tensor shifted = inference + 1.f;
  CHECK(s.run(shifted, {{x, xv}}).as<float>() == s.run({shifted, h}, {{x, xv}})[0].as<float>());
}

TEST_CASE("memory_plan.shapes_computed_from_shapes_are_known_before_the_run") {
  // A gradient's Reshape to Shape(x) and a Tile by a constant: known from the feed's shape.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 6}, "x");
  Tensor a = exp(x);
  Tensor r = reshape(a, concat({constant(xt::xarray<std::int32_t>{-1}), constant(xt::xarray<std::int32_t>{2})}, 0));
  Tensor back = reshape(exp(r), shape(x));
  Tensor y = reduce_sum(back);
  Planned p(g, {y}, {{x, xt::xarray<float>(xt::zeros<float>({5, 6}))}});
  REQUIRE(p.buffer(back) >= 0);
  CHECK(p.elements(back) == 30);
  REQUIRE(p.buffer(r) >= 0);
  CHECK(p.elements(r) == 30);
}

TEST_CASE("memory_plan.buffers_passed_through_stay_until_their_last_reader") {
  // i = Identity(a) holds a's buffer: nothing after a's reader (the Identity) may take it while
  // i is still read.
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 4}, "x");
  Tensor a = matmul(x, constant(xt::xarray<float>(xt::ones<float>({4, 4}))));
  Tensor i = identity(a);
  Tensor b = matmul(x, constant(xt::xarray<float>(xt::ones<float>({4, 4}))));
  control_dependencies deps({i.op()});
  Tensor c = matmul(b, constant(xt::xarray<float>(xt::ones<float>({4, 4}))));  // after the Identity
  Tensor y = reduce_sum(c + i);
  Planned p(g, {y}, {{x, xt::xarray<float>(xt::zeros<float>({2, 4}))}});
  REQUIRE(p.buffer(c) >= 0);
  CHECK(p.buffer(c) != p.buffer(a));
}

TEST_CASE("memory_plan.a_run_follows_its_plan_and_a_new_batch_size_gets_a_new_one") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 8}, "x");
  Tensor h = nn::relu(matmul(x, constant(xt::xarray<float>(xt::ones<float>({8, 16})))));
  Tensor y = reduce_sum(nn::sigmoid(matmul(h, constant(xt::xarray<float>(xt::ones<float>({16, 4}))))), {1});
  Session s;
  const auto feed = [&](std::size_t n) {
    return xt::xarray<float>(xt::ones<float>({n, std::size_t{8}}) * 0.01F);
  };
  const Array first = s.run(y, {{x, feed(32)}});
  const RunMemory m32 = s.last_run_memory();
  s.run(y, {{x, feed(32)}});
  CHECK(s.last_run_memory().planned_outputs == m32.planned_outputs);
  const Array small = s.run(y, {{x, feed(8)}});
  const RunMemory m8 = s.last_run_memory();
  CHECK(m8.planned_bytes * 4 == m32.planned_bytes);  // the same buffers for a quarter of the rows
  CHECK(m8.unplanned_outputs == 1);                  // the fetched y
  const Array again = s.run(y, {{x, feed(32)}});
  CHECK(again.as<float>() == first.as<float>());
  for (std::size_t r = 0; r < 8; ++r) CHECK(first.as<float>()(r) == small.as<float>()(r));
}

TEST_CASE("memory_plan.buffers_are_aligned_regions_of_one_arena") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 5}, "x");
  Tensor h = nn::relu(matmul(x, constant(xt::xarray<float>(xt::ones<float>({5, 7})))));
  Tensor k = cast(h, int64) + cast(h, int64);  // other dtypes and odd byte counts between
  Tensor y =
      reduce_sum(nn::sigmoid(matmul(h, constant(xt::xarray<float>(xt::ones<float>({7, 3}))))) +
                 reduce_sum(cast(k, float32)));
  Planned p(g, {y}, {{x, xt::xarray<float>(xt::zeros<float>({3, 5}))}});
  const MemoryPlan& m = p.memory;
  REQUIRE(m.buffers.size() >= 4);
  std::size_t end = 0;
  for (const auto& b : m.buffers) {
    CHECK(b.offset % MemoryPlan::kAlignment == 0);
    CHECK(b.offset >= end);  // after the previous region: no two overlap
    end = b.offset + b.elements * dtype_size(b.dtype);
  }
  CHECK(m.arena_bytes == end);
  CHECK(m.arena_bytes >= m.planned_bytes);
  CHECK(m.arena_bytes < m.planned_bytes + m.buffers.size() * MemoryPlan::kAlignment);
}

namespace {
// Whether its input is a view of the run's arena (a planned value) rather than an owned buffer.
void register_is_arena_view() {
  if (op_registry().find("TestIsArenaView")) return;
  op_registry().add({.type = "TestIsArenaView",
                     .shape_fn =
                         [](const InferenceContext&) {
                           return std::vector<TensorSpec>{{boolean, Shape{}}};
                         },
                     .kernels = kernels_for<float>([]<class T>(KernelContext& c) {
                       c.allocate_output<bool>(0, std::vector<std::size_t>{})() =
                           c.input(0).is_view();
                     }),
                     .not_differentiable = true});
}
}  // namespace

TEST_CASE("memory_plan.planned_values_live_in_the_arena_and_the_caller_gets_copies") {
  register_is_arena_view();
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {-1, 3}, "x");
  Tensor a = x * 2.f;  // planned: an op's output read by ops only
  Tensor in_arena = build_op("TestIsArenaView", {a}).output(0);
  Tensor passed = identity(a + 1.f);  // fetched, but its value is a planned one passed through
  Session s;
  const xt::xarray<float> ones = xt::ones<float>({2, 3});
  for (int run = 0; run < 3; ++run) {
    const auto out = s.run({in_arena, passed}, {{x, ones}});
    CHECK(out[0].scalar<bool>());
    CHECK(!out[1].is_view());
    CHECK(out[1].as<float>() == xt::xarray<float>(xt::ones<float>({2, 3}) * 3.f));
  }
  // The caller's copy is a snapshot: later runs write the arena again, not it.
  const Array first = s.run(passed, {{x, ones}});
  const Array second = s.run(passed, {{x, xt::xarray<float>(ones * 5.f)}});
  CHECK(first.as<float>() == xt::xarray<float>(xt::ones<float>({2, 3}) * 3.f));
  CHECK(second.as<float>() == xt::xarray<float>(xt::ones<float>({2, 3}) * 11.f));
}
