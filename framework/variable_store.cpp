#include "framework/variable_store.hpp"

#include <algorithm>
#include <atomic>

#include "framework/errors.hpp"

namespace kiln::detail {

VariableSlot& VariableStore::slot(const Node* v) {
  const auto id = static_cast<std::size_t>(v->id);
  {
    std::shared_lock lk(mutex_);
    if (id < slots_.size() && slots_[id]) return *slots_[id];
  }
  std::unique_lock lk(mutex_);
  if (slots_.size() <= id) slots_.resize(id + 1);
  if (!slots_[id]) {
    slots_[id] = std::make_unique<VariableSlot>();
    slots_[id]->node = v;
  }
  return *slots_[id];
}

Array VariableStore::read(VariableSlot& slot) {
  Array snapshot;
  {
    std::lock_guard lk(slot.mutex);
    snapshot = slot.value;
  }
  if (snapshot.empty()) {
    const Node* v = slot.node;
    throw FailedPreconditionError("Attempting to use uninitialized value " + v->name + " (variable '" + v->name +
                                  ":0', shape " + v->output_shapes[0].to_string() + ")");
  }
  return snapshot;
}

namespace {
// A buffer of `value`'s dtype and shape for the slot to be written in: `spare` when no one else
// holds it and it fits, else a new one; empty for an empty (uninitialized) value.
Array buffer_like(const Array& value, Array spare) {
  if (value.empty()) return Array();
  if (!spare.empty() && spare.unique() && spare.dtype() == value.dtype() && spare.same_shape(value)) return spare;
  std::vector<std::size_t> dims;
  visit_dtype(value.dtype(), [&]<class T>() {
    const auto& s = value.view<T>().shape();
    dims.assign(s.begin(), s.end());
  });
  return make_array(value.dtype(), dims);
}
}  // namespace

void UndoLog::clear() {
  static std::atomic<std::uint64_t> runs{0};
  used_ = 0;
  run_ = runs.fetch_add(1, std::memory_order_relaxed) + 1;
}

const Array& UndoLog::record(VariableSlot& slot) {
  std::lock_guard lk(mutex_);
  for (std::size_t i = 0; i < used_; ++i)
    if (entries_[i].slot == &slot) {
      slot.writer = run_;
      return slot.value;
    }
  // The entry this slot had in an earlier run holds its other buffer (runs on several threads
  // record in varying orders). Only entries this run has not used move.
  std::size_t j = used_;
  while (j < entries_.size() && entries_[j].slot != &slot) ++j;
  if (j == entries_.size()) {
    if (used_ == entries_.size()) entries_.emplace_back();
    j = used_;
  }
  std::swap(entries_[j], entries_[used_]);
  Entry& e = entries_[used_++];
  Array spare = std::move(e.saved);  // this slot's other buffer, or another's it may fit
  e.slot = &slot;
  e.saved = std::move(slot.value);
  e.writer = slot.writer;
  slot.value = buffer_like(e.saved, std::move(spare));
  slot.writer = run_;
  return e.saved;
}

void UndoLog::roll_back() {
  // record() locks the log while holding a slot: take the entries out first, so that no slot is
  // locked here while the log is (one lock order).
  std::deque<Entry> entries;
  std::size_t used = 0;
  {
    std::lock_guard lk(mutex_);
    entries.swap(entries_);
    std::swap(used, used_);
  }
  for (std::size_t i = used; i-- > 0;) {
    VariableSlot& slot = *entries[i].slot;
    std::lock_guard slot_lock(slot.mutex);
    if (slot.writer != run_) continue;  // another run wrote it since: its value stays
    slot.value = std::move(entries[i].saved);
    slot.writer = entries[i].writer;
  }
}

}  // namespace kiln::detail
