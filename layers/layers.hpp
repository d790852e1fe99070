#pragma once
// All layers (namespace kiln::layers).
#include "layers/layer.hpp"
