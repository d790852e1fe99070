#include "framework/kernels/elementwise.hpp"

namespace kiln::kernels {

std::vector<std::size_t> broadcast_shape(const std::vector<std::size_t>& a, const std::vector<std::size_t>& b) {
  const std::size_t r = std::max(a.size(), b.size());
  std::vector<std::size_t> out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const std::size_t x = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const std::size_t y = i < r - b.size() ? 1 : b[i - (r - b.size())];
    out[i] = x == 1 ? y : x;
  }
  return out;
}

std::vector<std::size_t> broadcast_strides(const std::vector<std::size_t>& in, const std::vector<std::size_t>& out) {
  std::vector<std::size_t> st(out.size(), 0);
  std::size_t stride = 1;
  for (std::size_t k = 0; k < in.size(); ++k) {
    const std::size_t i = in.size() - 1 - k;
    const std::size_t o = out.size() - 1 - k;
    st[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return st;
}

}  // namespace kiln::kernels
