#include "framework/executor.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <new>

#include "framework/errors.hpp"
#include "framework/kernels/scratch.hpp"
#include "framework/memory_plan.hpp"
#include "framework/ready_heap.hpp"
#include "framework/thread_pool.hpp"

namespace kiln::detail {

std::mt19937_64& SessionResources::rng(const Node* node, std::unique_lock<std::mutex>& hold) {
  Rng* r = nullptr;
  {
    std::lock_guard lk(mutex_);
    auto& slot = rngs_[node];
    if (!slot) {
      slot = std::make_unique<Rng>();
      slot->gen.seed(node->seed ? *node->seed : std::random_device{}());
    }
    r = slot.get();
  }
  hold = std::unique_lock(r->mutex);
  return r->gen;
}

namespace {

using Clock = std::chrono::steady_clock;

// The shapes a failing op received (its static shapes where an input is not at hand).
std::string input_shapes_text(const PlanStep& s, const Array* const* inputs) {
  std::string out;
  for (std::size_t i = 0; i < s.in_slots.size(); ++i) {
    if (i) out += ", ";
    out += inputs && inputs[i] && !inputs[i]->empty() ? inputs[i]->shape().to_string()
                                                      : s.inputs[i].node->output_shapes[static_cast<std::size_t>(s.inputs[i].index)]
                                                            .to_string();
  }
  return out;
}

}  // namespace

// One run of a plan: everything that is per run. A frame serves one run at a time and is kept by
// the plan between runs (RunFramePool), with the output buffers of its last runs.
// - Planned buffers: the frame holds the memory plan (framework/memory_plan.hpp) for the shapes
//   of the feeds it last saw, and made again when they change, with its arena: one block, and a
//   view of each buffer's region waiting at its place. An output the plan placed gets that view;
//   it goes back to its place when the last reader of the value finished. Every planned output
//   finds its view waiting, unless something still holds it (an Identity of the value, read
//   later): then the output takes a buffer from the free list. Views never leave the frame: the
//   caller gets a copy of a fetched one (results).
// - Scratch: each op's kernel takes its working memory (im2col matrices, partial sums) from a
//   pool of its own (kernels/scratch.hpp), so from its second run on it finds it waiting whatever
//   ran beside it.
// - The free list: everything else (outputs of unknown shape, planned outputs whose view
//   something still holds, fetched values) takes an owned buffer of the same dtype and size
//   that went back to the free list in this run or an earlier one. Fetched values go back to it
//   once the caller lets them go (reclaim_lent). Free buffers no run has used for kIdleRuns
//   runs (another batch size; a rarer interleaving of a parallel run) are let go.
struct RunFrame {
 public:
  static constexpr std::uint64_t kIdleRuns = 32;

  RunFrame(const Plan& plan, SessionResources& res)
      : plan_(plan),
        res_(res),
        values_(static_cast<std::size_t>(plan.num_slots)),
        dead_(static_cast<std::size_t>(plan.num_slots), 0),
        fed_(static_cast<std::size_t>(plan.num_slots), 0),
        executed_(plan.steps.size(), 0),
        pending_(std::make_unique<std::atomic<int>[]>(plan.steps.size())),
        readers_(std::make_unique<std::atomic<int>[]>(static_cast<std::size_t>(plan.num_slots))),
        scratch_(std::make_unique<kernels::ScratchPool[]>(plan.steps.size())),
        heaps_(plan.steps.size(), static_cast<std::size_t>(num_threads()) + 2) {
    lent_.reserve(2 * plan.fetch_slots.size());  // this run's fetches and the caller's previous ones
  }

  // Prepares the frame for a run (it may have served earlier ones) with these feeds.
  void start(const ExecuteOptions& options, const std::vector<std::pair<Tensor, Array>>& feeds) {
    options_ = options;
    ++run_number_;
    plan_memory_for(feeds);
    reclaim_lent();
    placed_.store(0, std::memory_order_relaxed);
    unplanned_.store(0, std::memory_order_relaxed);
    std::fill(dead_.begin(), dead_.end(), 0);
    std::fill(fed_.begin(), fed_.end(), 0);
    std::fill(executed_.begin(), executed_.end(), 0);
    for (std::size_t i = 0; i < plan_.steps.size(); ++i) pending_[i].store(plan_.steps[i].num_predecessors, std::memory_order_relaxed);
    for (std::size_t i = 0; i < values_.size(); ++i) readers_[i].store(plan_.slot_readers[i], std::memory_order_relaxed);
    completed_.store(0, std::memory_order_relaxed);
    done_.store(false, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    live_.store(0, std::memory_order_relaxed);
    peak_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    undo_.clear();
    if (options.trace) traces_.assign(plan_.steps.size(), OpTrace{});
    start_ = Clock::now();
  }

  // After the run: the values still held (fetched, fed, of failed runs) are let go (the frame
  // keeps its references to lent ones, see results); buffers that sat unused through the last
  // kIdleRuns runs are freed.
  void finish() {
    for (Array& v : values_) v = Array();
    std::lock_guard lk(free_mutex_);
    for (std::size_t i = 0; i < free_.size();) {
      if (free_[i].last_used + kIdleRuns <= run_number_) {
        free_[i] = std::move(free_.back());
        free_.pop_back();
      } else {
        ++i;
      }
    }
  }

  // Fed values belong to the caller: they do not count as values the run holds.
  void feed(int slot, const Array& value) {
    values_[static_cast<std::size_t>(slot)] = value;
    fed_[static_cast<std::size_t>(slot)] = 1;
  }

  void run() {
    if (plan_.steps.empty()) return;
    if (options_.sequential) {
      for (std::size_t i = 0; i < plan_.steps.size(); ++i) run_step(static_cast<int>(i));
      return;
    }
    parallel_ = num_threads() > 1;
    chains_.store(1, std::memory_order_relaxed);  // the caller's
    // Roots (constants, fed placeholders, variables) are cheap: the caller walks them in plan
    // order.
    run_from(plan_.initial_ready.data(), plan_.initial_ready.data() + plan_.initial_ready.size());
    pool_help_until([this] { return done_.load(std::memory_order_acquire); });
  }

  std::vector<Array> results() {
    if (error_) std::rethrow_exception(error_);
    std::vector<Array> out;
    out.reserve(plan_.fetch_slots.size());
    for (std::size_t i = 0; i < plan_.fetch_slots.size(); ++i) {
      const int sl = plan_.fetch_slots[i];
      if (sl < 0) {
        out.emplace_back();
      } else if (plan_.fetch_variable_slots[i]) {
        out.push_back(VariableStore::read(*plan_.fetch_variable_slots[i]));
      } else if (dead_[static_cast<std::size_t>(sl)]) {
        throw InvalidArgumentError("Fetch '" + fetch_name(sl) +
                                   "' has no value: it belongs to a cond branch that was not taken");
      } else {
        // Lent (reclaim_lent): from a plan's second run on (a one-off run keeps nothing once the
        // caller lets go), a value no one but the run holds, so a buffer of its own, not one
        // passed through such as a variable's (whose next in-place update would then copy).
        const auto k = static_cast<std::size_t>(sl);
        if (values_[k].is_view()) {  // a planned value passed through (Identity): the caller's copy
          Array copy;
          copy_into(copy, values_[k]);
          out.push_back(std::move(copy));
          continue;
        }
        if (run_number_ >= 2 && !fed_[k] && values_[k].unique()) lent_.push_back({run_number_, values_[k]});
        out.push_back(values_[k]);
      }
    }
    return out;
  }

  void roll_back() { undo_.roll_back(); }

  // The buffer of output `output` of step `s` (RunState::take_buffer): its planned one, else one
  // from the free list, else an empty Array.
  Array take_buffer(const PlanStep& s, int output, DType dtype, std::size_t elements) {
    const int b = mem_->slot_buffer[static_cast<std::size_t>(s.out_base + output)];
    std::lock_guard lk(free_mutex_);
    if (b >= 0 && mem_->buffers[static_cast<std::size_t>(b)].dtype == dtype &&
        mem_->buffers[static_cast<std::size_t>(b)].elements == elements) {
      Array& home = homes_[static_cast<std::size_t>(b)];
      if (!home.empty()) {
        placed_.fetch_add(1, std::memory_order_relaxed);
        return std::move(home);
      }
    }
    unplanned_.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = free_.size(); i-- > 0;) {  // the latest released first: warm in cache
      if (free_[i].dtype != dtype || free_[i].elements != elements) continue;
      Array a = std::move(free_[i].buffer);
      free_[i] = std::move(free_.back());
      free_.pop_back();
      return a;
    }
    return Array();
  }

  void fill_record(RunRecord& record, RunMetadata* metadata) const {
    record.executed.clear();
    for (std::size_t i = 0; i < plan_.steps.size(); ++i)
      if (executed_[i]) record.executed.push_back(plan_.steps[i].node);
    record.peak_values = static_cast<std::size_t>(peak_.load());
    record.memory = {mem_->planned_bytes, mem_->unshared_bytes, static_cast<std::size_t>(placed_.load()),
                     static_cast<std::size_t>(unplanned_.load())};
    if (!metadata || !options_.trace) return;
    metadata->step_stats.clear();
    for (std::size_t i = 0; i < plan_.steps.size(); ++i)
      if (executed_[i] && !plan_.steps[i].is_variable) metadata->step_stats.push_back(traces_[i]);
  }

 private:
  // The RunState a kernel sees: the variables behind this step's ref inputs, the session's rngs.
  class StepState : public RunState {
   public:
    StepState(const PlanStep& s, SessionResources& res, RunFrame& frame, const Array* const* before)
        : s_(s), res_(res), frame_(frame), before_(before) {}
    Array& variable_storage(const Node* v) override { return s_.writes[write(v)]->value; }
    const Array& variable_before(const Node* v) override { return *before_[write(v)]; }
    std::mt19937_64& rng(const Node* node, std::unique_lock<std::mutex>& hold) override { return res_.rng(node, hold); }
    Array take_buffer(int output, DType dtype, std::size_t elements) override {
      return frame_.take_buffer(s_, output, dtype, elements);
    }

   private:
    std::size_t write(const Node* v) const {
      for (std::size_t w = 0; w < s_.writes.size(); ++w)
        if (s_.writes[w]->node == v) return w;
      throw InternalError("'" + s_.node->name + "' touched variable " + v->name + " that is not its ref input");
    }
    const PlanStep& s_;
    SessionResources& res_;
    RunFrame& frame_;
    const Array* const* before_;  // per write: the value before this step (UndoLog::record)
  };

  // Keeps a value's buffer for reuse when no one else holds it (a fed value is the caller's; an
  // Identity's output shares its input's buffer until one of them is let go): back to its place
  // in the memory plan, or to the free list. The last holder keeps it: whether v is the last is
  // decided under the lock, as is letting go of a shared one, so that of two values sharing a
  // buffer let go at once on two threads, one sees the other's reference gone. (Checked before
  // the lock, each could see the other's and let go: the buffer was freed, and its planned
  // readers found no buffer at home in every later run, allocating once.)
  void recycle(Array& v) {
    if (v.empty()) return;
    std::lock_guard lk(free_mutex_);
    if (!v.unique()) {
      v = Array();
      return;
    }
    const DType t = v.dtype();
    const auto n = static_cast<std::size_t>(v.size());
    // A view goes back to its region's place (a view of an earlier plan's arena, which it keeps
    // alive, has an address outside this one: it finds none); the free list holds owned buffers
    // only, so that an unplanned output (a fetched one) never gets arena memory.
    if (v.is_view()) {
      const auto home = home_of_.find(v.data());
      if (home != home_of_.end()) {
        const auto b = static_cast<std::size_t>(home->second);
        if (homes_[b].empty() && mem_->buffers[b].dtype == t && mem_->buffers[b].elements == n)
          homes_[b] = std::move(v);
      }
      v = Array();
      return;
    }
    free_.push_back({t, n, run_number_, std::move(v)});
    v = Array();
  }

  // A fetched value is the caller's until they let it go; its buffer then serves later runs, so
  // a loop that fetches a large result (a gradient, a batch of logits) and drops it, or replaces
  // it with the next run's, allocates nothing: the frame keeps a reference to fetched buffers
  // (results) and, at the start of each run, returns those no one else holds to the free list.
  // References still shared after kIdleRuns runs are dropped (the caller keeps the value).
  void reclaim_lent() {
    for (std::size_t i = 0; i < lent_.size();) {
      Lent& l = lent_[i];
      if (l.buffer.unique() || l.run + kIdleRuns <= run_number_) {
        recycle(l.buffer);
        l = std::move(lent_.back());
        lent_.pop_back();
      } else {
        ++i;
      }
    }
  }

  // Makes the memory plan for the feeds' shapes, and its arena, unless the frame has them already.
  // The previous arena goes when the last view of it does.
  void plan_memory_for(const std::vector<std::pair<Tensor, Array>>& feeds) {
    bool same = mem_ != nullptr && mem_feed_shapes_.size() == feeds.size();
    for (std::size_t i = 0; same && i < feeds.size(); ++i) same = feeds[i].second.fits(mem_feed_shapes_[i]);
    if (same) return;
    std::vector<Shape> shapes;
    for (const auto& f : feeds) shapes.push_back(f.second.shape());
    auto mem = std::make_unique<MemoryPlan>(plan_memory(plan_, shapes));
    // The new arena and a view of each region, at home.
    std::shared_ptr<std::byte> arena;
    if (mem->arena_bytes > 0) {
      constexpr std::align_val_t align{MemoryPlan::kAlignment};
      arena.reset(static_cast<std::byte*>(::operator new(mem->arena_bytes, align)),
                  [](std::byte* p) { ::operator delete(p, align); });
    }
    std::vector<Array> homes;
    homes.reserve(mem->buffers.size());
    for (const auto& buf : mem->buffers)
      homes.push_back(arena_array(arena, buf.offset, buf.dtype, buf.elements));
    std::lock_guard lk(free_mutex_);
    mem_ = std::move(mem);
    mem_feed_shapes_ = std::move(shapes);
    homes_ = std::move(homes);
    home_of_.clear();
    for (std::size_t b = 0; b < homes_.size(); ++b)
      home_of_.emplace(homes_[b].data(), static_cast<int>(b));
  }

  std::string fetch_name(int slot) const {
    for (const PlanStep& s : plan_.steps)
      if (slot >= s.out_base && slot < s.out_base + s.num_outputs)
        return s.node->name + ":" + std::to_string(slot - s.out_base);
    return "?";
  }

  static void task(void* frame, std::int64_t step) { static_cast<RunFrame*>(frame)->run_from(static_cast<int>(step)); }
  void post(int step) { pool_post({&RunFrame::task, this, step}); }

  // Whether a ready op is worth a hop to another thread: its largest input holds many elements.
  // Cheap ops run on the thread that made them ready, lowest plan index first, so a run of cheap
  // ops executes in plan order and keeps few values alive.
  //
  // A hop moves the op's data between cores, and data shared between cores is slow: on the
  // 2-vCPU EPYC these benchmarks ran on (2026-12), an Adam update of a 784x100 kernel took 24 us
  // after its own core had read the kernel and 102-107 us after the other core had (each write
  // waits for the other core's copy of the line to be dropped); reads of what the other core
  // wrote ran at a third of the local speed (30 vs 90 GB/s). Below 2^17 elements (512 KB of
  // float) moving an op's inputs costs about as much as the op; at 2^15 the MLP's first product
  // and its kernel's update hopped, and its two-thread step took 0.41 ms against 0.29 ms at one
  // thread (0.28 ms with this bound and gemm's kParallelWork; the CNN step and the epoch did not
  // change).
  bool worth_a_thread(const PlanStep& s) const {
    constexpr std::int64_t kElements = 1 << 17;
    for (std::size_t i = 0; i < s.in_slots.size(); ++i) {
      const int sl = s.in_slots[i];
      if (sl >= 0) {  // by reference: a copy would touch the buffer's shared count
        const Array& v = values_[static_cast<std::size_t>(sl)];
        if (!v.empty() && v.size() >= kElements) return true;
      } else if (s.var_reads[i] && s.inputs[i].node->output_shapes[0].num_elements() >= kElements) {
        return true;
      }
    }
    return false;
  }

  // Runs `first` and every op it makes ready that is not worth a thread of its own (those are
  // posted to the pool), in plan order.
  //
  // Lifetime: once the last step is counted, the caller of run() may return and the frame be
  // reused or destroyed (with its plan). So a thread touches the frame only while a step it has
  // not counted yet is in its hands: its heap goes back to the frame's pool, and the step total
  // is read, before it counts the step it just ran; after the count it reads the frame again
  // only if its heap still holds steps (which cannot have been counted).
  void run_from(int first) { run_from(&first, &first + 1); }
  void run_from(const int* first, const int* last) {
    ReadyHeap ready(heaps_);
    for (const int* p = first; p != last; ++p) ready.push(*p);
    const int total = static_cast<int>(plan_.steps.size());
    while (!ready.empty()) {
      const int step = ready.pop();
      run_step(step);
      for (int succ : plan_.steps[static_cast<std::size_t>(step)].successors) {
        if (pending_[static_cast<std::size_t>(succ)].fetch_sub(1, std::memory_order_acq_rel) != 1) continue;
        if (parallel_ && worth_a_thread(plan_.steps[static_cast<std::size_t>(succ)]) &&
            take_chain()) {
          post(succ);
        } else {
          ready.push(succ);
        }
      }
      const bool last_here = ready.empty();
      if (last_here) {
        ready.give_back();
        if (options_.max_parallel_ops > 0)
          chains_.fetch_sub(1, std::memory_order_relaxed);  // see take_chain
      }
      if (completed_.fetch_add(1, std::memory_order_acq_rel) + 1 == total) {
        done_.store(true, std::memory_order_release);
        pool_wake_all();  // the pool's, not the frame's
      }
      if (last_here) return;
    }
  }

  // A posted op starts a chain of ops on another thread (run_from); with a limit on the ops that
  // run at once (SessionOptions::inter_op_parallelism_threads), one chain per op at most.
  bool take_chain() {
    const int limit = options_.max_parallel_ops;
    if (limit <= 0) return true;
    if (chains_.fetch_add(1, std::memory_order_relaxed) < limit) return true;
    chains_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }

  void note_live(int delta) {
    const auto now = live_.fetch_add(delta, std::memory_order_relaxed) + delta;
    auto peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }

  void release(int slot) {
    if (readers_[static_cast<std::size_t>(slot)].fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    Array& v = values_[static_cast<std::size_t>(slot)];
    if (!v.empty()) note_live(-1);
    if (fed_[static_cast<std::size_t>(slot)])
      v = Array();
    else
      recycle(v);
  }

  void run_step(int index) {
    const PlanStep& s = plan_.steps[static_cast<std::size_t>(index)];
    if (s.cut) return;
    if (s.is_variable) {
      executed_[static_cast<std::size_t>(index)] = 1;
      return;
    }
    if (!failed_.load(std::memory_order_acquire)) {
      if (is_dead(s, dead_)) {
        for (int k = 0; k < s.num_outputs; ++k) dead_[static_cast<std::size_t>(s.out_base + k)] = 1;
      } else {
        compute(index, s);
      }
    }
    for (int sl : s.in_slots)
      if (sl >= 0) release(sl);
  }

  void compute(int index, const PlanStep& s) {
    const std::size_t n_in = s.in_slots.size();
    const std::size_t n_out = s.node->output_dtypes.size();
    SmallBuffer<const Array*, 16> inputs(n_in);
    SmallBuffer<Array*, 16> donors(n_in);
    SmallBuffer<Array, 16> snapshots(n_in);
    SmallBuffer<Array, 8> outputs(n_out);
    OpTrace* trace = options_.trace ? &traces_[static_cast<std::size_t>(index)] : nullptr;
    const bool planned_out = n_out > 0 && mem_->slot_buffer[static_cast<std::size_t>(s.out_base)] >= 0;
    try {
      for (std::size_t i = 0; i < n_in; ++i) {
        const int sl = s.in_slots[i];
        if (sl >= 0) {
          const auto k = static_cast<std::size_t>(sl);
          inputs[i] = dead_[k] ? nullptr : &values_[k];
          // Its buffer may become an output when this op is its last reader (the count includes
          // every read of this op: Mul(x, x) reads twice) and no one else holds it; when the memory
          // plan placed output 0, only the input whose buffer it planned for output 0.
          // An unplanned output (fetched, say) takes no view of the arena.
          if (!dead_[k] && !fed_[k] && readers_[k].load(std::memory_order_acquire) == 1 &&
              values_[k].unique() &&
              (planned_out ? mem_->donor[static_cast<std::size_t>(index)] == static_cast<int>(i)
                           : !values_[k].is_view()))
            donors[i] = &values_[k];
        } else if (s.var_reads[i]) {
          snapshots[i] = VariableStore::read(*s.var_reads[i]);
          inputs[i] = &snapshots[i];
        } else {
          inputs[i] = nullptr;  // a ref input: the kernel reaches the storage through variable_ref
        }
      }
      SmallBuffer<std::unique_lock<std::mutex>, 4> locks(s.writes.size());
      SmallBuffer<const Array*, 4> before(s.writes.size());
      for (std::size_t w = 0; w < s.writes.size(); ++w) {
        locks[w] = std::unique_lock(s.writes[w]->mutex);
        before[w] = &undo_.record(*s.writes[w]);
      }
      if (trace) trace->start_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count();
      StepState state(s, res_, *this, before.data());
      KernelContext ctx(*s.node, state, inputs.data(), static_cast<int>(n_in), outputs.data(), donors.data());
      const kernels::ScratchScope scratch(&scratch_[static_cast<std::size_t>(index)]);
      s.kernel->compute(ctx);
      for (std::size_t i = 0; i < n_in; ++i)
        if (donors[i] && donors[i]->empty()) note_live(-1);  // became an output: counted there
      if (trace) trace->end_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count();
    } catch (...) {
      // Every error leaves with the op's context: kiln's as their own type; running out of memory
      // as ResourceExhaustedError; any other exception (a kernel's bug) as InternalError.
      const auto context = [&] {
        return " [[node '" + s.node->name + "' (op: '" + s.def->type +
               "') with input shapes: " + input_shapes_text(s, inputs.data()) + "]]";
      };
      try {
        try {
          throw;
        } catch (const Error&) {
          rethrow_with_context(context());
        } catch (const std::bad_alloc& e) {
          throw ResourceExhaustedError(std::string("OOM when allocating a buffer (") + e.what() +
                                       ")" + context());
        } catch (const std::exception& e) {
          throw InternalError(std::string("unexpected exception: ") + e.what() + context());
        }
      } catch (...) {
        fail(std::current_exception());
      }
      return;
    }
    executed_[static_cast<std::size_t>(index)] = 1;
    if (trace) {
      trace->name = s.node->name;
      trace->type = s.def->type;
      trace->thread = pool_thread_index();
    }
    for (std::size_t k = 0; k < n_out; ++k) {
      const auto slot = static_cast<std::size_t>(s.out_base) + k;
      Array& out = outputs[k];
      if (out.empty()) {
        dead_[slot] = 1;  // an output left unset (Switch's untaken one)
        continue;
      }
      if (trace) {
        trace->output_shapes.push_back(out.shape());
        trace->bytes += out.size() * static_cast<std::int64_t>(visit_dtype(out.dtype(), []<class T>() { return sizeof(T); }));
      }
      if (fed_[slot] || plan_.slot_readers[slot] == 0) {  // a fed value wins; nobody reads it
        recycle(out);
        continue;
      }
      values_[slot] = std::move(out);
      note_live(+1);
    }
  }

  void fail(std::exception_ptr e) {
    std::lock_guard lk(error_mutex_);
    if (!error_) error_ = std::move(e);
    failed_.store(true, std::memory_order_release);
  }

  const Plan& plan_;
  SessionResources& res_;
  ExecuteOptions options_;
  std::vector<Array> values_;
  std::vector<char> dead_, fed_, executed_;
  std::unique_ptr<std::atomic<int>[]> pending_, readers_;
  // Per step: the scratch buffers its kernel takes (kernels/scratch.hpp).
  std::unique_ptr<kernels::ScratchPool[]> scratch_;
  HeapPool heaps_;
  bool parallel_ = false;
  std::atomic<int> chains_{0};  // with a limit: run_from calls running or posted
  std::atomic<int> completed_{0};
  std::atomic<bool> done_{false}, failed_{false};
  std::atomic<long> live_{0}, peak_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
  UndoLog undo_;
  std::vector<OpTrace> traces_;
  Clock::time_point start_;

  struct FreeBuffer {
    DType dtype;
    std::size_t elements;
    std::uint64_t last_used;  // the run that released it
    Array buffer;
  };
  std::mutex free_mutex_;  // guards the free list and the planned buffers
  std::vector<FreeBuffer> free_;
  struct Lent {
    std::uint64_t run;  // the run that fetched it
    Array buffer;
  };
  std::vector<Lent> lent_;  // fetched values, while the caller may hold them (reclaim_lent)
  std::uint64_t run_number_ = 0;

  std::unique_ptr<MemoryPlan> mem_;
  std::vector<Shape> mem_feed_shapes_;  // the feeds' shapes mem_ was made for
  std::vector<Array> homes_;  // per planned buffer: its view of the arena while no value holds it
  std::unordered_map<const void*, int> home_of_;  // a planned buffer's data: its index
  std::atomic<int> placed_{0}, unplanned_{0};
};

void RunFrameDeleter::operator()(RunFrame* frame) const { delete frame; }

namespace {

// Takes an idle frame of the plan (or makes one) and gives it back when the run is over.
class FrameLease {
 public:
  FrameLease(const Plan& plan, SessionResources& res) : pool_(*plan.frames) {
    {
      std::lock_guard lk(pool_.mutex);
      if (!pool_.idle.empty()) {
        frame_ = std::move(pool_.idle.back());
        pool_.idle.pop_back();
      }
    }
    if (!frame_) frame_.reset(new RunFrame(plan, res));
  }
  ~FrameLease() {
    frame_->finish();
    std::lock_guard lk(pool_.mutex);
    pool_.idle.push_back(std::move(frame_));
  }
  FrameLease(const FrameLease&) = delete;
  FrameLease& operator=(const FrameLease&) = delete;
  RunFrame& operator*() { return *frame_; }
  RunFrame* operator->() { return frame_.get(); }

 private:
  RunFramePool& pool_;
  std::unique_ptr<RunFrame, RunFrameDeleter> frame_;
};

}  // namespace

std::vector<Array> execute(const Plan& plan, const std::vector<std::pair<Tensor, Array>>& feeds,
                           SessionResources& resources, const ExecuteOptions& options, RunRecord& record,
                           RunMetadata* metadata) {
  FrameLease frame(plan, resources);
  frame->start(options, feeds);
  for (std::size_t i = 0; i < feeds.size(); ++i)
    if (plan.feed_slots[i] >= 0) frame->feed(plan.feed_slots[i], feeds[i].second);
  frame->run();
  frame->fill_record(record, metadata);
  try {
    return frame->results();
  } catch (...) {
    frame->roll_back();
    throw;
  }
}

}  // namespace kiln::detail
