#include "framework/ops/formats.hpp"

#include "framework/errors.hpp"

namespace kiln::detail {

DataFormat parse_data_format(const std::string& s) {
  if (s == "NHWC") return DataFormat::nhwc;
  if (s == "NCHW") return DataFormat::nchw;
  throw ValueError("data_format must be \"NHWC\" or \"NCHW\", got \"" + s + "\"");
}

kernels::Padding parse_padding(const std::string& s) {
  if (s == "SAME") return kernels::Padding::same;
  if (s == "VALID") return kernels::Padding::valid;
  throw ValueError("padding must be \"SAME\" or \"VALID\", got \"" + s + "\"");
}

}  // namespace kiln::detail
