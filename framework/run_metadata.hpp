#pragma once
// Tracing a run (TF1's RunOptions / RunMetadata / timeline):
//
//   RunMetadata meta;
//   sess.run(train_op, feeds, RunOptions{.trace_level = RunOptions::full_trace}, &meta);
//   std::ofstream("trace.json") << meta.chrome_trace();   // open in Perfetto or chrome://tracing
//   std::cout << meta.summary();                          // time per op type, slowest first
//
// Without a trace level the executor records nothing (no clock reads, no allocation).
#include <cstdint>
#include <string>
#include <vector>

#include "framework/types.hpp"

namespace kiln {

struct RunOptions {
  enum TraceLevel { no_trace = 0, full_trace = 3 };  // TF's NO_TRACE / FULL_TRACE values
  TraceLevel trace_level = no_trace;
};

/// One executed op of a traced run. Times are nanoseconds since the run started.
struct OpTrace {
  std::string name;  // "block1/conv2d/Conv2D"
  std::string type;  // "Conv2D"
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;
  int thread = 0;  // 0: the thread that called run; 1..: pool workers
  std::vector<Shape> output_shapes;
  std::int64_t bytes = 0;  // bytes of the outputs it produced
};

/// How a finished run used memory (Session::last_run_memory): its memory plan (made from the
/// feeds' shapes before the run; framework/memory_plan.hpp) and where its op outputs were written.
struct RunMemory {
  std::size_t planned_bytes = 0;      // the buffers of the memory plan
  std::size_t unshared_bytes = 0;     // the values the plan placed, each in a buffer of its own
  std::size_t planned_outputs = 0;    // outputs written to their planned buffer
  std::size_t unplanned_outputs = 0;  // outputs given a buffer from the free list, or a new one
};

class RunMetadata {
 public:
  /// The executed ops (pruned and dead ones excluded) in plan order.
  std::vector<OpTrace> step_stats;
  /// Chrome trace event JSON (one complete event per op, name scopes as categories, one row per
  /// thread), as TF1's timeline.Timeline(step_stats).generate_chrome_trace_format().
  std::string chrome_trace() const;
  /// A table per op type: count, total and mean time, share of the summed op time; slowest first.
  std::string summary() const;
};

}  // namespace kiln
