#pragma once
// The data_format and padding attributes of the windowed and per-channel ops (Conv2D family,
// pooling, BiasAdd, FusedBatchNorm), parsed in this one place: shape functions call these at build
// time (ValueError for a bad spelling), prepared kernels once when a plan is compiled.
#include <string>

#include "framework/kernels/conv2d.hpp"  // kernels::Padding

namespace kiln::detail {

enum class DataFormat { nhwc, nchw };

/// "NHWC" or "NCHW" (TF's op spelling, case-sensitive); ValueError otherwise.
DataFormat parse_data_format(const std::string& s);
/// The channel axis of a rank-`rank` tensor: 1 for NCHW, the last for NHWC.
inline int channel_axis(DataFormat f, int rank) { return f == DataFormat::nchw ? 1 : rank - 1; }

/// "SAME" or "VALID" (TF's op spelling, case-sensitive); ValueError otherwise.
kernels::Padding parse_padding(const std::string& s);

}  // namespace kiln::detail
