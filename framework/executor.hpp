#pragma once
// The executor: runs a compiled Plan once, in a run frame of its own.
//
// Every op waits for its predecessors in the plan's DAG (a dependency count per op); ready ops run
// on the library's thread pool, the calling thread helping, or one at a time in plan order when the
// run is sequential. Per-run state (values, deadness, counts, the undo log) lives in the frame, so
// any number of runs of one session may execute at once (TF's Session::Run is thread-safe).
//
// - Deadness: an op of an untaken cond branch does not run and its outputs are dead; Merge runs
//   when any input is alive.
// - Values are released when their last reader finished; fetched and fed values are kept.
// - Errors: a kernel's exception gets the op's name, type and input shapes appended here (the one
//   place for run-time context) and ends the run after the ops already running finished.
// - All or nothing for variables: when the run fails, every variable it wrote gets back the value
//   it had before the run, unless another run wrote it since (UndoLog: that run's value stays).
// - ExecuteOptions::max_parallel_ops caps the ops of the run executing at once.
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "framework/plan.hpp"
#include "framework/run_metadata.hpp"
#include "framework/variable_store.hpp"

namespace kiln::detail {

/// What a session keeps between runs: variable values and the generators of random ops.
class SessionResources {
 public:
  VariableStore variables;
  /// The generator of a random op, seeded on first use; `hold` locks it for the kernel.
  std::mt19937_64& rng(const Node* node, std::unique_lock<std::mutex>& hold);

 private:
  struct Rng {
    std::mutex mutex;
    std::mt19937_64 gen;
  };
  std::mutex mutex_;
  std::unordered_map<const Node*, std::unique_ptr<Rng>> rngs_;
};

struct ExecuteOptions {
  bool sequential = false;  // plan order on the calling thread
  int max_parallel_ops = 0;  // otherwise, at most this many ops at once (0: no limit)
  bool trace = false;
};

/// What a finished run reports besides its results.
struct RunRecord {
  std::vector<const Node*> executed;  // plan order
  std::size_t peak_values = 0;        // most op outputs held at once
  RunMemory memory;
};

/// Runs the plan; feeds are parallel to plan.feed_slots. Returns one Array per fetch (empty for an
/// Operation). Throws what the run threw, with op context added, after rolling variables back.
std::vector<Array> execute(const Plan& plan, const std::vector<std::pair<Tensor, Array>>& feeds,
                           SessionResources& resources, const ExecuteOptions& options, RunRecord& record,
                           RunMetadata* metadata);

}  // namespace kiln::detail
