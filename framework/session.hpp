#pragma once
// Session: runs a graph. Variable values live here.
//
//   Session sess;                                    // the default graph
//   sess.run(global_variables_initializer());
//   Array y = sess.run(logits, {{x, images}, {training, false}});
//
// run() prunes to the ops the fetches (and their control inputs) need, runs them in topological
// order, skips the ops of untaken cond branches (dead values), and caches the compiled plan per
// (fetches, feeds) signature. Errors:
// - a feed whose dtype or shape does not match its tensor: InvalidArgumentError naming the tensor,
//   the expected and the received dtype/shape;
// - a needed placeholder not fed: InvalidArgumentError naming it;
// - reading an uninitialized variable: FailedPreconditionError naming it;
// - a dependency cycle: InvalidArgumentError naming ops on it;
// - fetching a tensor of an untaken branch: InvalidArgumentError naming it.
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/array.hpp"
#include "framework/graph.hpp"

namespace kiln {

using FeedDict = std::vector<std::pair<Tensor, Array>>;

class Session {
 public:
  Session();  // the default graph at construction time
  explicit Session(Graph& graph);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Fetching an Operation returns an empty Array.
  Array run(const GraphElement& fetch, const FeedDict& feeds = {});
  std::vector<Array> run(std::initializer_list<GraphElement> fetches, const FeedDict& feeds = {});
  std::vector<Array> run(const std::vector<GraphElement>& fetches, const FeedDict& feeds = {});

  /// The ops the last run executed, in order (pruned ops and dead branches excluded).
  std::vector<std::string> last_run_ops() const;
  /// The most op outputs the last run held at once: values are released after their last reader.
  std::size_t last_run_peak_values() const;
  /// Number of compiled plans held by the cache.
  std::size_t num_cached_plans() const;
  Graph& graph() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
