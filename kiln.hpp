#pragma once
// kiln: a define-then-run deep-learning framework with TF1 graph-mode semantics.
//
//   #include <kiln.hpp>
//   using namespace kiln;
//   Graph g; auto guard = g.as_default();
//   Tensor x = placeholder(float32, {-1, 3}, "x");
//   Variable w = get_variable("w", {3, 1});
//   Tensor y = matmul(x, w);
//   Session sess; sess.run(global_variables_initializer());
//   Array out = sess.run(y, {{x, xt::xarray<float>{{1, 2, 3}}}});
#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/graph.hpp"
#include "framework/graph_io.hpp"
#include "framework/graph_util.hpp"
#include "framework/initializers.hpp"
#include "framework/nn_batch_norm.hpp"
#include "framework/nn_conv.hpp"
#include "framework/nn_ops.hpp"
#include "framework/ops.hpp"
#include "framework/ops/training_ops.hpp"
#include "framework/session.hpp"
#include "framework/thread_pool.hpp"
#include "framework/types.hpp"
#include "framework/variable.hpp"
#include "autodiff/gradients.hpp"
#include "layers/layers.hpp"
#include "optim/optim.hpp"
#include "distributed/distributed.hpp"
