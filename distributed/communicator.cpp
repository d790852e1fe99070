// The MPI seam. Every collective is a nonblocking MPI call (MPI_Iallreduce, MPI_Ibcast,
// MPI_Iallgather(v)) completed by polling MPI_Test against a deadline: a blocking call would hang
// forever when a peer never arrives. Polling spins briefly, then sleeps 50 us between tests so that a
// waiting rank leaves the cores to the ranks still computing (2 ranks on 2 cores).
#include "distributed/communicator.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#ifdef KILN_HAVE_MPI
// The C API only: the deprecated C++ bindings do not compile warning-free.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace kiln::distributed {

namespace {

struct State {
  std::mutex mutex;  // MPI_THREAD_SERIALIZED: one MPI call at a time
  bool initialized = false;
  bool we_initialized = false;
  bool finalized = false;
  std::string broken;  // the timeout that made the group unusable
  int rank = 0;
  int size = 1;
  double timeout = 300.0;
};

State& state() {
  static State s;
  return s;
}

std::string rank_text() {
  return "rank " + std::to_string(state().rank) + " of " + std::to_string(state().size);
}

// True when there is a group of more than one process to talk to; throws when it is broken.
bool active(const std::string& what) {
  State& s = state();
  if (!s.initialized || s.size == 1) return false;
  if (!s.broken.empty())
    throw FailedPreconditionError(what + " on " + rank_text() + ": the process group is unusable after an earlier "
                                  "collective timed out (" + s.broken + ")");
  return true;
}

#ifdef KILN_HAVE_MPI
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::float32: return MPI_FLOAT;
    case DType::float64: return MPI_DOUBLE;
    case DType::int32: return MPI_INT32_T;
    case DType::int64: return MPI_INT64_T;
    case DType::boolean: break;
  }
  throw TypeError(std::string("collectives do not support dtype ") + dtype_name(t));
}

void check(int code, const char* call, const std::string& what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw InternalError(what + " on " + rank_text() + ": " + call + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

// Completes `request` or throws CollectiveTimeoutError after the deadline (the group is then
// marked broken: the request can neither be cancelled nor completed).
void wait(MPI_Request& request, const std::string& what) {
  State& s = state();
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(s.timeout);
  for (long polls = 0;; ++polls) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test", what);
    if (done) return;
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) {
      s.broken = what + " timed out on " + rank_text();
      std::ostringstream after;
      after << s.timeout;
      throw CollectiveTimeoutError(what + " on " + rank_text() + " timed out after " + after.str() +
                                   " s: another rank failed before reaching it or runs a different graph (every rank "
                                   "must run the same collectives in the same order)");
    }
    if (now - start < std::chrono::microseconds(200)) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}
#endif

}  // namespace

void init() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.initialized) return;
  if (const char* t = std::getenv("KILN_COLLECTIVE_TIMEOUT")) {
    const double v = std::atof(t);
    if (v > 0) s.timeout = v;
  }
#ifdef KILN_HAVE_MPI
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread", "init");
    s.we_initialized = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &s.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s.size);
  s.initialized = true;
  std::atexit([] { finalize(); });
#endif
}

void finalize() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.initialized || s.finalized) return;
  s.finalized = true;
#ifdef KILN_HAVE_MPI
  if (!s.broken.empty()) {
    std::cerr << "kiln::distributed: " << rank_text() << " aborts the job: " << s.broken << std::endl;
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int done = 0;
  MPI_Finalized(&done);
  if (s.we_initialized && !done) MPI_Finalize();
#endif
}

bool initialized() { return state().initialized; }

bool mpi_available() {
#ifdef KILN_HAVE_MPI
  return true;
#else
  return false;
#endif
}

int rank() { return state().rank; }
int size() { return state().size; }

void abort(const std::string& message, int code) {
  std::cerr << "kiln::distributed: " << rank_text() << ": " << message << std::endl;
#ifdef KILN_HAVE_MPI
  if (state().initialized) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

void set_collective_timeout(double seconds) {
  if (!(seconds > 0)) throw ValueError("collective timeout must be > 0 seconds, got " + std::to_string(seconds));
  state().timeout = seconds;
}

double collective_timeout() { return state().timeout; }

namespace detail {

void all_reduce_sum(void* data, std::size_t count, DType dtype, const std::string& what) {
  std::lock_guard<std::mutex> lock(state().mutex);
  if (!active(what)) return;
#ifdef KILN_HAVE_MPI
  MPI_Request request;
  check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), mpi_type(dtype), MPI_SUM, MPI_COMM_WORLD, &request),
        "MPI_Iallreduce", what);
  wait(request, what);
#else
  (void)data, (void)count, (void)dtype;
#endif
}

void broadcast(void* data, std::size_t count, DType dtype, int root, const std::string& what) {
  std::lock_guard<std::mutex> lock(state().mutex);
  if (root < 0 || root >= size())
    throw InvalidArgumentError(what + ": root " + std::to_string(root) + " is not a rank of a group of " +
                               std::to_string(size()));
  if (!active(what)) return;
#ifdef KILN_HAVE_MPI
  MPI_Request request;
  check(MPI_Ibcast(data, static_cast<int>(count), mpi_type(dtype), root, MPI_COMM_WORLD, &request), "MPI_Ibcast", what);
  wait(request, what);
#else
  (void)data, (void)count, (void)dtype;
#endif
}

std::vector<std::int64_t> all_gather_int64(const std::vector<std::int64_t>& values, const std::string& what) {
  std::lock_guard<std::mutex> lock(state().mutex);
  if (!active(what)) return values;
  std::vector<std::int64_t> out(values.size() * static_cast<std::size_t>(size()));
#ifdef KILN_HAVE_MPI
  MPI_Request request;
  const int n = static_cast<int>(values.size());
  check(MPI_Iallgather(values.data(), n, MPI_INT64_T, out.data(), n, MPI_INT64_T, MPI_COMM_WORLD, &request),
        "MPI_Iallgather", what);
  wait(request, what);
#endif
  return out;
}

void all_gather(const void* data, const std::vector<std::int64_t>& counts, void* out, DType dtype,
                const std::string& what) {
  std::lock_guard<std::mutex> lock(state().mutex);
  if (!active(what)) {
    std::size_t bytes = 0;
    visit_dtype(dtype, [&]<class T>() { bytes = sizeof(T); });
    if (!counts.empty() && counts[0] > 0) std::memcpy(out, data, static_cast<std::size_t>(counts[0]) * bytes);
    return;
  }
#ifdef KILN_HAVE_MPI
  std::vector<int> recv(counts.size()), displs(counts.size());
  int offset = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    recv[r] = static_cast<int>(counts[r]);
    displs[r] = offset;
    offset += recv[r];
  }
  MPI_Request request;
  check(MPI_Iallgatherv(data, recv[static_cast<std::size_t>(rank())], mpi_type(dtype), out, recv.data(), displs.data(),
                        mpi_type(dtype), MPI_COMM_WORLD, &request),
        "MPI_Iallgatherv", what);
  wait(request, what);
#endif
}

}  // namespace detail

}  // namespace kiln::distributed
