#include "optim/losses.hpp"

#include "framework/errors.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops.hpp"

namespace kiln::losses {

namespace {

void expect_compatible(const Tensor& a, const Tensor& b, const char* loss) {
  if (!a.valid() || !b.valid()) throw ValueError(std::string(loss) + ": null Tensor argument");
  if (!a.shape().is_compatible_with(b.shape()))
    throw ValueError(std::string(loss) + ": shapes of '" + a.name() + "' " + a.shape().to_string() + " and '" +
                     b.name() + "' " + b.shape().to_string() + " are incompatible");
}

Tensor finish_loss(const Tensor& per_element) {
  Tensor loss = reduce_mean(per_element, {}, false, "value");
  get_default_graph().add_to_collection(GraphKeys::LOSSES, loss);
  return loss;
}

Tensor as_dtype(const Tensor& t, DType dt) { return t.dtype() == dt ? t : cast(t, dt); }

std::vector<Tensor> tensors_of(const std::string& key, const std::string& scope) {
  std::vector<Tensor> r;
  for (auto& e : get_default_graph().get_collection(key, scope))
    if (!e.is_operation()) r.push_back(e.as_tensor());
  return r;
}

}  // namespace

Tensor sparse_softmax_cross_entropy(const Tensor& labels, const Tensor& logits) {
  if (!labels.valid() || !logits.valid()) throw ValueError("sparse_softmax_cross_entropy: null Tensor argument");
  const Shape& ls = labels.shape();
  const Shape& gs = logits.shape();
  if (ls.rank() >= 0 && gs.rank() >= 0) {
    bool ok = ls.rank() + 1 == gs.rank();
    for (int i = 0; ok && i < ls.rank(); ++i) ok = ls[i] < 0 || gs[i] < 0 || ls[i] == gs[i];
    if (!ok)
      throw ValueError("sparse_softmax_cross_entropy: labels '" + labels.name() + "' " + ls.to_string() +
                       " must have the shape of logits '" + logits.name() + "' " + gs.to_string() +
                       " without its last dimension");
  }
  name_scope ns("sparse_softmax_cross_entropy_loss");
  return finish_loss(nn::sparse_softmax_cross_entropy_with_logits(labels, logits));
}

Tensor softmax_cross_entropy(const Tensor& onehot_labels, const Tensor& logits) {
  expect_compatible(onehot_labels, logits, "softmax_cross_entropy");
  name_scope ns("softmax_cross_entropy_loss");
  const Tensor labels = stop_gradient(as_dtype(onehot_labels, logits.dtype()), "labels_stop_gradient");
  return finish_loss(nn::softmax_cross_entropy_with_logits(labels, logits));
}

Tensor sigmoid_cross_entropy(const Tensor& multi_class_labels, const Tensor& logits) {
  expect_compatible(multi_class_labels, logits, "sigmoid_cross_entropy");
  name_scope ns("sigmoid_cross_entropy_loss");
  const Tensor labels = as_dtype(multi_class_labels, logits.dtype());
  return finish_loss(nn::sigmoid_cross_entropy_with_logits(labels, logits));
}

Tensor mean_squared_error(const Tensor& labels, const Tensor& predictions) {
  expect_compatible(labels, predictions, "mean_squared_error");
  name_scope ns("mean_squared_error");
  return finish_loss(squared_difference(predictions, as_dtype(labels, predictions.dtype())));
}

std::vector<Tensor> get_losses(const std::string& scope) { return tensors_of(GraphKeys::LOSSES, scope); }

std::vector<Tensor> get_regularization_losses(const std::string& scope) {
  return tensors_of(GraphKeys::REGULARIZATION_LOSSES, scope);
}

Tensor get_regularization_loss(const std::string& scope, const std::string& name) {
  const auto losses = get_regularization_losses(scope);
  if (losses.empty()) return scalar(0.0, float32);
  return add_n(losses, name);
}

Tensor get_total_loss(bool add_regularization_losses, const std::string& name) {
  auto losses = get_losses();
  if (add_regularization_losses) {
    const auto reg = get_regularization_losses();
    losses.insert(losses.end(), reg.begin(), reg.end());
  }
  if (losses.empty()) throw ValueError("No losses found.");
  return add_n(losses, name);
}

}  // namespace kiln::losses

namespace kiln::metrics {

Tensor accuracy(const Tensor& labels, const Tensor& predictions, const std::string& name) {
  if (!labels.valid() || !predictions.valid()) throw ValueError("accuracy: null Tensor argument");
  if (!labels.shape().is_compatible_with(predictions.shape()))
    throw ValueError("accuracy: shapes of labels '" + labels.name() + "' " + labels.shape().to_string() +
                     " and predictions '" + predictions.name() + "' " + predictions.shape().to_string() +
                     " are incompatible");
  name_scope ns(name);
  const Tensor p = predictions.dtype() == labels.dtype() ? predictions : cast(predictions, labels.dtype());
  return reduce_mean(cast(equal(labels, p), float32), {}, false, "value");
}

}  // namespace kiln::metrics
