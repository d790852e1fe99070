#pragma once
// From a training graph to an inference graph (TF1's tf.graph_util and transform_graph's
// fold_batch_norms). Both functions return a new Graph and leave theirs untouched.
//
//   Session sess;  ... train ...
//   auto frozen = graph_util::convert_variables_to_constants(sess, graph, {"logits/BiasAdd"});
//   auto folded = graph_util::fold_batch_norms(*frozen);
//   write_graph(*folded, "model.kgraph");          // framework/graph_io.hpp
//
// convert_variables_to_constants(sess, graph, output_names): the ops the outputs need (data and
// control inputs, graph_algorithms' walk), with
//   - every variable replaced by a Const of the same name holding the session's value;
//   - each scalar boolean placeholder named in `options.false_placeholders` (default: "training",
//     skipped when the graph has none) replaced by a Const false of the same name (absent from the
//     result when, the conds resolved, nothing reads it any more);
//   - conds resolved statically: a Switch whose predicate is a known constant (a boolean Const, a
//     bound placeholder, through Identity ops) passes its input to the taken output and marks the
//     other dead; ops with a dead input are dropped; a Merge left with one live input is replaced by
//     it. So the Switch/Merge pairs and the untaken branch (the moving-average updates of batch
//     normalization) are gone. Control edges from known constants (cond pivots) are dropped.
//   Every other op is copied with its name, attributes, seed and control inputs (an output that
//   was a resolved Switch/Merge becomes an Identity of that name), so get_tensor_by_name finds
//   the same names. Output names are op names ("logits/BiasAdd") or tensor names ("...:0").
//   Errors: ValueError when the session runs another graph, an output is absent (NotFoundError),
//   an output lies in a branch that is not taken, or an op that writes a variable (Assign...) is
//   still needed; a bound placeholder that is not a scalar boolean is a TypeError. Reading the
//   variables may raise the session's FailedPreconditionError (uninitialized).
//
// fold_batch_norms(graph): the graph (frozen: no variables, else ValueError) with every
// inference-mode batch normalization rewritten:
//   - recognised forms: FusedBatchNorm with is_training false whose outputs 1..4 are unused, and
//     the composed form of nn::batch_normalization, x * inv + (offset - mean * inv) with
//     inv = rsqrt(variance + epsilon) [* scale] (offset and scale optional), where scale, offset,
//     mean, variance and epsilon are constant (computed from Const ops only);
//   - when x comes from a Conv2D or a MatMul with a constant kernel, directly or through a BiasAdd
//     with a constant bias, used by nothing else, and the statistics vary along that op's output
//     channel only (NHWC: the last axis, NCHW: axis 1, MatMul: the columns), the normalization is
//     folded into the kernel and the bias: with a = scale / sqrt(variance + epsilon),
//       w'[..., c] = w[..., c] * a[c]   (transpose_b MatMul: the rows of w),
//       b'[c] = offset[c] + (b[c] - mean[c]) * a[c]   (b = 0 without a BiasAdd),
//     giving Conv2D/MatMul(x, w') -> BiasAdd(b'), in the data format of the convolution;
//   - otherwise it becomes one multiply-add, x * a + (offset - mean * a) (Mul and Add of constants).
//   The folded constants are computed in double and rounded once to the kernel's dtype. The op
//   that produced the normalized output keeps its name (now the BiasAdd or the Add); the kernel
//   op keeps its own; the new constants are named "<op>/folded_kernel", "<op>/folded_bias",
//   "<op>/scale" and "<op>/shift". Ops no longer used are dropped; every op with no consumer in the
//   input graph is kept. The constant inputs are evaluated by a private Session over `graph`.
#include <memory>
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "framework/session.hpp"

namespace kiln::graph_util {

struct ConvertOptions {
  /// Scalar boolean placeholders replaced by a constant false, by op name (TF1's learning-phase
  /// flag; `training` in the README's network). Names the graph does not hold are skipped.
  std::vector<std::string> false_placeholders = {"training"};
};

std::unique_ptr<Graph> convert_variables_to_constants(Session& sess, const Graph& graph,
                                                      const std::vector<std::string>& output_names,
                                                      const ConvertOptions& options = {});

std::unique_ptr<Graph> fold_batch_norms(const Graph& graph);

}  // namespace kiln::graph_util
