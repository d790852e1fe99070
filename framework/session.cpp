#include "framework/session.hpp"

#include <map>
#include <shared_mutex>

#include "framework/errors.hpp"
#include "framework/executor.hpp"
#include "framework/plan.hpp"
#include "framework/thread_pool.hpp"

namespace kiln {

struct Session::Impl {
  Graph* graph = nullptr;
  SessionOptions options;
  detail::SessionResources resources;

  mutable std::shared_mutex plans_mutex;
  std::map<std::vector<std::int64_t>, std::shared_ptr<const detail::Plan>> plans;

  mutable std::mutex record_mutex;
  detail::RunRecord last;

  std::shared_ptr<const detail::Plan> plan_for(std::span<const GraphElement> fetches, const FeedDict& feeds);
};

std::shared_ptr<const detail::Plan> Session::Impl::plan_for(std::span<const GraphElement> fetches,
                                                            const FeedDict& feeds) {
  thread_local std::vector<std::int64_t> key;  // its capacity is reused: no allocation per run
  key.clear();
  for (auto& f : fetches) {
    key.push_back(f.op().node()->id);
    key.push_back(f.is_operation() ? -1 : f.as_tensor().value_index());
  }
  key.push_back(-2);
  for (auto& [t, v] : feeds) {
    key.push_back(t.op().node()->id);
    key.push_back(t.value_index());
  }
  const std::uint64_t version = graph->structure_version();
  {
    std::shared_lock lk(plans_mutex);
    auto it = plans.find(key);
    if (it != plans.end() && it->second->structure_version == version) return it->second;
  }
  auto plan = std::make_shared<const detail::Plan>(detail::compile_plan(*graph, {fetches.begin(), fetches.end()}, feeds, resources.variables));
  std::unique_lock lk(plans_mutex);
  plans[key] = plan;
  return plan;
}

namespace {
void validate_feed(const Tensor& t, const Array& v) {
  if (v.empty()) throw InvalidArgumentError("Feed for '" + t.name() + "' is an empty Array");
  if (v.dtype() != t.dtype())
    throw InvalidArgumentError(std::string("Cannot feed value of dtype ") + dtype_name(v.dtype()) +
                               " for Tensor '" + t.name() + "', which has dtype " + dtype_name(t.dtype()));
  if (!v.fits(t.shape()))
    throw InvalidArgumentError("Cannot feed value of shape " + v.shape().to_string() + " for Tensor '" +
                               t.name() + "', which has shape " + t.shape().to_string());
}
}  // namespace

Session::Session() : Session(get_default_graph()) {}
Session::Session(Graph& graph, SessionOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.inter_op_parallelism_threads < 0)
    throw ValueError("SessionOptions: inter_op_parallelism_threads must be >= 0, got " +
                     std::to_string(options.inter_op_parallelism_threads));
  impl_->graph = &graph;
  impl_->options = options;
}
Session::~Session() = default;

Array Session::run(const GraphElement& fetch, const FeedDict& feeds) {
  return run_fetches({&fetch, 1}, feeds, RunOptions{}, nullptr).front();
}
std::vector<Array> Session::run(std::initializer_list<GraphElement> fetches, const FeedDict& feeds) {
  return run_fetches({fetches.begin(), fetches.size()}, feeds, RunOptions{}, nullptr);
}
std::vector<Array> Session::run(const std::vector<GraphElement>& fetches, const FeedDict& feeds) {
  return run_fetches(fetches, feeds, RunOptions{}, nullptr);
}
Array Session::run(const GraphElement& fetch, const FeedDict& feeds, const RunOptions& options, RunMetadata* metadata) {
  return run_fetches({&fetch, 1}, feeds, options, metadata).front();
}
std::vector<Array> Session::run(const std::vector<GraphElement>& fetches, const FeedDict& feeds,
                                const RunOptions& options, RunMetadata* metadata) {
  return run_fetches(fetches, feeds, options, metadata);
}

void Session::check_elements(std::span<const GraphElement> fetches, const FeedDict& feeds) const {
  for (auto& f : fetches)
    if (&f.op().graph() != impl_->graph)
      throw InvalidArgumentError("Fetch '" + f.name() + "' is not an element of this session's graph");
  for (auto& [t, v] : feeds) {
    if (&t.graph() != impl_->graph)
      throw InvalidArgumentError("Feed '" + t.name() + "' is not an element of this session's graph");
    validate_feed(t, v);
  }
}

Explanation Session::explain(const std::vector<GraphElement>& fetches, const FeedDict& feeds) {
  check_elements(fetches, feeds);
  return detail::explain_plan(*impl_->graph, *impl_->plan_for(fetches, feeds), fetches, feeds);
}

std::vector<Array> Session::run_fetches(std::span<const GraphElement> fetches, const FeedDict& feeds,
                                        const RunOptions& options, RunMetadata* metadata) {
  check_elements(fetches, feeds);
  const auto plan = impl_->plan_for(fetches, feeds);
  detail::ExecuteOptions exec;
  exec.sequential = impl_->options.inter_op_parallelism_threads == 1 || num_threads() == 1;
  exec.max_parallel_ops = impl_->options.inter_op_parallelism_threads;
  exec.trace = options.trace_level == RunOptions::full_trace;
  // The record swaps with the session's last one, so both vectors keep their capacity.
  thread_local detail::RunRecord record;
  std::vector<Array> results;
  try {
    results = detail::execute(*plan, feeds, impl_->resources, exec, record, metadata);
  } catch (...) {
    std::lock_guard lk(impl_->record_mutex);
    std::swap(impl_->last, record);
    throw;
  }
  std::lock_guard lk(impl_->record_mutex);
  std::swap(impl_->last, record);
  return results;
}

std::vector<std::string> Session::last_run_ops() const {
  std::lock_guard lk(impl_->record_mutex);
  std::vector<std::string> r;
  for (auto* n : impl_->last.executed) r.push_back(n->name);
  return r;
}
std::size_t Session::num_cached_plans() const {
  std::shared_lock lk(impl_->plans_mutex);
  return impl_->plans.size();
}
std::size_t Session::last_run_peak_values() const {
  std::lock_guard lk(impl_->record_mutex);
  return impl_->last.peak_values;
}
RunMemory Session::last_run_memory() const {
  std::lock_guard lk(impl_->record_mutex);
  return impl_->last.memory;
}
Graph& Session::graph() const { return *impl_->graph; }

}  // namespace kiln
