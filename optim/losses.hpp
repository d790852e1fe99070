#pragma once
// kiln::losses (TF1's tf.losses with unit weights) and kiln::metrics::accuracy.
//
//   Tensor logits = layers::dense(h, 10);
//   Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits)   // also added to LOSSES
//               + losses::get_regularization_loss();                    // REGULARIZATION_LOSSES
//   Tensor acc = metrics::accuracy(labels, argmax(logits, 1));
//
// Each loss is the MEAN of the per-element losses (tf.losses' SUM_BY_NONZERO_WEIGHTS reduction with
// weights = 1), a scalar of the logits' (predictions') dtype, built under a name scope named like
// TF's ("sparse_softmax_cross_entropy_loss", ...), and added to the LOSSES collection.
// Shapes (N = batch, K = classes; ValueError naming both tensors when they do not fit):
//   sparse_softmax_cross_entropy(labels [N] int32/int64, logits [N, K])
//       mean_n( logsumexp(logits_n) - logits_n[labels_n] )
//   softmax_cross_entropy(onehot_labels [N, K], logits [N, K])    (no gradient to the labels, like TF)
//       mean_n( -sum_k onehot_nk * log_softmax(logits)_nk )
//   sigmoid_cross_entropy(multi_class_labels [N, K] (cast to the logits' dtype), logits [N, K])
//       mean_nk( max(x, 0) - x * z + log(1 + exp(-|x|)) )
//   mean_squared_error(labels, predictions) (same shape; labels cast to predictions' dtype)
//       mean( (predictions - labels)^2 )
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::losses {

Tensor sparse_softmax_cross_entropy(const Tensor& labels, const Tensor& logits);
Tensor softmax_cross_entropy(const Tensor& onehot_labels, const Tensor& logits);
Tensor sigmoid_cross_entropy(const Tensor& multi_class_labels, const Tensor& logits);
Tensor mean_squared_error(const Tensor& labels, const Tensor& predictions);

/// The LOSSES collection (optionally only names starting with `scope`).
std::vector<Tensor> get_losses(const std::string& scope = "");
/// The REGULARIZATION_LOSSES collection: one scalar per regularized variable, creation order.
std::vector<Tensor> get_regularization_losses(const std::string& scope = "");
/// Their sum (one AddN named `name`), or a float32 scalar 0 when there are none (like TF).
Tensor get_regularization_loss(const std::string& scope = "", const std::string& name = "total_regularization_loss");
/// Sum of get_losses() and, when `add_regularization_losses`, the regularization losses.
/// ValueError "No losses found." when both are empty.
Tensor get_total_loss(bool add_regularization_losses = true, const std::string& name = "total_loss");

}  // namespace kiln::losses

namespace kiln::metrics {

/// Fraction of elements where predictions == labels (predictions cast to the labels' dtype when
/// they differ, as TF does), a float32 scalar. A plain op over the fed batch, not TF's streaming
/// (value, update_op) pair. ValueError when the shapes are incompatible.
Tensor accuracy(const Tensor& labels, const Tensor& predictions, const std::string& name = "accuracy");

}  // namespace kiln::metrics
