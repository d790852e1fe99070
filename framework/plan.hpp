#pragma once
// A compiled run: what Session::run executes for one (fetches, feeds) signature.
//
// compile_plan prunes the graph to the ops the fetches need (not past fed tensors; reading the
// equal but cheaper inputs of framework/simplify.hpp), orders them,
// gives every op output a value slot, counts the readers of each slot (a value is released when its
// last reader finished), and turns the graph into a dependency DAG for the executor:
// - data and control inputs are edges;
// - accesses to one variable keep their plan order (a write after the reads and writes before it, a
//   read after the write before it), so a run on many threads computes what the one-thread run in
//   plan order computes;
// - collective ops (OpDef::is_collective) form one chain in plan order, so every process issues
//   them in the same order whatever the thread count.
// A plan is immutable after compilation and shared by concurrent runs; it remembers the graph's
// structure_version so the session can tell when it is stale.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "framework/explain.hpp"
#include "framework/graph.hpp"
#include "framework/op_registry.hpp"
#include "framework/variable_store.hpp"

namespace kiln::detail {

struct PlanStep {
  Node* node = nullptr;
  /// What the step runs for the node: its op, or a fused op in its place (framework/simplify.hpp),
  /// and the node whose attributes it reads (the node, or the op whose work the fused op took).
  const OpDef* def = nullptr;
  const Node* attrs = nullptr;
  std::shared_ptr<const OpKernel> kernel;  // def's, prepared once per plan; null for cut steps and variables
  int out_base = 0;     // first value slot of the node's outputs
  int num_outputs = 0;  // value slots it owns (at least 1, so that an op's deadness has a slot)
  std::vector<TensorRef> inputs;            // what the kernel reads (the simplified inputs)
  std::vector<int> in_slots;                // per input: its value slot, or -1 (ref input / variable read)
  std::vector<char> liveness_only;          // per input, or empty: read for deadness and shape only
                                            // (Simplifier::liveness_only): never its buffer
  std::vector<VariableSlot*> var_reads;     // per input: the variable read from the store, or null
  std::vector<VariableSlot*> writes;        // the variables behind ref inputs, in lock order
  std::vector<int> ctrl_slots;              // a slot of each control input (deadness only)
  std::vector<int> successors;              // steps that wait for this one
  int num_predecessors = 0;
  bool cut = false;  // all outputs fed: not run
  OpDef::DeadInputs dead_inputs = OpDef::DeadInputs::any;  // def's
  bool is_variable = false;
};

/// Whether a step that is not cut is dead (does not run; its outputs dead), given which value slots
/// are: a dead control input, or dead data inputs as its op says (OpDef::dead_inputs). What the
/// executor decides at run time and explain predicts.
bool is_dead(const PlanStep& s, const std::vector<char>& dead_slots);

/// The state a run of a plan needs (values, counts, reusable output buffers): kept between runs so
/// that a steady-state run allocates nothing. Defined by the executor.
struct RunFrame;
struct RunFrameDeleter {
  void operator()(RunFrame* frame) const;
};
struct RunFramePool {
  std::mutex mutex;
  std::vector<std::unique_ptr<RunFrame, RunFrameDeleter>> idle;  // frames no run is using
};

struct Plan {
  std::vector<PlanStep> steps;          // in a valid one-thread execution order
  std::vector<int> fetch_slots;         // -1 for Operation fetches
  std::vector<const Node*> fetch_variables;  // per fetch: the variable node read at the end, or null
  std::vector<VariableSlot*> fetch_variable_slots;
  std::vector<int> feed_slots;          // -1 for feeds the plan does not need
  std::vector<int> slot_readers;        // per slot: reading steps (fetched slots: never released)
  std::vector<int> initial_ready;       // steps without predecessors
  int num_slots = 0;
  std::uint64_t structure_version = 0;
  /// Frames of finished runs, taken by the next runs (concurrent runs each take their own).
  std::unique_ptr<RunFramePool> frames = std::make_unique<RunFramePool>();
};

/// Throws InvalidArgumentError naming the ops on a dependency cycle.
Plan compile_plan(Graph& graph, const std::vector<GraphElement>& fetches,
                  const std::vector<std::pair<Tensor, Array>>& feeds, VariableStore& store);

/// What running the plan would do (framework/explain.hpp), without running it.
Explanation explain_plan(const Graph& graph, const Plan& plan, const std::vector<GraphElement>& fetches,
                         const std::vector<std::pair<Tensor, Array>>& feeds);

}  // namespace kiln::detail
