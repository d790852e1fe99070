#pragma once
// kiln::regularizers: weight penalties for get_variable's (and the layers') `regularizer` option.
// A regularizer is any callable Tensor(Tensor) (kiln::TensorFn); its output, a scalar, is added to
// the REGULARIZATION_LOSSES collection once, when the variable is created. Sum them with
// losses::get_regularization_loss() and add that to the training loss.
//
//   Variable w = get_variable("w", {784, 10}, {.regularizer = regularizers::l2(1e-4)});
//   Tensor loss = losses::sparse_softmax_cross_entropy(labels, logits)
//               + losses::get_regularization_loss();
//
// Scale convention: KERAS'S (tf.keras.regularizers), with no factor 1/2:
//   l1(s)(w)        = s * sum(|w|)
//   l2(s)(w)        = s * sum(w^2)            (TF1's tf.contrib.layers.l2_regularizer(s) is
//                                              s * sum(w^2) / 2 = s * tf.nn.l2_loss(w): to port it,
//                                              use l2(s / 2))
//   l1_l2(a, b)(w)  = a * sum(|w|) + b * sum(w^2)
// The result has the dtype of w and shape []. ValueError for a negative scale (TF's wording:
// "Setting a scale less than 0 on a regularizer: -0.1").
#include "framework/graph.hpp"

namespace kiln::regularizers {

TensorFn l1(double scale = 0.01);
TensorFn l2(double scale = 0.01);
TensorFn l1_l2(double l1 = 0.01, double l2 = 0.01);

}  // namespace kiln::regularizers
