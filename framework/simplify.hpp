#pragma once
// Arithmetic simplifications of a run (a small part of what Grappler's arithmetic optimizer and
// remapper do in a TF1 session): the plan lets an op read an equal value that costs less to
// compute, or runs a fused op in its place, and the ops no longer read are not run. The graph
// itself is unchanged (write_graph, gradients and Operation::inputs still see the ops as built).
//
// - An op that broadcasts its inputs against each other (OpDef::broadcasts_inputs) reads
//   BroadcastTo's input instead of its result when its other operand already has the broadcast
//   shape: the op broadcasts itself, to the same shape, with the same values. The gradient of a
//   full reduction (reduce_sum(y * dy)) is such a BroadcastTo.
// - A Mul by a constant whose elements are all 1 (a Const, or a Reshape/BroadcastTo/ExpandDims/
//   Squeeze/Identity of one with constant shapes), when the other operand already has the
//   product's shape, is that operand (x * 1 == x for every float, NaN and infinities included).
// - SumToShape(Mul(a, b), shape) whose Mul no other op, control input or fetch reads, with a and b
//   of the product's shape and an output smaller than it, runs as one _SumOfProducts(a, b, shape)
//   (the gradient of a product with a broadcast factor: batch norm's scale, composed). It sums the
//   products as it reads them, each rounded as the Mul rounds it, in the same order: the same bits
//   without writing the product (a pass over memory less, and its buffer). When a factor is
//   Sub(x, m) that only this Mul reads, x of the product's shape and m broadcast to it (the
//   composed batch norm's x - mean), the three run as one _SumOfCenteredProducts(x, m, b, shape):
//   the difference is not stored either (another pass and buffer less).
// - AddN(MomentsGrad(x, mean, dmean, dvar), a) (either order, two inputs) whose MomentsGrad no
//   other op, control input or fetch reads, a of x's static shape, runs as one
//   _MomentsGradAdd(a, x, mean, dmean, dvar) with the MomentsGrad's attributes (the input gradient
//   of the composed batch norm: the gradient through the statistics plus the direct one). It adds
//   a to each element as it is written, rounded as the two ops round, in a's buffer when nothing
//   else needs it: the same bits, two passes over memory and a buffer less.
// - A Mul(a, s) with s broadcast to a's static shape (a per-channel scale: the composed batch
//   norm's dy * gamma / sqrt(var + eps)) whose every reader is a SumToShape or a two-input AddN
//   (no other op, control input or fetch needs it stored) is formed where it is read:
//   SumToShape(Mul(a, s), shape) runs as _SumOfScaledValues(a, s, shape), and
//   AddN(MomentsGrad(x, mean, dmean, dvar), Mul(a, s)), s one value per channel of x, as
//   _MomentsGradAddScaled(a, s, x, mean, dmean, dvar); each product rounded as the Mul rounds it.
//   The product is never stored (a pass that writes it, and its buffer, less); where an AddN
//   cannot take it over, the Mul still runs for it and the sum reads a instead of the product.
// - ReluGrad(MaxPoolGrad(x, y, dy, argmax), f) whose MaxPoolGrad no other op, control input or
//   fetch reads, f being x (any shapes) or of its static shape, runs as one _MaxPoolGradRelu(x, y, dy, argmax, f) with the
//   MaxPoolGrad's attributes (relu before max pooling, the CNN's pattern): the scattered gradient
//   gated as it is written, bit for bit the pair's result; a pass that writes the scattered
//   gradient and one that reads it back less, and its buffer.
// - AddN(Merge(p0, q0), Merge(p1, q1), ...) whose Merges no other op, control input or fetch reads,
//   with a ZerosLike(z) among their inputs that only its Merge reads (the gradient of a value both
//   branches of a cond read, as TF1 builds it: each branch's Switch gives its gradient and zeros
//   for the other branch), runs as one _CondGradAddN(p0, q0, p1, q1, ...), each ZerosLike
//   replaced by its input: it takes each Merge's first live input, zeros for a z, and adds the
//   values without the zeros (a fill, a pass reading it and its buffer less; one branch's
//   gradient is handed on itself unless adding the zeros would change an element: a -0 to +0, a
//   signalling NaN to a quiet one): the same bits, deadness and errors for unequal shapes,
//   whatever shapes were known at build time. Its z inputs are read for deadness and shape only
//   (liveness_only): the memory plan never puts its output in their buffers.
//
// The others need shapes known when the graph was built (equal and fully defined; the shapes they move
// values to given by constants nobody feeds), never look through an op that is fed, has a control
// input its reader does not have, or was built in another cond branch than its reader, and never hand a reader a variable
// (it would read it at another time), so a rewritten run computes bit for bit what the graph
// says, with the same deadness. None applies in a run that feeds a Const: shape functions read
// constants (a Reshape's target), so a fed one can make the static shapes the rules rely on wrong.
#include <array>
#include <cstddef>
#include <optional>
#include <vector>

#include "framework/graph.hpp"

namespace kiln::detail {

/// The inputs a run reads, per op, for one plan. `cut[id]`: the op's outputs are all fed (it does
/// not run); `fed[id]`: some are (it is never looked through). Not thread-safe (a plan is compiled
/// on one thread).
class Simplifier {
 public:
  /// `fetched`: the tensors the run returns (a fused op never takes a value someone reads);
  /// `targets`: the ops of every fetch. Readers are counted among the ops the targets need (the
  /// run's ops are among them; an op no fetch needs never runs, so it reads nothing).
  Simplifier(const Graph& graph, const std::vector<bool>& cut, const std::vector<bool>& fed,
             const std::vector<TensorRef>& fetched,
             const std::vector<const Node*>& targets);
  /// The op whose kernel the run runs for `op`: its own, or the fused op that takes its place.
  const OpDef& runs(const Node& op);
  /// The node whose attributes that kernel reads: `op`, or the op whose work a fused op took over.
  const Node& attributes(const Node& op);
  /// The inputs the run gives that kernel: the graph's, or equal values from the rules above (and
  /// the fused op's inputs). Ref inputs are kept.
  const std::vector<TensorRef>& inputs(const Node& op) { return inputs_of(op); }
  /// Per input of inputs(op): 1 where the kernel reads only whether the value is live and its
  /// shape, never its elements or buffer (a ZerosLike's input, for _CondGradAddN); empty: none.
  const std::vector<char>& liveness_only(const Node& op) {
    inputs_of(op);
    return liveness_only_[static_cast<std::size_t>(op.id)];
  }
  /// What a run returns for a fetched tensor: it, or an equal value (the second rule).
  TensorRef fetched(TensorRef t);
  /// The ops whose values the run reads for `op`'s inputs, then its control inputs (for ordering).
  std::vector<Node*> predecessors(Node& op);

 private:
  const std::vector<TensorRef>& inputs_of(const Node& op);
  TensorRef without_ones(const TensorRef& t, const Node& reader);
  bool is_constant(const TensorRef& t) const;
  bool all_ones(const TensorRef& t, const Node& reader) const;
  bool looks_through(const Node& src, const Node& reader) const;
  bool readable_instead(const TensorRef& t, const Node& reader) const;
  void fuse_product(const Node& op, std::vector<TensorRef>& ins);
  void fuse_max_pool_grad(const Node& op, std::vector<TensorRef>& ins);
  void fuse_moments_grad(const Node& op, std::vector<TensorRef>& ins);
  void fuse_cond_gradients(const Node& op, std::vector<TensorRef>& ins);
  bool fusable(const TensorRef& t, const Node& reader, const char* type) const;
  std::optional<std::array<TensorRef, 2>> scaled_product(const TensorRef& t, const Node& reader);
  static bool has_kernel(const char* type, const TensorRef& t);
  const std::vector<bool>& cut_;
  const std::vector<bool>& fed_;  // per node id: some output fed (never looked through)
  std::vector<int> readers_;                      // per node id: inputs, control inputs, fetches
  std::vector<int> absorbing_;                    // per node id: readers that are SumToShape or AddN
  std::vector<std::vector<TensorRef>> resolved_;  // per node id, filled on first use
  std::vector<const OpDef*> fused_;               // per node id: the op run in its place, or null
  std::vector<const Node*> attributes_;           // per node id: whose attributes the fused op reads
  std::vector<std::vector<char>> liveness_only_;  // per node id: see liveness_only
  std::vector<char> done_;
  bool static_shapes_hold_ = true;  // false when a Const is fed: the plan reads the graph as built
};

}  // namespace kiln::detail
