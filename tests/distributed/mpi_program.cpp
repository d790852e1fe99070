// The 2-rank side of the distributed tests, started by mpi_launcher_test.cpp as
// `mpirun -np 2 mpi_program <scenario>`. Prints what it checks; exit code 0 when every check passed.
//
//   equivalence  broadcast makes differently seeded ranks equal; 3 SGD steps on 2 ranks x 32 with
//                synchronized batch norm (`training` a placeholder fed true) equal 1 process x 64 (variables and moving statistics,
//                1e-5 relative); every rank holds identical variables after each step; without
//                synchronization the result differs (printed).
//   bad_feed     rank 1 feeds a badly shaped batch and stops; rank 0's AllReduce times out (2 s)
//                with an error naming its rank, and the job is aborted instead of hanging.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <xtensor/xview.hpp>

#include <kiln.hpp>

using namespace kiln;

namespace {

constexpr int kLocalBatch = 32;
int failures = 0;

void check(bool ok, const std::string& what) {
  std::cout << "rank " << distributed::rank() << ": " << (ok ? "ok: " : "CHECK FAILED: ") << what << std::endl;
  failures += ok ? 0 : 1;
}

struct Net {
  Tensor x, labels, loss;
  Tensor training;                  // a boolean placeholder fed true, or null (training = true)
  Operation train_op;
  std::vector<Variable> variables;  // GLOBAL_VARIABLES: weights and moving statistics
  Tensor gathered;                  // [size, parameters]: every rank's variables, for comparisons
  Tensor gathered_trainable;        // the same for the trainable variables only
};

// conv 3x3 (no bias) -> batch norm (fused-eligible) -> relu -> dense 4 (no bias) -> batch norm
// -> relu -> dense 3 -> softmax cross entropy; SGD 0.1 (averaged over ranks when distributed).
// With `training_placeholder` the statistics sit in the layers' cond (the main job's form).
Net build(bool synchronized, bool distributed_optimizer, bool training_placeholder = false) {
  Net n;
  n.x = placeholder(float32, {-1, 6, 6, 2}, "x");
  n.labels = placeholder(int64, {-1}, "labels");
  if (training_placeholder) n.training = placeholder(boolean, {}, "training");
  const layers::Training training = training_placeholder ? layers::Training(n.training) : layers::Training(true);
  Tensor h = layers::conv2d(n.x, 3, {3, 3}, {.padding = "same", .use_bias = false});
  h = nn::relu(layers::batch_normalization(h, {.momentum = 0.5, .training = training, .synchronized = synchronized}));
  h = layers::dense(layers::flatten(h), 4, {.use_bias = false});
  h = nn::relu(layers::batch_normalization(h, {.momentum = 0.5, .training = training, .synchronized = synchronized}));
  n.loss = losses::sparse_softmax_cross_entropy(n.labels, layers::dense(h, 3));
  {
    control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
    n.train_op = distributed_optimizer ? distributed::DistributedOptimizer(train::GradientDescentOptimizer(0.1)).minimize(n.loss)
                                       : train::GradientDescentOptimizer(0.1).minimize(n.loss);
  }
  std::vector<Tensor> flat, flat_trainable;
  for (const GraphElement& e : get_collection(GraphKeys::GLOBAL_VARIABLES)) {
    n.variables.push_back(e.as_variable());
    flat.push_back(reshape(n.variables.back().value(), Shape{-1}));
    if (n.variables.back().trainable()) flat_trainable.push_back(flat.back());
  }
  n.gathered = distributed::all_gather(reshape(concat(flat, 0), Shape{1, -1}));
  n.gathered_trainable = distributed::all_gather(reshape(concat(flat_trainable, 0), Shape{1, -1}));
  return n;
}

// Global batch `step` of 64: images around an offset of 3 (so batch statistics matter), labels.
std::pair<xt::xarray<float>, xt::xarray<std::int64_t>> global_batch(int step) {
  std::mt19937 rng(static_cast<std::mt19937::result_type>(100 + step));
  std::normal_distribution<float> normal(3.0f, 2.0f);
  xt::xarray<float> x = xt::xarray<float>::from_shape({2 * kLocalBatch, 6, 6, 2});
  for (auto& v : x) v = normal(rng);
  xt::xarray<std::int64_t> y = xt::xarray<std::int64_t>::from_shape({2 * kLocalBatch});
  for (auto& v : y) v = static_cast<std::int64_t>(rng() % 3);
  return {x, y};
}

FeedDict feeds(const Net& n, int step, int begin, int count) {
  auto [x, y] = global_batch(step);
  xt::xarray<float> xs = xt::view(x, xt::range(begin, begin + count));
  xt::xarray<std::int64_t> ys = xt::view(y, xt::range(begin, begin + count));
  FeedDict f{{n.x, xs}, {n.labels, ys}};
  if (n.training.valid()) f.emplace_back(n.training, Array(true));
  return f;
}

bool ranks_equal(Session& sess, const Tensor& gathered) {
  const auto all = sess.run(gathered).as<float>();
  for (std::size_t r = 1; r < all.shape(0); ++r)
    if (xt::view(all, r) != xt::view(all, 0)) return false;
  return true;
}

// max over variables of max|a - b| / max|b|
double relative_difference(const std::vector<Array>& a, const std::vector<Array>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto da = a[i].to_double(), db = b[i].to_double();
    const double scale = std::max(xt::amax(xt::abs(db))(), 1e-12);
    worst = std::max(worst, xt::amax(xt::abs(da - db))() / scale);
  }
  return worst;
}

std::vector<Array> values(Session& sess, const Net& n) {
  std::vector<Array> v;
  for (const Variable& var : n.variables) v.push_back(sess.run(var));
  return v;
}

void load(Session& sess, const Net& n, const std::vector<Array>& v) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    Tensor p = placeholder(n.variables[i].dtype(), n.variables[i].shape());
    sess.run(assign(n.variables[i], p), {{p, v[i]}});
  }
}

// Trains 3 steps from `initial` on 2 ranks (rank r: rows [32r, 32r + 32)), checking after each
// step that the ranks agree; returns the variables.
std::vector<Array> train_distributed(bool synchronized, const std::vector<Array>& initial, std::vector<Array>* start) {
  Graph g;
  auto guard = g.as_default();
  set_random_seed(10 + distributed::rank());  // differently seeded ranks
  const Net n = build(synchronized, true, synchronized);
  Session sess;
  sess.run(global_variables_initializer());
  if (initial.empty()) {
    check(!ranks_equal(sess, n.gathered), "differently seeded ranks start with different variables");
    distributed::broadcast_variables(sess, 0);
    check(ranks_equal(sess, n.gathered), "after broadcast_variables every rank holds rank 0's variables");
    *start = values(sess, n);
  } else {
    load(sess, n, initial);
  }
  bool equal = true, moving_equal = true;
  for (int step = 0; step < 3; ++step) {
    sess.run(n.train_op, feeds(n, step, distributed::rank() * kLocalBatch, kLocalBatch));
    equal = equal && ranks_equal(sess, n.gathered_trainable);
    moving_equal = moving_equal && ranks_equal(sess, n.gathered);
  }
  // Averaged gradients keep the weights equal; the moving statistics agree only when synchronized.
  check(equal, std::string(synchronized ? "synchronized" : "unsynchronized") +
                   ": every rank holds identical trainable variables after each step");
  check(moving_equal == synchronized, std::string(synchronized ? "synchronized" : "unsynchronized") +
                                          ": the moving statistics are " + (moving_equal ? "" : "not ") +
                                          "identical on every rank");
  if (synchronized) {  // checkpoints: rank 0 writes, the other ranks' save() writes nothing
    const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                      ("kiln_mpi_saver_" + std::to_string(distributed::rank()) + "_" +
                                       std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "model.ckpt").string();
    train::Saver saver;
    check(saver.save(sess, path) == path, "Saver::save returns the checkpoint path on every rank");
    check(std::filesystem::exists(path) == (distributed::rank() == 0),
          "only rank 0 writes the checkpoint (rank " + std::to_string(distributed::rank()) + ")");
    std::filesystem::remove_all(dir);
  }
  return values(sess, n);
}

std::vector<Array> train_one_process(const std::vector<Array>& initial) {
  Graph g;
  auto guard = g.as_default();
  const Net n = build(false, false);
  Session sess;
  sess.run(global_variables_initializer());
  load(sess, n, initial);
  for (int step = 0; step < 3; ++step) sess.run(n.train_op, feeds(n, step, 0, 2 * kLocalBatch));
  return values(sess, n);
}

void equivalence() {
  std::vector<Array> start;
  const std::vector<Array> synced = train_distributed(true, {}, &start);
  const std::vector<Array> reference = train_one_process(start);
  const std::vector<Array> unsynced = train_distributed(false, start, nullptr);
  const double d_sync = relative_difference(synced, reference), d_unsync = relative_difference(unsynced, reference);
  std::ostringstream s, u;
  s << "2 ranks x 32 synchronized vs 1 process x 64 after 3 SGD steps: max relative difference " << d_sync
    << " (variables and moving statistics, limit 1e-5)";
  u << "without synchronization they differ: max relative difference " << d_unsync << " (> 1e-3 expected)";
  check(d_sync < 1e-5, s.str());
  check(d_unsync > 1e-3, u.str());
}

void bad_feed() {
  distributed::set_collective_timeout(2.0);
  Graph g;
  auto guard = g.as_default();
  const Net n = build(true, true);
  Session sess;
  sess.run(global_variables_initializer());
  distributed::broadcast_variables(sess, 0);
  sess.run(n.train_op, feeds(n, 0, distributed::rank() * kLocalBatch, kLocalBatch));
  try {
    if (distributed::rank() == 1) {
      xt::xarray<float> wrong = xt::zeros<float>({4, 5, 5, 2});
      sess.run(n.train_op, {{n.x, wrong}, {n.labels, xt::xarray<std::int64_t>::from_shape({4})}});
    } else {
      sess.run(n.train_op, feeds(n, 1, 0, kLocalBatch));
    }
    std::cout << "rank " << distributed::rank() << ": the step unexpectedly succeeded" << std::endl;
  } catch (const Error& e) {
    std::cout << "rank " << distributed::rank() << " caught: " << e.what() << std::endl;
  }
  // Rank 1 leaves (finalize); rank 0 finalizes after its timeout, which aborts the job.
  distributed::finalize();
}

}  // namespace

int main(int argc, char** argv) {
  distributed::init();
  const std::string scenario = argc > 1 ? argv[1] : "";
  try {
    if (scenario == "equivalence") equivalence();
    else if (scenario == "bad_feed") bad_feed();
    else {
      std::cerr << "usage: mpi_program equivalence|bad_feed\n";
      return 2;
    }
  } catch (const std::exception& e) {
    distributed::abort(std::string("uncaught: ") + e.what());
  }
  if (distributed::rank() == 0 && scenario == "equivalence") std::cout << (failures ? "FAILED" : "PASSED") << std::endl;
  return failures ? 1 : 0;
}
