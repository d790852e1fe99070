#pragma once
// Session: runs a graph. Variable values live here.
//
//   Session sess;                                    // the default graph
//   sess.run(global_variables_initializer());
//   Array y = sess.run(logits, {{x, images}, {training, false}});
//
// run() prunes to the ops the fetches (and their control inputs) need, skips the ops of untaken
// cond branches (dead values), and caches the compiled plan per (fetches, feeds) signature; a plan
// is recompiled when an op it holds gained a control input (Graph::structure_version).
//
// Threads: run() may be called from many threads at once on one session (TF semantics). Each run
// has its own frame; a variable read sees one consistent value even while another run assigns it;
// runs that assign the same variables interleave as in TF (no lock across a whole step). The ops
// of one run execute on the library's thread pool (framework/thread_pool.hpp) in dependency order;
// accesses to one variable keep their plan order, so results do not depend on the thread count.
// Building the graph while another thread runs it is not supported.
//
// Errors (each names the tensor or op; kernel errors get " [[node 'name' (op: 'Type') with input
// shapes: ...]]" appended):
// - a feed whose dtype or shape does not match its tensor: InvalidArgumentError naming the tensor,
//   the expected and the received dtype/shape;
// - a needed placeholder not fed: InvalidArgumentError naming it;
// - reading an uninitialized variable: FailedPreconditionError naming it;
// - a dependency cycle: InvalidArgumentError naming ops on it;
// - fetching a tensor of an untaken branch: InvalidArgumentError naming it.
// A run that throws changes no variable: every variable it wrote gets its previous value back.
#include <concepts>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <ranges>
#include <string>
#include <utility>
#include <span>
#include <vector>

#include "framework/array.hpp"
#include "framework/explain.hpp"
#include "framework/graph.hpp"
#include "framework/run_metadata.hpp"

namespace kiln {

using FeedDict = std::vector<std::pair<Tensor, Array>>;

struct SessionOptions {
  /// Ops of one run that may execute at once: 0 = as many as the thread pool has threads, 1 = one
  /// at a time in plan order on the calling thread, n = at most n (TF's
  /// inter_op_parallelism_threads). The pool size itself (kernels split their loops on it) is
  /// set_num_threads().
  int inter_op_parallelism_threads = 0;
};

/// A range of items convertible to GraphElement: std::vector<Tensor>, std::vector<Operation>, ...
template <class R>
concept GraphElementRange = std::ranges::input_range<R> &&
                            std::convertible_to<std::ranges::range_reference_t<R>, GraphElement> &&
                            !std::convertible_to<const R&, GraphElement>;

class Session {
 public:
  Session();  // the default graph at construction time
  explicit Session(Graph& graph, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Fetching an Operation returns an empty Array.
  Array run(const GraphElement& fetch, const FeedDict& feeds = {});
  std::vector<Array> run(std::initializer_list<GraphElement> fetches, const FeedDict& feeds = {});
  std::vector<Array> run(const std::vector<GraphElement>& fetches, const FeedDict& feeds = {});
  template <GraphElementRange R>
  std::vector<Array> run(const R& fetches, const FeedDict& feeds = {}) {
    return run(std::vector<GraphElement>(std::ranges::begin(fetches), std::ranges::end(fetches)), feeds);
  }

  /// Traced runs (TF1's run(..., options=RunOptions(trace_level=FULL_TRACE), run_metadata=...)):
  /// with full_trace, `metadata` receives one OpTrace per executed op.
  Array run(const GraphElement& fetch, const FeedDict& feeds, const RunOptions& options, RunMetadata* metadata);
  std::vector<Array> run(const std::vector<GraphElement>& fetches, const FeedDict& feeds, const RunOptions& options,
                         RunMetadata* metadata);
  std::vector<Array> run(std::initializer_list<GraphElement> fetches, const FeedDict& feeds, const RunOptions& options,
                         RunMetadata* metadata) {
    return run_fetches({fetches.begin(), fetches.size()}, feeds, options, metadata);
  }

  /// What run(fetches, feeds) would do, without running it: execution order by name scope, cond
  /// branches and dead ops, control-dependency chains, pruned ops (framework/explain.hpp).
  /// Validates the feeds like run().
  Explanation explain(const std::vector<GraphElement>& fetches, const FeedDict& feeds = {});
  Explanation explain(const GraphElement& fetch, const FeedDict& feeds = {}) {
    return explain(std::vector<GraphElement>{fetch}, feeds);
  }

  /// The ops the last finished run executed, in plan order (pruned ops and dead branches excluded).
  std::vector<std::string> last_run_ops() const;
  /// The most op outputs the last run held at once: values are released after their last reader.
  std::size_t last_run_peak_values() const;
  /// The memory plan of the last finished run and how its outputs followed it. Outputs computed in
  /// place of an input (elementwise ops) count in neither number.
  RunMemory last_run_memory() const;
  /// Number of compiled plans held by the cache.
  std::size_t num_cached_plans() const;
  Graph& graph() const;

 private:
  // Every run overload lands here; the fetches are viewed, not copied (a steady-state run
  // allocates nothing but its results).
  std::vector<Array> run_fetches(std::span<const GraphElement> fetches, const FeedDict& feeds, const RunOptions& options,
                                 RunMetadata* metadata);
  void check_elements(std::span<const GraphElement> fetches, const FeedDict& feeds) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
