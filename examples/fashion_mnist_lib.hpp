#pragma once
// The training code of examples/fashion_mnist (the README's main job), as a library so that the
// example's main() and the slow test share it.
//
//   kiln::examples::FashionMnistConfig cfg;           // the default recipe
//   cfg.train_limit = 5000;                            // a quick run
//   auto result = kiln::examples::train_fashion_mnist(cfg, &std::cout);
//   result.epochs.back().test_accuracy;
//
// The default network (TF1 graph mode, the seed's UPDATE_OPS workflow):
//   x [N,28,28,1] scaled to [0,1] (or [N,1,28,28] with channels_first)
//   conv 3x3 32 (same, no bias) -> batch norm -> relu -> max-pool 2
//   conv 3x3 64 (same, no bias) -> batch norm -> relu -> max-pool 2
//   flatten -> dense 128 (no bias) -> batch norm -> relu  (hidden_units = 0 drops these; dropout
//                                                          after the relu when dropout > 0)
//   dense 10 -> sparse softmax cross entropy
//   { control_dependencies deps(get_collection(UPDATE_OPS)); train_op = Adam(lr).minimize(loss); }
// with the learning rate decayed by lr_decay once per epoch (train::exponential_decay, staircase).
//
// Deterministic for a fixed seed and thread count: the graph-level seed fixes the
// initializers and dropout masks, and the epoch shuffles come from a seeded std::mt19937 with a
// hand-written Fisher-Yates (no std::uniform_int_distribution, whose output differs between
// standard libraries).
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "examples/data/idx.hpp"
#include "examples/progress.hpp"
#include "framework/session.hpp"

namespace kiln::examples {

/// The network's handles (names: placeholders "x", "labels", "training"; logits "logits/BiasAdd").
struct Model {
  Tensor x, labels, training;
  Tensor logits, loss, accuracy, predictions, learning_rate;
  Operation train_op;
  Tensor step_totals;           // distributed: [loss * n, accuracy * n, n] summed over ranks
  Tensor eval_in, eval_totals;  // distributed: a float64 vector summed over ranks
};
struct FashionMnistConfig;
/// Builds the network of the header comment in the default graph.
Model build_model(const FashionMnistConfig& config, std::int64_t steps_per_epoch);

struct FashionMnistConfig {
  int epochs = 5;
  int batch_size = 64;
  /// 0: the optimizer's default (adam 1e-3, sgd 0.1, momentum 0.01 with 0.9, rmsprop 1e-3).
  double learning_rate = 0;
  /// Factor applied to the learning rate after each epoch (1: constant).
  double lr_decay = 0.6;
  std::string optimizer = "adam";              // adam | sgd | momentum | rmsprop
  std::string data_format = "channels_last";   // channels_last | channels_first
  std::optional<bool> fused;                   // batch norm's fused path; empty: kiln's choice
  bool renorm = false;                         // batch renormalization
  double bn_momentum = 0.9;
  int hidden_units = 128;                      // 0: no hidden dense layer (the plain seed network)
  bool hidden_batch_norm = true;               // dense (no bias) -> batch norm -> relu
  double dropout = 0;                          // after the hidden layer; 0: none
  std::uint64_t seed = 1;
  int threads = 0;                             // the library's thread pool (set_num_threads); 0: all cores
  std::string data_dir = data::kFashionMnistDir;
  std::string output_dir;                      // curves.csv and graph.dot; empty: write nothing
  std::int64_t train_limit = 0;                // first N training examples; 0: all 60000
  std::int64_t test_limit = 0;                 // first N test examples; 0: all 10000
  int eval_batch_size = 500;
  ProgressBar::Mode progress = ProgressBar::Mode::none;
  /// After the last epoch: recompute the batch-norm statistics over this many training batches
  /// (layers::recompute_batch_norm_statistics) and evaluate again; 0: no.
  int precise_bn_batches = 0;
  /// Trace training step N (counting from 1 over all epochs): <output_dir>/trace.json (Chrome trace
  /// events) and TrainResult::trace_summary (time per op type); 0: no trace.
  std::int64_t trace_step = 0;
  /// Called at the end with the trained session and the network (examples/export.cpp freezes it).
  std::function<void(Session&, const Model&)> after_training{};
  /// Data-parallel over the ranks of distributed::init() (mpirun -np N): each global batch of
  /// batch_size is split into N slices, gradients are averaged (DistributedOptimizer), variables
  /// start from rank 0's, the test set is sharded; logs and files on rank 0 only.
  bool distributed = false;
  bool synchronized_bn = true;                 // in distributed mode: batch norm over the global batch
};

struct EpochStats {
  int epoch = 0;                // 1-based
  double learning_rate = 0;     // used during this epoch
  double train_loss = 0;        // mean over the epoch's batches (weighted by batch size)
  double train_accuracy = 0;    // in training mode, on the batches as they were trained
  double test_loss = 0;         // inference mode (training fed false)
  double test_accuracy = 0;
  double train_seconds = 0;     // wall time of the epoch's training steps
  double eval_seconds = 0;      // wall time of the test evaluation
  double examples_per_second = 0;  // training throughput
};

/// The moving statistics of the batch-norm layers at one point of training (what UPDATE_OPS moves).
struct MovingStatsSample {
  double epoch = 0;                         // fractional: 0 before the first step, 1 after epoch 1
  std::vector<double> mean_of_moving_mean;  // per layer of TrainResult::batch_norm_layers
  std::vector<double> mean_of_moving_variance;
};

struct TrainResult {
  std::vector<EpochStats> epochs;
  std::vector<std::string> batch_norm_layers;   // e.g. "block1/batch_normalization"
  std::vector<MovingStatsSample> moving_stats;  // before training, then about 20 per epoch
  std::int64_t train_examples = 0;
  std::int64_t test_examples = 0;
  std::int64_t parameters = 0;  // trainable scalars
  int threads = 0;  // of the library's pool

  /// With trace_step: the traced step's time per op type, and where its Chrome trace was written.
  std::string trace_summary;
  std::string trace_path;
  /// With precise_bn_batches: the test accuracy after recomputing the statistics (before: the
  /// last epoch's test_accuracy).
  std::optional<double> precise_bn_test_accuracy;
};

/// Validates the config (std::invalid_argument naming the field for a bad value).
void validate(const FashionMnistConfig& config);

/// Trains on an already loaded dataset. `log` (may be null) receives the header, progress and
/// one summary line per epoch. Writes <output_dir>/graph.dot (write_graphviz with
/// collapse_below = 2) before training and rewrites <output_dir>/curves.csv and moving_stats.csv
/// (epoch, then per batch-norm layer "<layer> moving_mean" and "<layer> moving_variance": the mean
/// over the layer's channels) after each epoch when output_dir is set.
TrainResult train_fashion_mnist(const FashionMnistConfig& config, const data::Dataset& dataset,
                                std::ostream* log = nullptr);
/// Loads the dataset from config.data_dir (data::IdxError when missing), then trains.
TrainResult train_fashion_mnist(const FashionMnistConfig& config, std::ostream* log = nullptr);

/// Builds the graph train_fashion_mnist trains (network, loss, metrics, the train op under
/// control_dependencies(UPDATE_OPS)) in the default graph, without running anything; for pictures
/// and tests. Throws std::invalid_argument for a bad config (validate).
void build_fashion_mnist_graph(const FashionMnistConfig& config, std::int64_t steps_per_epoch);

/// The permutation 0..n-1 shuffled by Fisher-Yates with draws from `rng` (rejection sampling, so
/// it is unbiased and identical on every platform).
template <class Rng>
void fisher_yates_shuffle(std::vector<std::int64_t>& v, Rng& rng);

}  // namespace kiln::examples

// ---- implementation of the template
namespace kiln::examples {
template <class Rng>
void fisher_yates_shuffle(std::vector<std::int64_t>& v, Rng& rng) {
  using U = std::uint64_t;
  constexpr U range = static_cast<U>(Rng::max() - Rng::min());
  static_assert(range >= 0xFFFFFFFFull, "needs a 32-bit generator at least");
  for (std::size_t i = v.size(); i > 1; --i) {
    const U bound = static_cast<U>(i);  // draw j uniformly in [0, i)
    // the largest multiple of bound that fits in [0, range]: reject draws above it
    const U limit = range - (range % bound + 1) % bound;
    U r;
    do r = static_cast<U>(rng() - Rng::min());
    while (r > limit);
    const std::size_t j = static_cast<std::size_t>(r % bound);
    std::swap(v[i - 1], v[j]);
  }
}
}  // namespace kiln::examples
