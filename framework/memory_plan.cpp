#include "framework/memory_plan.hpp"

#include <algorithm>
#include <any>
#include <cstdint>
#include <string>

namespace kiln::detail {

namespace {

// The steps every step depends on, directly or not: one bit per step (row i: the ancestors of
// step i). Plan order is topological, so each row is the union of its predecessors' rows.
class Ancestors {
 public:
  explicit Ancestors(const Plan& plan)
      : words_((plan.steps.size() + 63) / 64), bits_(plan.steps.size() * words_, 0) {
    for (std::size_t i = 0; i < plan.steps.size(); ++i)
      for (int succ : plan.steps[i].successors) {
        std::uint64_t* to = row(static_cast<std::size_t>(succ));
        const std::uint64_t* from = row(i);
        for (std::size_t w = 0; w < words_; ++w) to[w] |= from[w];
        to[i / 64] |= std::uint64_t{1} << (i % 64);
      }
  }
  bool is_ancestor(int a, int of) const {
    const auto i = static_cast<std::size_t>(a);
    return (row(static_cast<std::size_t>(of))[i / 64] >> (i % 64)) & 1U;
  }

 private:
  std::uint64_t* row(std::size_t i) { return bits_.data() + i * words_; }
  const std::uint64_t* row(std::size_t i) const { return bits_.data() + i * words_; }
  std::size_t words_;
  std::vector<std::uint64_t> bits_;
};

// Runs a kernel on values known before the run (shape arithmetic: ReducedShape of a Shape, ...).
// It gets no variables, no generator and no executor buffers.
class PlanTimeState final : public RunState {
 public:
  Array& variable_storage(const Node* v) override { throw InternalError("'" + v->name + "' is a variable"); }
  const Array& variable_before(const Node* v) override { throw InternalError("'" + v->name + "' is a variable"); }
  std::mt19937_64& rng(const Node* node, std::unique_lock<std::mutex>&) override {
    throw InternalError("'" + node->name + "' is random");
  }
  Array take_buffer(int, DType, std::size_t) override { return Array(); }
};

constexpr int kNever = -1;  // a holder that never finishes (the caller)

// Input j of s is read for its deadness and shape only: its buffer never becomes an output.
bool reads_liveness_only(const PlanStep& s, std::size_t j) { return j < s.liveness_only.size() && s.liveness_only[j]; }

// Whether the plan may run this step's kernel before the run: integer outputs (shapes, indices)
// from small known inputs, nothing stateful or collective.
bool foldable(const PlanStep& s, const std::vector<Array>& value) {
  const OpDef& def = *s.def;
  if (s.in_slots.empty() || def.is_collective || def.is_variable || def.is_placeholder || !s.writes.empty()) return false;
  for (DType t : s.node->output_dtypes)
    if (t != int32 && t != int64) return false;
  for (int sl : s.in_slots)
    if (sl < 0 || value[static_cast<std::size_t>(sl)].empty() || value[static_cast<std::size_t>(sl)].size() > 4096)
      return false;
  return true;
}

}  // namespace

MemoryPlan plan_memory(const Plan& plan, const std::vector<Shape>& feed_shapes) {
  const auto num_slots = static_cast<std::size_t>(plan.num_slots);
  MemoryPlan mp;
  mp.slot_buffer.assign(num_slots, MemoryPlan::kDynamic);
  mp.donor.assign(plan.steps.size(), -1);
  if (plan.steps.size() > MemoryPlan::kMaxSteps) return mp;

  // Who produces and who reads each slot; which slots belong to the caller.
  std::vector<int> producer(num_slots, -1);
  std::vector<std::vector<int>> readers(num_slots);
  std::vector<char> callers(num_slots, 0);
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    const PlanStep& s = plan.steps[i];
    for (int k = 0; k < s.num_outputs; ++k) producer[static_cast<std::size_t>(s.out_base + k)] = static_cast<int>(i);
    for (int sl : s.in_slots)
      if (sl >= 0) readers[static_cast<std::size_t>(sl)].push_back(static_cast<int>(i));
  }
  for (int sl : plan.fetch_slots)
    if (sl >= 0) callers[static_cast<std::size_t>(sl)] = 1;

  // 1. Concrete shapes: the feeds', then every op's shape function on its inputs' shapes, with
  //    the values known before the run (constants, shapes of known shape, and integer arithmetic
  //    on those: a gradient's Reshape to Shape(x) gets x's shape).
  std::vector<Shape> shape(num_slots);
  std::vector<DType> dtype(num_slots, float32);
  std::vector<Array> value(num_slots);
  for (const PlanStep& s : plan.steps)
    for (std::size_t k = 0; k < s.node->output_dtypes.size(); ++k) {
      shape[static_cast<std::size_t>(s.out_base) + k] = s.node->output_shapes[k];
      dtype[static_cast<std::size_t>(s.out_base) + k] = s.node->output_dtypes[k];
    }
  for (std::size_t f = 0; f < plan.feed_slots.size(); ++f) {
    const int sl = plan.feed_slots[f];
    if (sl < 0) continue;
    shape[static_cast<std::size_t>(sl)] = feed_shapes[f];
    callers[static_cast<std::size_t>(sl)] = 1;
  }
  PlanTimeState plan_time;
  for (const PlanStep& s : plan.steps) {
    if (s.cut || s.is_variable) continue;
    const Node& node = *s.node;
    const auto out = static_cast<std::size_t>(s.out_base);
    const auto outputs = node.output_dtypes.size();
    const std::string& type = s.def->type;
    if (type == "Const") {
      if (!callers[out]) value[out] = std::any_cast<const Array&>(node.attrs);
      continue;
    }
    bool known = true;
    for (std::size_t k = 0; k < outputs; ++k) known = known && shape[out + k].is_fully_defined();
    if (!known) {
      InferenceContext ic;
      ic.attrs_ = &s.attrs->attrs;  // the fused op's shape function reads what its kernel reads
      for (std::size_t j = 0; j < s.in_slots.size(); ++j) {
        const TensorRef& in = s.inputs[j];
        const int sl = s.in_slots[j];
        const auto k = static_cast<std::size_t>(in.index), slot = static_cast<std::size_t>(sl);
        ic.add_input(in.node->output_dtypes[k], sl >= 0 ? shape[slot] : in.node->output_shapes[k],
                     sl >= 0 && !value[slot].empty() ? &value[slot] : nullptr);
      }
      try {
        const std::vector<TensorSpec> specs = s.def->shape_fn(ic);
        for (std::size_t k = 0; k < outputs && k < specs.size(); ++k)
          if (specs[k].shape.is_fully_defined()) shape[out + k] = specs[k].shape;
      } catch (...) {
        // The run will report what is wrong; its outputs stay dynamic.
      }
    }
    if (callers[out]) continue;  // fed: its value is the caller's, shape aside
    const int in0 = s.in_slots.empty() ? -1 : s.in_slots[0];
    if ((type == "Shape" || type == "Size" || type == "Rank") && in0 >= 0 && shape[static_cast<std::size_t>(in0)].is_fully_defined()) {
      const Shape& x = shape[static_cast<std::size_t>(in0)];
      if (type == "Shape") {
        xt::xarray<std::int32_t> v = xt::xarray<std::int32_t>::from_shape({static_cast<std::size_t>(x.rank())});
        for (int d = 0; d < x.rank(); ++d) v(static_cast<std::size_t>(d)) = static_cast<std::int32_t>(x[d]);
        value[out] = Array(std::move(v));
      } else {
        value[out] = Array(static_cast<std::int32_t>(type == "Size" ? x.num_elements() : x.rank()));
      }
    } else if (foldable(s, value) && s.kernel) {
      std::vector<const Array*> inputs;
      for (int sl : s.in_slots) inputs.push_back(&value[static_cast<std::size_t>(sl)]);
      std::vector<Array> results(outputs);
      try {
        KernelContext ctx(node, plan_time, inputs.data(), static_cast<int>(inputs.size()), results.data());
        s.kernel->compute(ctx);
        for (std::size_t k = 0; k < outputs; ++k) value[out + k] = std::move(results[k]);
      } catch (...) {
        // Left to the run.
      }
    }
    for (std::size_t k = 0; k < outputs; ++k)
      if (!value[out + k].empty()) shape[out + k] = value[out + k].shape();
  }

  // 2. Buffers by liveness, safe for any order of the DAG.
  const Ancestors ancestors(plan);
  std::vector<std::vector<int>> holders;   // per buffer: the steps after which it may be reused
  std::vector<std::vector<int>> physical(num_slots);  // per slot: the buffers its value may be in
  const auto bytes_of = [&](std::size_t sl) {
    return static_cast<std::size_t>(shape[sl].num_elements()) * dtype_size(dtype[sl]);
  };
  const auto planned = [&](std::size_t sl) {
    const int p = producer[sl];
    return p >= 0 && !plan.steps[static_cast<std::size_t>(p)].cut && !plan.steps[static_cast<std::size_t>(p)].is_variable &&
           !callers[sl] && shape[sl].is_fully_defined() &&
           plan.steps[static_cast<std::size_t>(p)].def->type != "Const";  // shares its attribute's buffer
  };
  const auto last_reader = [&](const std::vector<int>& slot_readers, int step) {
    return std::count(slot_readers.begin(), slot_readers.end(), step) == 1 &&
           std::all_of(slot_readers.begin(), slot_readers.end(),
                       [&](int r) { return r == step || ancestors.is_ancestor(r, step); });
  };
  const auto free_for = [&](int buffer, int step) {
    for (int r : holders[static_cast<std::size_t>(buffer)])
      if (r == kNever || !ancestors.is_ancestor(r, step)) return false;
    return true;
  };
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    const PlanStep& s = plan.steps[i];
    const int step = static_cast<int>(i);
    if (s.cut || s.is_variable) continue;
    const auto outputs = std::min<std::size_t>(static_cast<std::size_t>(s.num_outputs), s.node->output_dtypes.size());
    for (std::size_t k = 0; k < outputs; ++k) {
      const auto sl = static_cast<std::size_t>(s.out_base) + k;
      if (!planned(sl)) continue;
      const std::size_t elements = static_cast<std::size_t>(shape[sl].num_elements());
      mp.unshared_bytes += bytes_of(sl);
      int b = MemoryPlan::kDynamic;
      // In place: the first input of the output's shape and dtype, when this op reads it once and
      // its other readers all finish before this op starts (ancestors: done in any schedule, as
      // the executor sees at run time, where it hands the buffer over to the last reader). An
      // input in one planned buffer hands that buffer on; one whose buffer the plan does not
      // know for sure (a Merge's output, a value of unknown shape) may be handed on at run time:
      // the output gets a buffer of its own too, and the input's possible buffers stay held
      // until the output's readers finished.
      std::vector<int> maybe;
      if (k == 0 && s.def->forwards_input) {
        for (std::size_t j = 0; j < s.in_slots.size(); ++j) {
          const int in = s.in_slots[j];
          if (in < 0 || reads_liveness_only(s, j) || dtype[static_cast<std::size_t>(in)] != dtype[sl] || shape[static_cast<std::size_t>(in)] != shape[sl]) continue;
          if (last_reader(readers[static_cast<std::size_t>(in)], step) && !callers[static_cast<std::size_t>(in)]) {
            mp.donor[i] = static_cast<int>(j);
            if (mp.slot_buffer[static_cast<std::size_t>(in)] >= 0 && physical[static_cast<std::size_t>(in)].size() == 1)
              b = mp.slot_buffer[static_cast<std::size_t>(in)];
            else
              maybe = physical[static_cast<std::size_t>(in)];
          }
          break;  // the kernel offers its buffer to the first such input only
        }
      }
      // Of the free buffers of this dtype and size, the one let go last in plan order: most likely
      // still in cache.
      if (b < 0) {
        int released = -1;
        for (std::size_t c = 0; c < mp.buffers.size(); ++c) {
          const auto& buf = mp.buffers[c];
          if (buf.dtype != dtype[sl] || buf.elements != elements || !free_for(static_cast<int>(c), step)) continue;
          const auto& h = holders[c];
          const int last = *std::max_element(h.begin(), h.end());
          if (last > released) released = last, b = static_cast<int>(c);
        }
      }
      if (b < 0) {
        b = static_cast<int>(mp.buffers.size());
        mp.buffers.push_back({dtype[sl], elements});
        holders.emplace_back();
        mp.planned_bytes += bytes_of(sl);
      }
      mp.slot_buffer[sl] = b;
      physical[sl] = {b};
      // An unread value goes back as soon as its op finished.
      const std::vector<int> done = readers[sl].empty() ? std::vector<int>{step} : readers[sl];
      holders[static_cast<std::size_t>(b)] = done;
      for (int m : maybe) {
        if (m == b) continue;
        auto& h = holders[static_cast<std::size_t>(m)];
        h.insert(h.end(), done.begin(), done.end());
        physical[sl].push_back(m);
      }
    }
    // Outputs that may be input buffers: those buffers stay until the outputs' readers finished.
    if (!s.def->passes_inputs_through) continue;
    for (std::size_t j = 0; j < s.in_slots.size(); ++j) {
      const int in = s.in_slots[j];
      if (in < 0 || reads_liveness_only(s, j)) continue;
      for (std::size_t k = 0; k < outputs; ++k) {
        const auto sl = static_cast<std::size_t>(s.out_base) + k;
        for (int b : physical[static_cast<std::size_t>(in)]) {
          auto& h = holders[static_cast<std::size_t>(b)];
          h.insert(h.end(), readers[sl].begin(), readers[sl].end());
          if (callers[sl]) h.push_back(kNever);  // fetched: the caller keeps it
          if (std::find(physical[sl].begin(), physical[sl].end(), b) == physical[sl].end()) physical[sl].push_back(b);
        }
      }
    }
  }
  // 3. The arena: each buffer at its offset, aligned for any kernel's vector loads.
  for (auto& buf : mp.buffers) {
    buf.offset = (mp.arena_bytes + MemoryPlan::kAlignment - 1) / MemoryPlan::kAlignment *
                 MemoryPlan::kAlignment;
    mp.arena_bytes = buf.offset + buf.elements * dtype_size(buf.dtype);
  }
  return mp;
}

}  // namespace kiln::detail
