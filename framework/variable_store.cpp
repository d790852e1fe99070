#include "framework/variable_store.hpp"

#include <algorithm>

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
    throw FailedPreconditionError("Attempting to use uninitialized value " + v->name + " (variable '" +
                                  v->variable->name + "', shape " + v->output_shapes[0].to_string() + ")");
  }
  return snapshot;
}

void UndoLog::record(VariableSlot& slot) {
  std::lock_guard lk(mutex_);
  for (auto& [s, old] : entries_)
    if (s == &slot) return;
  entries_.emplace_back(&slot, slot.value);
}

void UndoLog::roll_back() {
  // record() locks the log while holding a slot: take the entries out first, so that no slot is
  // locked here while the log is (one lock order).
  std::vector<std::pair<VariableSlot*, Array>> entries;
  {
    std::lock_guard lk(mutex_);
    entries.swap(entries_);
  }
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    std::lock_guard slot_lock(it->first->mutex);
    it->first->value = it->second;
  }
}

}  // namespace kiln::detail
