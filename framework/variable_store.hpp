#pragma once
// The values of a Session's variables, shared by every run of that session.
//
// Each VariableV2 op has one slot: a mutex and the current value (an Array: a shared, copy-on-write
// buffer). Thread safety, for runs on many threads at once (TF's Session::Run is thread-safe):
// - a read takes a snapshot under the slot's mutex: a run that reads a variable sees one whole
//   value, never a half-written one, even while another run assigns it;
// - a write (Assign, AssignAdd, Apply*) holds the slot's mutex for the whole kernel; a run's first
//   write to a slot goes to a buffer no one else holds (UndoLog, below), a later one in place
//   (copied first when a snapshot shares the buffer), so snapshots never change.
// Slots are created when a plan is compiled and live as long as the store, so plans hold plain
// pointers to them.
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "framework/array.hpp"
#include "framework/graph.hpp"

namespace kiln::detail {

struct VariableSlot {
  const Node* node = nullptr;
  std::mutex mutex;
  Array value;  // empty: not initialized
  std::uint64_t writer = 0;  // the run that wrote value last (UndoLog::record), 0: none
};

class VariableStore {
 public:
  /// The slot of a VariableV2 node, created on first use. Thread-safe.
  VariableSlot& slot(const Node* variable_node);
  /// A snapshot of the value; FailedPreconditionError naming the variable when uninitialized.
  static Array read(VariableSlot& slot);

 private:
  std::shared_mutex mutex_;
  std::vector<std::unique_ptr<VariableSlot>> slots_;  // by node id
};

/// The values a run's writes replaced, so that a failed run can put them back (a run is all or
/// nothing for variables). Concurrent runs see each other's writes at once (as in TF), so a
/// failed run puts back only the variables whose last write is its own: a variable another run
/// wrote after it keeps that run's value (a successful run's update is never undone; a run that
/// read the failed run's value and wrote from it keeps what it wrote). Record before each write to
/// a slot, with the slot's mutex held. On the run's first write to a slot, the log takes its
/// value as it is (no copy: the value before the write, which the writing kernel reads and never
/// writes) and gives the slot another buffer of the same dtype and shape for the kernel to write:
/// the one the log took from the slot in its previous run, when no one else holds it (a variable
/// alternates between two buffers: no copy and, in a steady state, no allocation), else a new one.
/// Later writes in the run update the slot in place. (The log copied the value instead: a copy of
/// every variable and slot a training step updates, 1.2 MB a step in the MLP benchmark, 5 MB in
/// the main job's. MLP step, one thread, alternating processes: 0.319-0.370 -> 0.305-0.310 ms; two
/// threads 0.336-0.394 -> 0.325-0.327 ms.)
class UndoLog {
 public:
  /// The slot's value before this write: what the log keeps (first write) or the slot's value.
  /// Stays valid, unchanged, until the log is cleared or rolled back.
  const Array& record(VariableSlot& slot);
  /// Puts back (locking each slot) every recorded value whose slot this run wrote last, then
  /// forgets them.
  void roll_back();
  /// Forgets the recorded values, keeping their buffers for reuse; the next writes are a new run's.
  void clear();

 private:
  struct Entry {
    VariableSlot* slot = nullptr;
    Array saved;
    std::uint64_t writer = 0;  // the slot's writer before this run's first write
  };
  std::uint64_t run_ = 0;  // this run's token (unique in the process), set by clear()
  std::mutex mutex_;  // steps on several threads record into one log
  std::deque<Entry> entries_;  // a deque: recording keeps the entries other steps still read
  std::size_t used_ = 0;
};

}  // namespace kiln::detail
