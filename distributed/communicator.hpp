#pragma once
// The process group of data-parallel training: one process per replica, started by `mpirun`.
// This header and communicator.cpp are kiln's only seam to MPI (Open MPI, an optional meson
// dependency): nothing else includes <mpi.h>.
//
//   int main() {
//     kiln::distributed::init();                        // MPI_Init_thread; a no-op without MPI
//     if (kiln::distributed::rank() == 0) std::cout ...;   // logs and checkpoints on rank 0 only
//     ...
//   }                                                   // finalized at exit
//
// Without MPI (kiln built without it), before init(), or under a plain launch without mpirun, the
// group has one process: rank() 0, size() 1, and every collective is a copy.
//
// Collectives (the kernels of the ops in collective_ops.hpp) are nonblocking MPI calls polled
// against a deadline, collective_timeout() (default 300 s, the environment variable
// KILN_COLLECTIVE_TIMEOUT in seconds, or set_collective_timeout()). When a peer does not reach the
// same collective in time (it failed, e.g. on a bad feed, or runs another graph), the call throws
// CollectiveTimeoutError naming this rank, the op and the timeout; the group is then unusable:
// later collectives throw FailedPreconditionError at once, and finalize() aborts the whole job
// (MPI_Abort) instead of waiting for the lost peer. abort() stops every rank at once: a program that
// catches an error on one rank should call it (or let the exception terminate the process; mpirun
// then stops the others).
//
// Thread safety: init/finalize from the main thread. Collectives may be called from any thread but
// are serialized by a mutex (MPI_THREAD_SERIALIZED); every rank must issue them in the same order
// (the executor runs collective ops one at a time in plan order: see collective_ops.hpp).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/errors.hpp"
#include "framework/types.hpp"

namespace kiln::distributed {

/// A collective did not complete before the deadline: a peer failed or is elsewhere.
class CollectiveTimeoutError : public Error {
 public:
  using Error::Error;
};

/// Joins the process group (MPI_Init_thread with MPI_THREAD_SERIALIZED) unless already done;
/// registers finalize() to run at exit. Without MPI: nothing. Idempotent.
void init();
/// Leaves the group (MPI_Finalize); after a timeout, aborts the job instead. Idempotent.
void finalize();
/// Whether init() has joined an MPI group (false without MPI).
bool initialized();
/// Whether kiln was built with MPI.
bool mpi_available();
/// This process's rank in [0, size()); 0 when not initialized.
int rank();
/// The number of processes; 1 when not initialized.
int size();
/// Stops every rank of the job (MPI_Abort) after printing `message` to stderr with this rank;
/// without a group, std::exit(code).
[[noreturn]] void abort(const std::string& message, int code = 1);

void set_collective_timeout(double seconds);
double collective_timeout();

namespace detail {
// The raw collectives on contiguous buffers of `count` elements of `dtype`, identical in shape on
// every rank unless stated. `what` names the op in errors ("AllReduce 'grads/fused'"). With one
// process they leave the data as it is.
/// In-place element-wise sum over ranks (float32/float64/int32/int64).
void all_reduce_sum(void* data, std::size_t count, DType dtype, const std::string& what);
/// In-place copy of root's buffer to every rank.
void broadcast(void* data, std::size_t count, DType dtype, int root, const std::string& what);
/// Every rank's `values` (the same number on each), concatenated in rank order.
std::vector<std::int64_t> all_gather_int64(const std::vector<std::int64_t>& values, const std::string& what);
/// Concatenation in rank order of each rank's `counts[rank]` elements (counts from
/// all_gather_int64) into `out` (sum of counts elements).
void all_gather(const void* data, const std::vector<std::int64_t>& counts, void* out, DType dtype,
                const std::string& what);
}  // namespace detail

}  // namespace kiln::distributed
