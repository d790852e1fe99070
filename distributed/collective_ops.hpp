#pragma once
// Collective ops (registered by register_collective_ops, framework/ops/register.hpp): graph ops whose kernels talk to the other ranks (communicator.hpp), run by the
// session like any op and differentiable.
//
//   Tensor g_avg = distributed::all_reduce(g, distributed::Reduction::mean);  // same on every rank
//   Tensor w0 = distributed::broadcast(w, 0);                                 // rank 0's value
//   Tensor all = distributed::all_gather(x);                                  // rows of every rank
//
// | op            | inputs -> output                                   | dtypes          | gradient                                     |
// |---------------|----------------------------------------------------|-----------------|----------------------------------------------|
// | AllReduce     | x [any shape] -> sum or mean over ranks, same shape  | float32/64      | AllReduce of dy, same reduction              |
// | Broadcast     | x -> root's x, same shape                          | float, int      | on root: AllReduce sum of dy; elsewhere 0    |
// | AllGather     | x [n_r, ...] -> [sum n_r, ...], rank order          | float, int      | ReduceScatter(dy, x)                         |
// | ReduceScatter | dy [sum n_r, ...], x [n_r, ...] -> this rank's rows | float, int      | AllGather of dy                              |
// |               | of the sum over ranks of dy                         |                 |                                              |
// | CollectiveRank| () -> this process's rank, int32 scalar             | int32           | not differentiable                           |
//
// Every rank must hold the same shapes (AllGather: the same trailing dimensions, checked: an
// InvalidArgumentError names the ranks) and run the same collectives in the same order. Ordering
// guarantee relied on: collective ops carry OpDef::is_collective; the executor runs them one at a
// time, in plan order, and the plan order is a deterministic function of the graph and the run's
// fetches and feeds (framework/graph_algorithms' topological sort). So ranks that built the same
// graph and run the same fetches issue the same sequence of collectives, whatever the thread count.
// Collectives inside an untaken cond branch are dead on every rank that feeds the same predicate.
//
// With one process (no MPI, or before distributed::init()) every collective is a copy: AllReduce
// (sum or mean) and Broadcast return x, AllGather returns x, ReduceScatter returns dy.
// Errors: TypeError for an unsupported dtype (build time); ValueError for a negative root or a
// scalar given to AllGather; at run time InvalidArgumentError for a root outside the group,
// CollectiveTimeoutError when a peer does not arrive in time.
#include <string>

#include "framework/graph.hpp"

namespace kiln::distributed {

enum class Reduction { sum, mean };

struct AllReduceAttrs {
  Reduction reduction = Reduction::sum;
};
struct BroadcastAttrs {
  int root = 0;
};

Tensor all_reduce(const Tensor& x, Reduction reduction = Reduction::sum, const std::string& name = "");
Tensor broadcast(const Tensor& x, int root = 0, const std::string& name = "");
/// Concatenation along axis 0 of every rank's x (rank >= 1), in rank order.
Tensor all_gather(const Tensor& x, const std::string& name = "");
/// The rows of this rank (as many as `like` has) of the sum over ranks of dy: the adjoint of all_gather.
Tensor reduce_scatter(const Tensor& dy, const Tensor& like, const std::string& name = "");
/// This process's rank at run time.
Tensor rank_tensor(const std::string& name = "");

}  // namespace kiln::distributed
