#pragma once
// The values of a Session's variables, shared by every run of that session.
//
// Each VariableV2 op has one slot: a mutex and the current value (an Array: a shared, copy-on-write
// buffer). Thread safety, for runs on many threads at once (TF's Session::Run is thread-safe):
// - a read takes a snapshot under the slot's mutex: a run that reads a variable sees one whole
//   value, never a half-written one, even while another run assigns it;
// - a write (Assign, AssignAdd, Apply*) holds the slot's mutex for the whole kernel; in-place
//   updates copy first when a snapshot still shares the buffer, so snapshots never change.
// Slots are created when a plan is compiled and live as long as the store, so plans hold plain
// pointers to them.
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
/// nothing for variables). Record before the first write to a slot, with the slot's mutex held.
/// The log copies the value into a buffer of its own (kept for the next run: no allocation in a
/// steady state), so the variable's buffer stays unshared and the kernel updates it in place.
class UndoLog {
 public:
  void record(VariableSlot& slot);
  /// Puts every recorded value back (locking each slot), then forgets them.
  void roll_back();
  /// Forgets the recorded values, keeping their buffers for reuse.
  void clear() { used_ = 0; }

 private:
  struct Entry {
    VariableSlot* slot = nullptr;
    Array saved;
  };
  std::mutex mutex_;  // steps on several threads record into one log
  std::vector<Entry> entries_;
  std::size_t used_ = 0;
};

}  // namespace kiln::detail
