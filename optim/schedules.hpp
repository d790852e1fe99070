#pragma once
// Learning-rate schedules (TF1's tf.train.exponential_decay, tf.train.piecewise_constant): tensors
// computed from the global step, to pass as an optimizer's learning rate.
//
//   Variable step = train::get_or_create_global_step();
//   Tensor lr = train::exponential_decay(0.1, step, 1000, 0.96, /*staircase=*/true);
//   Operation train_op = train::GradientDescentOptimizer(lr).minimize(loss, {.global_step = step});
//
// The value read in a run is the one of the step before that run's increment (the optimizer
// increments the global step after every update).
#include <string>
#include <vector>

#include "framework/graph.hpp"
#include "optim/optimizer.hpp"

namespace kiln::train {

/// learning_rate * decay_rate ^ (global_step / decay_steps), with the exponent floored when
/// `staircase`. The result has the dtype of a tensor learning rate, else float32; the global step
/// (any numeric dtype) is cast to it. ValueError for a null global step or decay_steps <= 0.
Tensor exponential_decay(const Hyper& learning_rate, const Tensor& global_step, double decay_steps,
                         double decay_rate, bool staircase = false, const std::string& name = "ExponentialDecay");

/// values[0] while x <= boundaries[0], values[i] while boundaries[i-1] < x <= boundaries[i],
/// values.back() when x > boundaries.back(). `x` is a scalar (the global step, any numeric dtype);
/// the result is a scalar of `dtype`. ValueError unless values.size() == boundaries.size() + 1, or
/// for boundaries that are not increasing.
Tensor piecewise_constant(const Tensor& x, const std::vector<double>& boundaries, const std::vector<double>& values,
                          DType dtype = float32, const std::string& name = "PiecewiseConstant");

}  // namespace kiln::train
