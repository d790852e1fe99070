#pragma once
// optim/: training. Optimizers (namespace kiln::train, like tf.train), the global step,
// learning-rate schedules, the Saver, the UPDATE_OPS guard; regularizers, constraints, losses and
// metrics (kiln::regularizers, kiln::constraints, kiln::losses, kiln::metrics).
#include "optim/adagrad.hpp"
#include "optim/adam.hpp"
#include "optim/constraints.hpp"
#include "optim/losses.hpp"
#include "optim/momentum.hpp"
#include "optim/optimizer.hpp"
#include "optim/regularizers.hpp"
#include "optim/rmsprop.hpp"
#include "optim/saver.hpp"
#include "optim/schedules.hpp"
#include "optim/sgd.hpp"
