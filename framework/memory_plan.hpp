#pragma once
// The memory plan of a run: which buffer each op output is written to, worked out before the run
// from the plan and the shapes of the feeds.
//
// 1. Shapes: every op's shape function runs again with the fed shapes in place of the static ones
//    (a batch dimension of -1 becomes the batch size), in plan order.
// 2. Buffers: walking the plan in order, an output of known shape takes a buffer of its dtype and
//    element count that no value still needs, or a new one. "No longer needed" must hold for any
//    execution order the executor may choose on many threads: a buffer passes from value A to
//    value B only when every reader of A is an ancestor of B's producer in the plan's DAG. Each
//    buffer is a region of one block of memory, the arena (4): values whose lifetimes do not
//    overlap share an offset.
// 3. In place: an op that may write its output into an input's buffer (OpDef::forwards_input)
//    takes over the buffer of the first input of the output's shape and dtype when it is that
//    value's only reader; when output 0 is planned the executor offers the kernel exactly that
//    input (when it is not, any input the op reads last, as without a plan).
// 4. Offsets: the buffers one after another in the arena, each aligned to kAlignment bytes. The
//    executor allocates the arena once per memory plan and hands each planned output a view of
//    its region (an Array that does not own its elements, framework/array.hpp).
// A value no one reads gets a buffer too, free again as soon as its op finished.
//
// What the plan leaves to the run (MemoryPlan::kDynamic): fed and fetched values (the caller's),
// outputs whose shape depends on data (not known from the feed shapes), the outputs of plans too
// large for the ancestor sets (more than kMaxSteps ops). The executor gives
// those buffers from its free list, and falls back to it as well when a planned buffer is still
// held (an op that shares its input's buffer, such as Identity, keeps it longer than planned).
#include <cstddef>
#include <vector>

#include "framework/plan.hpp"

namespace kiln::detail {

struct MemoryPlan {
  static constexpr int kDynamic = -1;
  static constexpr std::size_t kMaxSteps = 8192;
  static constexpr std::size_t kAlignment = 64;  // a cache line; an AVX-512 vector
  struct Buffer {
    DType dtype;
    std::size_t elements;
    std::size_t offset = 0;  // in bytes, from the start of the arena
  };
  std::vector<Buffer> buffers;
  std::size_t arena_bytes = 0;   // every buffer's region, aligned
  std::vector<int> slot_buffer;  // per value slot: its buffer, or kDynamic
  std::vector<int> donor;        // per step: the input whose buffer output 0 takes over, or -1
  std::size_t planned_bytes = 0;   // all buffers
  std::size_t unshared_bytes = 0;  // the planned values, each in a buffer of its own
};

/// The plan for running `plan` with feeds of these shapes (parallel to plan.feed_slots; fully
/// defined). Shape functions that throw on the concrete shapes leave those outputs dynamic.
MemoryPlan plan_memory(const Plan& plan, const std::vector<Shape>& feed_shapes);

}  // namespace kiln::detail
