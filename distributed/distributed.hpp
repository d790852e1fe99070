#pragma once
// kiln::distributed: data-parallel training on MPI (Horovod's model: one process per replica).
//   communicator.hpp          init / rank / size / abort, collective timeout (the MPI seam)
//   collective_ops.hpp        AllReduce, Broadcast, AllGather, ReduceScatter as graph ops
//   optimizer.hpp             DistributedOptimizer, broadcast_variables
//   synchronized_moments.hpp  the global batch's moments (synchronized batch normalization)
#include "distributed/collective_ops.hpp"
#include "distributed/communicator.hpp"
#include "distributed/optimizer.hpp"
#include "distributed/synchronized_moments.hpp"
