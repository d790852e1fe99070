#pragma once
// All layers (namespace kiln::layers).
#include "layers/batch_norm_statistics.hpp"
#include "layers/batch_normalization.hpp"
#include "layers/conv.hpp"
#include "layers/core.hpp"
#include "layers/dense.hpp"
#include "layers/layer.hpp"
#include "layers/pooling.hpp"
