#pragma once
// Precise batch-norm statistics ("precise BN", as in SlowFast, pycls and fast-reid): after training,
// replace each batch-normalization layer's moving averages, which lag behind the weights after a
// short run, by equal-weight averages of the batch statistics over some batches.
//
//   std::vector<FeedDict> batches = ...;    // training images, e.g. 200 batches
//   auto stats = layers::recompute_batch_norm_statistics(sess, batches);   // every BN layer
//   layers::recompute_batch_norm_statistics(sess, next_batch, {.layers = {"block1/batch_normalization"}});
//
// For each batch the network runs in training mode (the placeholder named `options.training` is
// fed true unless the batch feeds it) and the batch statistics are read from the layer's own
// moving-average updates (the value each update would move towards: the batch mean, and the batch
// variance as the layer computes it). Nothing else runs: no update op, no optimizer, so trainable
// variables and the moving averages are untouched until, at the end, each layer's moving_mean and
// moving_variance are assigned (once per layer, through placeholders and Assign ops added to the
// graph under the name scope "recompute_batch_norm_statistics"):
//   moving_mean     = mean_b(m_b)
//   moving_variance = mean_b(v_b) + mean_b(m_b^2) - moving_mean^2
// with m_b, v_b the statistics of batch b (a layer called k times contributes k pairs per batch),
// accumulated in double. With equal batch sizes, and the composed path's biased v_b, this is the
// population mean and (biased) variance of everything the layer saw. The fused path reports
// v_b = var_b * N / (N - 1) (N = elements per channel in a batch, TF's Bessel correction, see
// BATCH_NORM.md section 3), so its within-batch part carries that factor, as its moving variance
// would; the between-batch part mean_b(m_b^2) - moving_mean^2 does not. Virtual batches: m_b and
// v_b are the layer's averages over its groups.
//
// Layers are found by their moving-average updates (AssignSub under an "AssignMovingAvg" scope
// on "<layer>/moving_mean" and "<layer>/moving_variance"); the layer name is that variable scope.
// Errors: ValueError for no batches, an unknown layer name, a graph without batch-norm updates,
// or a renorm layer (its moving statistics derive from the renorm averages, not from batch
// statistics); the session's errors for bad feeds. Not thread-safe with other uses of the graph.
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "framework/array.hpp"
#include "framework/session.hpp"

namespace kiln::layers {

/// The feed batches: a vector of feed dicts, or a generator returning the next one (std::nullopt
/// when there is no more).
class FeedBatches {
 public:
  FeedBatches(std::vector<FeedDict> batches) : batches_(std::move(batches)) {}  // NOLINT
  template <class F>
    requires std::is_invocable_r_v<std::optional<FeedDict>, F&>
  FeedBatches(F next) : next_(std::move(next)) {}  // NOLINT
  std::optional<FeedDict> next();

 private:
  std::vector<FeedDict> batches_;
  std::size_t pos_ = 0;
  std::function<std::optional<FeedDict>()> next_;
};

struct PreciseBatchNormOptions {
  /// Layer names (variable scopes, e.g. "block1/batch_normalization"); empty: every
  /// batch-normalization layer with moving-average updates in the session's graph.
  std::vector<std::string> layers{};
  /// The placeholder fed true with each batch (by op name); skipped when the graph has none.
  std::string training = "training";
};

/// What was assigned to one layer.
struct BatchNormStatistics {
  std::string layer;
  Variable moving_mean, moving_variance;
  Array mean, variance;  // the new values, the variables' shape and dtype
  int samples = 0;       // batch statistics averaged (batches x calls of the layer)
};

std::vector<BatchNormStatistics> recompute_batch_norm_statistics(Session& sess, FeedBatches batches,
                                                                 const PreciseBatchNormOptions& options = {});

}  // namespace kiln::layers
