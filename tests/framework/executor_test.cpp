// The executor and the session's run-time guarantees: many threads on one session, plan cache
// invalidation, all-or-nothing runs, run-time error context, traces.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <kiln.hpp>
#include <xtensor/xrandom.hpp>

#include "framework/op_registry.hpp"
#include "tests/support/approx.hpp"
#include "tests/support/json.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;

namespace {

// A small batch-normalized MLP with its Adam train op (the main job's pattern, small).
struct SmallNet {
  Tensor x, labels, training, logits, loss;
  Operation train_op;
  SmallNet() {
    x = placeholder(float32, {-1, 8}, "x");
    labels = placeholder(int64, {-1}, "labels");
    training = placeholder(boolean, {}, "training");
    Tensor h = layers::dense(x, 16);
    h = layers::batch_normalization(h, {.momentum = 0.9, .training = training});
    h = nn::relu(h);
    logits = layers::dense(h, 3);
    loss = losses::sparse_softmax_cross_entropy(labels, logits);
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    train_op = train::AdamOptimizer(1e-2).minimize(loss);
  }
};

xt::xarray<float> inputs(std::size_t batch, int seed) {
  xt::random::seed(static_cast<unsigned>(seed));
  return xt::random::randn<float>({batch, std::size_t{8}});
}
xt::xarray<std::int64_t> classes(std::size_t batch) {
  xt::xarray<std::int64_t> y = xt::zeros<std::int64_t>({batch});
  for (std::size_t i = 0; i < batch; ++i) y(i) = static_cast<std::int64_t>(i % 3);
  return y;
}

}  // namespace

TEST_CASE("executor.four_threads_share_one_session") {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(5);
  SmallNet net;
  Session sess;
  sess.run(global_variables_initializer());
  const auto x = inputs(12, 1);
  const auto y = classes(12);
  // Inference from 4 threads equals the serial result.
  const xt::xarray<double> expected = sess.run(net.logits, {{net.x, x}, {net.training, false}}).to_double();
  constexpr int kThreads = 4, kRuns = 200;
  std::atomic<int> mismatches{0}, errors{0};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&] {
        for (int r = 0; r < kRuns; ++r) {
          try {
            const auto out = sess.run(net.logits, {{net.x, x}, {net.training, false}}).to_double();
            if (out != expected) ++mismatches;
          } catch (...) {
            ++errors;
          }
        }
      });
    for (auto& th : threads) th.join();
  }
  CHECK(mismatches.load() == 0);
  CHECK(errors.load() == 0);
  // Training from 4 threads (with an evaluation thread's kind of fetch mixed in) ends finite.
  std::vector<xt::xarray<float>> batches;  // made here: xtensor's random engine is one global
  for (int t = 0; t < kThreads; ++t) batches.push_back(inputs(12, 10 + t));
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        const auto& xt_ = batches[static_cast<std::size_t>(t)];
        for (int r = 0; r < kRuns; ++r) {
          try {
            if (r % 10 == 9) sess.run(net.loss, {{net.x, xt_}, {net.labels, y}, {net.training, false}});
            else sess.run(net.train_op, {{net.x, xt_}, {net.labels, y}, {net.training, true}});
          } catch (...) {
            ++errors;
          }
        }
      });
    for (auto& th : threads) th.join();
  }
  CHECK(errors.load() == 0);
  const float loss = sess.run(net.loss, {{net.x, x}, {net.labels, y}, {net.training, false}}).scalar<float>();
  CHECK(std::isfinite(loss));
}

// A run returns once its last op is counted, and the caller may then destroy the session (its
// plans and run frames) at once: the thread that ran that op, often a pool worker, must not
// touch the frame afterwards. Two branches of large ops (inputs of 2^17 elements: enough to be
// worth a thread, see RunFrame::worth_a_thread) go to the pool, the fetch sums them; the session
// dies right after each run. ASan and ThreadSanitizer builds report a late access.
TEST_CASE("executor.a_session_may_be_destroyed_as_soon_as_a_run_returns") {
  const int saved = num_threads();
  set_num_threads(3);
  const xt::xarray<float> value = xt::ones<float>({std::size_t{1} << 17});
  for (int i = 0; i < 300; ++i) {
    Graph g;
    auto guard = g.as_default();
    Tensor x = placeholder(float32, {1 << 17}, "x");
    Tensor total = reduce_sum(x * 2.0f) + reduce_sum(x * 3.0f);
    Session sess;
    const double got = sess.run(total, {{x, value}}).to_double()();
    if (got != 5.0 * (1 << 17)) FAIL("run " << i << " returned " << got);
  }
  set_num_threads(saved);
}

// Data shared between cores is slow (RunFrame::worth_a_thread): an op whose inputs all hold
// fewer than 2^17 elements runs on the thread that made it ready, so a run of such ops started
// by the caller stays on it, though a second thread is idle and the two branches could overlap.
TEST_CASE("executor.ops_with_small_inputs_stay_on_the_calling_thread") {
  const int saved = num_threads();
  set_num_threads(2);
  Graph g;
  auto guard = g.as_default();
  constexpr int n = (1 << 17) - 1;
  Tensor x = placeholder(float32, {n}, "x");
  Tensor total = reduce_sum(x * 2.0f) + reduce_sum(x * 3.0f);
  Session sess;
  const xt::xarray<float> value = xt::ones<float>({std::size_t{n}});
  for (int i = 0; i < 20; ++i) {
    RunMetadata meta;
    const auto out = sess.run({total}, {{x, value}}, RunOptions{.trace_level = RunOptions::full_trace}, &meta);
    CHECK(out[0].to_double()() == 5.0 * n);
    REQUIRE(meta.step_stats.size() >= 5);
    for (const auto& t : meta.step_stats)
      CHECK_MESSAGE(t.thread == 0, t.name << " ran on pool thread " << t.thread);
  }
  set_num_threads(saved);
}

TEST_CASE("executor.results_do_not_depend_on_the_thread_count") {
  const auto train = [](int threads) {
    const int saved = num_threads();
    set_num_threads(threads);
    Graph g;
    auto guard = g.as_default();
    set_random_seed(9);
    SmallNet net;
    Session sess;
    sess.run(global_variables_initializer());
    for (int step = 0; step < 5; ++step)
      sess.run(net.train_op, {{net.x, inputs(12, step)}, {net.labels, classes(12)}, {net.training, true}});
    auto out = sess.run(net.logits, {{net.x, inputs(12, 99)}, {net.training, false}}).to_double();
    set_num_threads(saved);
    return out;
  };
  CHECK(train(1) == train(3));
}

// Elementwise kernels write into an input's buffer when their op is the value's last reader and
// nothing else holds it: never into a fed value, a fetched one, one another op still reads, or
// one an Identity shares.
TEST_CASE("executor.outputs_take_over_only_buffers_no_one_else_needs") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {4}, "x");
  Tensor a = x * 2.0;                 // read by b, c and fetched
  Tensor b = negative(a);             // a is still needed: a new buffer
  Tensor c = a + b;                   // 0 everywhere
  Tensor d = nn::relu(negative(x));   // negative's value is relu's to take
  Tensor e = identity(d * 3.0);       // shares its input's buffer: neither may be taken over
  Tensor f = exp(e) + e;              // e is read twice
  const Array fed(xt::xarray<float>{1, -2, 3, -4});
  const xt::xarray<double> xv{1, -2, 3, -4};
  Session sess;
  const int saved = num_threads();
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    for (int run = 0; run < 3; ++run) {
      const auto r = sess.run({a, b, c, d, f}, {{x, fed}});
      CHECK(r[0].to_double() == 2.0 * xv);
      CHECK(r[1].to_double() == -2.0 * xv);
      CHECK(r[2].to_double() == xt::zeros<double>({4}));
      const xt::xarray<double> dv = xt::maximum(-xv, 0.0);
      CHECK(r[3].to_double() == dv);
      CHECK(xt::allclose(r[4].to_double(), xt::exp(3.0 * dv) + 3.0 * dv, 1e-6));
      CHECK(fed.to_double() == xv);  // the caller's buffer is never written
    }
  }
  set_num_threads(saved);
}

// Two values sharing one planned buffer (two Identity ops of y), each read by a branch of its own
// on one of two threads: when the branches let them go at the same moment, one of the two must
// see itself the last holder and give the buffer back to its place in the memory plan. (Each saw
// the other's reference and dropped its own: the buffer was freed, and from then on every run
// wrote y to a buffer outside the plan; within 5,000 runs, in each of ten tries.)
TEST_CASE("executor.a_buffer_two_threads_let_go_at_once_stays_planned") {
  Graph g;
  auto guard = g.as_default();
  const std::int64_t n = std::int64_t{1} << 17;  // enough for the branches to go to the pool
  Tensor x = placeholder(float32, Shape{n}, "x");
  Tensor y = x * 2.0f;
  Tensor a = identity(y), b = identity(y);
  Variable v = get_variable("v", Shape{});
  Operation step = assign(v, reduce_sum(a) + reduce_sum(b)).op();  // fetches nothing the plan leaves
  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{x, Array(xt::xarray<float>(xt::ones<float>({static_cast<std::size_t>(n)})))}};
  const int saved = num_threads();
  set_num_threads(2);
  int outside = 0;
  for (int run = 0; run < 5000; ++run) {
    sess.run({step}, feeds);
    if (run >= 2 && sess.last_run_memory().unplanned_outputs > 0) ++outside;
  }
  set_num_threads(saved);
  CHECK(outside == 0);
  CHECK(sess.run(Tensor(v)).to_double()() == 4.0 * static_cast<double>(n));
}

TEST_CASE("executor.a_fetched_buffer_serves_later_runs_once_the_caller_lets_it_go") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {1000}, "x");
  Tensor y = x * 2.0;
  const auto filled = [](float v) { return Array(xt::xarray<float>(xt::ones<float>({1000}) * v)); };
  Session sess;
  const int saved = num_threads();
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    INFO("threads ", threads);
    sess.run(y, {{x, filled(0)}});  // a plan's first run lends nothing: it may be a one-off
    Array first = sess.run(y, {{x, filled(1)}});
    const float* first_data = first.as<float>().data();
    Array second = sess.run(y, {{x, filled(3)}});
    CHECK(second.as<float>().data() != first_data);  // first is still held: untouched
    CHECK(first.to_double() == xt::ones<double>({1000}) * 2.0);
    first = Array();
    for (int run = 0; run < 3; ++run) {
      const Array next = sess.run(y, {{x, filled(5)}});
      CHECK(next.as<float>().data() == first_data);  // the let-go buffer, each run
      CHECK(next.to_double() == xt::ones<double>({1000}) * 10.0);
    }
    CHECK(second.to_double() == xt::ones<double>({1000}) * 6.0);  // held all along: untouched
  }
  set_num_threads(saved);
}

TEST_CASE("executor.a_fetched_view_of_a_variable_is_not_kept_from_its_updates") {
  // identity(w) passes the variable's buffer through: were the frame to keep a reference to it
  // after the caller let it go, the next update of w could not write the buffer the value before
  // the previous update was in (a variable alternates between two buffers, UndoLog), and would
  // take a third.
  Graph g;
  auto guard = g.as_default();
  Variable w = get_variable("w", {1000}, {.initializer = initializers::zeros()});
  Tensor view = identity(w);
  Operation add = group({assign_add(w, ones({1000}, float32))});
  Session sess;
  sess.run(global_variables_initializer());
  const auto buffer_of_w = [&] { return sess.run(w).as<float>().data(); };
  const float* home = buffer_of_w();
  const float* other = nullptr;
  for (int run = 0; run < 4; ++run) {
    { const Array seen = sess.run(view); }  // fetched and let go
    sess.run(add);
    const float* now = buffer_of_w();
    CHECK(now != (run % 2 ? other : home));  // written in the other buffer
    if (run == 0) other = now;
    CHECK(now == (run % 2 ? home : other));  // the two, in turn
  }
  CHECK(sess.run(w).as<float>()(0) == 4.0f);
}

TEST_CASE("executor.updates_read_the_value_before_them_whoever_holds_the_buffers") {
  // A run's first write to a variable reads the value it found and writes the variable's other
  // buffer; a second write in the run updates in place; a value the caller holds keeps its
  // buffer (the next update takes a new one).
  Graph g;
  auto guard = g.as_default();
  Variable w = get_variable("w", {3}, {.initializer = initializers::ones()});
  Tensor first = assign_add(w, constant(xt::xarray<float>{1, 2, 3}));
  Operation twice;
  {
    control_dependencies after({first});
    twice = group({assign_sub(w, constant(xt::xarray<float>{0.5f, 0.5f, 0.5f}))});
  }
  Session sess;
  sess.run(global_variables_initializer());
  const Array held = sess.run(w);  // the caller keeps the initial value
  for (int run = 1; run <= 3; ++run) {
    sess.run(twice);
    CHECK(kiln::testing::allclose(sess.run(w), {1 + 0.5 * run, 1 + 1.5 * run, 1 + 2.5 * run}));
  }
  CHECK(kiln::testing::allclose(held, {1, 1, 1}));
}

TEST_CASE("executor.a_second_write_in_a_run_reads_a_buffer_that_stays_alive") {
  // v += 1 twice in one run; a1's output shares v's buffer and is read by r on another thread.
  // The second write copies that shared buffer before writing (copy on write) and must read the
  // copy: it read the old buffer, which r's release could free or hand to f meanwhile (found in
  // review: a segfault or wrong values in 3 of 3 processes at 2^22 elements, heap-use-after-free
  // under AddressSanitizer).
  const std::int64_t n = std::int64_t{1} << 22;
  Graph g;
  auto guard = g.as_default();
  Variable v(zeros({n}, float32), {.trainable = false, .name = "v"});
  Tensor a1 = assign_add(v, ones({n}, float32));
  Operation twice;
  {
    control_dependencies after({a1});
    twice = group({assign_add(v, ones({n}, float32))}, "twice");
  }
  Tensor r = a1 * 2.0f;  // reads a1's output (v's buffer)
  Tensor f = r * 3.0f;   // fetched: its buffer may come from what r's release freed
  Session sess;
  sess.run(global_variables_initializer());
  for (int k = 1; k <= 12; ++k) {
    const auto out = sess.run({GraphElement(twice), GraphElement(f)});
    const auto& fv = out[1].as<float>();
    REQUIRE(std::all_of(fv.begin(), fv.end(),
                        [&](float e) { return e == 6.0f * static_cast<float>(2 * k - 1); }));
    const Array value = sess.run(v);
    const auto& vv = value.as<float>();
    REQUIRE(std::all_of(vv.begin(), vv.end(),
                        [&](float e) { return e == 2.0f * static_cast<float>(k); }));
  }
}

TEST_CASE("executor.plan_cache_notices_new_control_inputs") {
  Graph g;
  auto guard = g.as_default();
  Variable counter(zeros({}, float32), {.trainable = false, .name = "counter"});
  Tensor bump = assign_add(counter, scalar(1.0));
  Tensor c = constant(Array(2.0f), "c");
  Tensor out = identity(c, "out");
  Session sess;
  sess.run(counter.initializer());
  sess.run(out);
  CHECK(sess.run(counter).scalar<float>() == 0.0f);
  out.op().add_control_input(bump.op());  // after `out`'s plan was cached
  sess.run(out);
  CHECK(sess.run(counter).scalar<float>() == 1.0f);
  // A cycle created after caching is reported, not ignored.
  bump.op().add_control_input(out.op());
  try {
    sess.run(out);
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    CHECK(contains(e.what(), "cycle"));
    CHECK(contains(e.what(), "'out'"));
  }
}

TEST_CASE("executor.a_failed_run_changes_no_variable") {
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {}, "x");
  Variable a(ones({2}), {.name = "a"});
  Variable b(ones({2}), {.name = "b"});
  // Two grouped SGD-like steps; the second needs a feed the run does not give.
  Tensor step_a = assign_sub(a, constant(xt::xarray<float>{0.5f, 0.5f}));
  Tensor step_b = assign_sub(b, fill({2}, 1.0) * x);
  Operation both;
  {
    control_dependencies after({step_a});
    both = group({step_b}, "both");
  }
  Session sess;
  sess.run(global_variables_initializer());
  CHECK_THROWS_AS(sess.run(both), InvalidArgumentError);
  CHECK(kiln::testing::allclose(sess.run(a), {1, 1}));
  CHECK(kiln::testing::allclose(sess.run(b), {1, 1}));
  sess.run(both, {{x, 2.0f}});
  CHECK(kiln::testing::allclose(sess.run(a), {0.5, 0.5}));
  CHECK(kiln::testing::allclose(sess.run(b), {-1, -1}));
}

TEST_CASE("executor.a_failed_run_never_undoes_another_runs_write") {
  // Thread A adds 1 to v, `runs` times; thread B meanwhile writes v (adds 0) and then fails. A
  // failed run puts back only what it wrote last: it restored the value it had found over A's
  // later increments (found in review: 70,511 successful increments left v at 9,374).
  Graph g;
  auto guard = g.as_default();
  Variable v(zeros({}, float32), {.trainable = false, .name = "v"});
  Variable big(ones({1 << 18}, float32), {.trainable = false, .name = "big"});
  Tensor good = assign_add(v, scalar(1.0));
  Tensor touch = assign_add(v, scalar(0.0));
  Operation bad;
  {
    control_dependencies after({touch});
    Tensor s = reduce_sum(big * 2.0f);  // some work between the write and the failure
    bad = group({nn::check_numerics(log(s * -1.0f), "negative")}, "bad");
  }
  Session sess;
  sess.run(global_variables_initializer());
  constexpr int runs = 2000;
  std::atomic<bool> a_done{false};
  std::atomic<int> failed{0};
  std::thread b([&] {
    while (!a_done.load()) {
      try {
        sess.run(bad);
      } catch (const InvalidArgumentError&) {
        ++failed;
      }
    }
  });
  while (failed.load() == 0) std::this_thread::yield();  // B's plan is made and it is running
  for (int i = 0; i < runs; ++i) sess.run(good);
  a_done = true;
  b.join();
  CHECK(failed.load() > 0);
  CHECK(sess.run(v).scalar<float>() == static_cast<float>(runs));
  // Alone, a failed run still changes nothing.
  CHECK_THROWS_AS(sess.run(bad), InvalidArgumentError);
  CHECK(sess.run(v).scalar<float>() == static_cast<float>(runs));
}

TEST_CASE("executor.a_failed_training_step_keeps_the_moving_statistics") {
  Graph g;
  auto guard = g.as_default();
  SmallNet net;
  Session sess;
  sess.run(global_variables_initializer());
  Tensor moving_mean = g.get_tensor_by_name("batch_normalization/moving_mean:0");
  const auto before = sess.run(moving_mean).to_double();
  xt::xarray<std::int64_t> bad = classes(12);
  bad(3) = 7;  // out of range for 3 classes
  CHECK_THROWS_AS(sess.run(net.train_op, {{net.x, inputs(12, 3)}, {net.labels, bad}, {net.training, true}}),
                  InvalidArgumentError);
  CHECK(sess.run(moving_mean).to_double() == before);
  sess.run(net.train_op, {{net.x, inputs(12, 3)}, {net.labels, classes(12)}, {net.training, true}});
  CHECK(sess.run(moving_mean).to_double() != before);
}

TEST_CASE("executor.kernel_errors_name_the_op_and_its_input_shapes") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = placeholder(float32, {-1, 3}, "a");
  Tensor b = placeholder(float32, {-1, 2}, "b");
  Tensor p = matmul(a, b, {}, "product");
  Session sess;
  try {
    sess.run(p, {{a, xt::xarray<float>(xt::zeros<float>({2, 3}))}, {b, xt::xarray<float>(xt::zeros<float>({4, 2}))}});
    FAIL("expected InvalidArgumentError");
  } catch (const InvalidArgumentError& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "[[node 'product' (op: 'MatMul') with input shapes: [2,3], [4,2]]]"));
  }
}

TEST_CASE("executor.full_trace_gives_one_event_per_executed_op") {
  Graph g;
  auto guard = g.as_default();
  SmallNet net;
  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{net.x, inputs(12, 1)}, {net.labels, classes(12)}, {net.training, true}};
  RunMetadata untraced;
  sess.run({net.train_op}, feeds, RunOptions{}, &untraced);
  CHECK(untraced.step_stats.empty());
  RunMetadata meta;
  sess.run({net.train_op}, feeds, RunOptions{.trace_level = RunOptions::full_trace}, &meta);
  const auto ran = sess.last_run_ops();
  std::set<std::string> traced;
  for (const auto& t : meta.step_stats) {
    traced.insert(t.name);
    CHECK(t.end_ns >= t.start_ns);
    CHECK(t.start_ns >= 0);
  }
  CHECK(traced.size() == meta.step_stats.size());
  CHECK(std::any_of(traced.begin(), traced.end(),
                    [](const std::string& n) { return contains(n, "AssignMovingAvg/AssignSub"); }));
  const auto json = kiln::testing::parse_json(meta.chrome_trace());
  std::size_t complete_events = 0;
  for (const auto& e : json["traceEvents"].array()) {
    if (e["ph"].string() != "X") continue;
    ++complete_events;
    CHECK(e["dur"].number() >= 0.0);
    CHECK(traced.count(e["name"].string()) == 1);
    const std::string& name = e["name"].string();
    const auto slash = name.rfind('/');
    CHECK(e["cat"].string() == (slash == std::string::npos ? "(root)" : name.substr(0, slash)));
  }
  CHECK(complete_events == meta.step_stats.size());
  const std::string table = meta.summary();
  CHECK(contains(table, "MatMul"));
  CHECK(contains(table, "all ops"));
  (void)ran;
}

TEST_CASE("executor.run_takes_any_range_of_fetches") {
  Graph g;
  auto guard = g.as_default();
  Tensor a = constant(Array(1.0f), "a");
  Tensor b = a + 1.0;
  Session sess;
  const std::vector<Tensor> tensors{a, b};
  const auto out = sess.run(tensors);
  REQUIRE(out.size() == 2);
  CHECK(out[1].scalar<float>() == 2.0f);
  const std::vector<Operation> ops{a.op(), b.op()};
  CHECK(sess.run(ops).size() == 2);
  Session sequential(g, {.inter_op_parallelism_threads = 1});
  CHECK(sequential.run(b).scalar<float>() == 2.0f);
  CHECK_THROWS_AS(Session(g, {.inter_op_parallelism_threads = -1}), ValueError);
}

TEST_CASE("executor.inter_op_parallelism_threads_caps_the_ops_running_at_once") {
  // Eight independent chains of large ops on a pool of four threads: with
  // inter_op_parallelism_threads = 2 never more than two ops at once (the option was read only
  // as 1 or not 1: up to four ran at once). Overlaps are read from a full trace's op intervals.
  const int threads_before = num_threads();
  set_num_threads(4);
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {1 << 18}, "x");
  std::vector<GraphElement> sums;
  for (int i = 0; i < 8; ++i) sums.push_back(reduce_sum(exp(x * static_cast<float>(i + 1)) * 0.5f));
  const xt::xarray<float> value = xt::zeros<float>({std::size_t{1} << 18});
  Session capped(g, {.inter_op_parallelism_threads = 2});
  int most = 0;
  for (int run = 0; run < 20; ++run) {
    RunMetadata meta;
    capped.run(sums, {{x, value}}, RunOptions{.trace_level = RunOptions::full_trace}, &meta);
    std::vector<std::pair<std::int64_t, int>> edges;  // (time, +1 start / -1 end): ends first
    for (const auto& op : meta.step_stats)
      if (op.type != "Placeholder")
        edges.push_back({op.start_ns, 1}), edges.push_back({op.end_ns, -1});
    std::sort(edges.begin(), edges.end());
    int now = 0;
    for (const auto& e : edges) most = std::max(most, now += e.second);
  }
  set_num_threads(threads_before);
  CHECK(most >= 1);
  CHECK(most <= 2);
}

namespace {
// Attributes that count their copies: a prepared kernel copies them once, when the plan is made.
struct CountedAttrs {
  static inline std::atomic<int> copies{0};
  float scale = 1;
  CountedAttrs() = default;
  CountedAttrs(const CountedAttrs& o) : scale(o.scale) { ++copies; }
  CountedAttrs& operator=(const CountedAttrs& o) {
    scale = o.scale;
    ++copies;
    return *this;
  }
};

void register_counted_scale_op() {
  if (op_registry().find("TestCountedScale")) return;
  op_registry().add({.type = "TestCountedScale",
                     .shape_fn =
                         [](const InferenceContext& c) {
                           return std::vector<TensorSpec>{{c.dtypes[0], c.shapes[0]}};
                         },
                     .kernels = kernels_with<CountedAttrs, float>(
                         []<class T>(KernelContext& c, const CountedAttrs& a) {
                           auto y = c.allocate_output_like<T>(0, 0);
                           const auto& x = c.input_as<T>(0);
                           for (std::size_t i = 0; i < x.size(); ++i)
                             y.data()[i] = x.data()[i] * a.scale;
                         }),
                     .not_differentiable = true});
}
}  // namespace

TEST_CASE("executor.function_kernels_read_their_attributes_once_when_prepared") {
  register_counted_scale_op();
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {3}, "x");
  CountedAttrs attrs;
  attrs.scale = 2.5F;
  Tensor y = build_op("TestCountedScale", {x}, attrs, "scale").output(0);
  Session s;
  const xt::xarray<float> in = {1, -2, 4};
  const int before = CountedAttrs::copies.load();
  CHECK(s.run(y, {{x, in}}).as<float>() == xt::xarray<float>{2.5F, -5, 10});
  const int prepared = CountedAttrs::copies.load();
  CHECK(prepared > before);  // the kernel holds its own copy, typed
  for (int i = 0; i < 5; ++i) s.run(y, {{x, in}});
  CHECK(CountedAttrs::copies.load() == prepared);  // no run reads or copies them again
}

TEST_CASE("executor.exceptions_that_are_not_kiln_errors_get_the_ops_context") {
  // A kernel that runs out of memory (std::bad_alloc: a tile to 2^38 elements raised it bare) or
  // throws another std::exception (a bug) ends the run with a kiln error naming the op.
  if (!op_registry().find("TestThrowing"))
    op_registry().add({.type = "TestThrowing",
                       .shape_fn =
                           [](const InferenceContext& c) {
                             return std::vector<TensorSpec>{{c.dtypes[0], c.shapes[0]}};
                           },
                       .kernels = kernels_for<float>([]<class T>(KernelContext& c) {
                         if (c.input_as<T>(0)[0] == 1) throw std::bad_alloc();
                         throw std::out_of_range("index 7 of 3");
                       }),
                       .not_differentiable = true});
  Graph g;
  auto guard = g.as_default();
  Tensor x = placeholder(float32, {1}, "x");
  Tensor y = build_op("TestThrowing", {x}, {}, "thrower").output(0);
  Session s;
  const std::string context = "[[node 'thrower' (op: 'TestThrowing') with input shapes: [1]]]";
  const std::string oom = kiln::testing::message_of<ResourceExhaustedError>([&] {
    s.run(y, {{x, xt::xarray<float>{1}}});
  });
  CHECK(contains(oom, "OOM when allocating"));
  CHECK(contains(oom, context));
  const std::string bug = kiln::testing::message_of<InternalError>([&] {
    s.run(y, {{x, xt::xarray<float>{2}}});
  });
  CHECK(contains(bug, "index 7 of 3"));
  CHECK(contains(bug, context));
}

TEST_CASE("executor.memory_plan_places_the_outputs_of_a_training_step") {
  Graph g;
  auto guard = g.as_default();
  SmallNet net;
  Session s;
  s.run(global_variables_initializer());
  const xt::xarray<float> x = xt::random::randn<float>({32, 8}, 0.F, 1.F, xt::random::get_default_random_engine());
  const xt::xarray<std::int64_t> y = xt::random::randint<std::int64_t>({32}, 0, 3);
  const FeedDict feeds{{net.x, x}, {net.labels, y}, {net.training, true}};
  for (int i = 0; i < 3; ++i) s.run(std::vector<GraphElement>{net.loss, net.train_op}, feeds);
  const RunMemory m = s.last_run_memory();
  INFO("planned ", m.planned_bytes, " of ", m.unshared_bytes, " bytes; outputs placed ", m.planned_outputs,
       ", unplanned ", m.unplanned_outputs);
  CHECK(m.planned_outputs > 10);
  CHECK(m.planned_bytes < m.unshared_bytes);
  CHECK(m.unplanned_outputs == 1);  // the fetched loss: the caller's, so never planned
}
