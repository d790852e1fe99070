#pragma once
// nn:: ops (TF's tf.nn). Filled by the nn ops work.
#include "framework/graph.hpp"
