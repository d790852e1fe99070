#include "framework/kernels/elementwise.hpp"

namespace kiln::kernels {

Extents broadcast_shape(const Extents& a, const Extents& b) {
  const std::size_t r = std::max(a.size(), b.size());
  Extents out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const std::size_t x = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const std::size_t y = i < r - b.size() ? 1 : b[i - (r - b.size())];
    out[i] = x == 1 ? y : x;
  }
  return out;
}

bool broadcastable(const Extents& a, const Extents& b) {
  for (std::size_t k = 0; k < std::min(a.size(), b.size()); ++k) {
    const auto x = a[a.size() - 1 - k], y = b[b.size() - 1 - k];
    if (x != y && x != 1 && y != 1) return false;
  }
  return true;
}

Extents broadcast_strides(const Extents& in, const Extents& out) {
  Extents st(out.size(), 0);
  std::size_t stride = 1;
  for (std::size_t k = 0; k < in.size(); ++k) {
    const std::size_t i = in.size() - 1 - k;
    const std::size_t o = out.size() - 1 - k;
    st[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return st;
}

BroadcastLoops broadcast_loops(const Extents& sa, const Extents& sb, const Extents& out) {
  const Extents st_a = broadcast_strides(sa, out), st_b = broadcast_strides(sb, out);
  BroadcastLoops l;
  for (std::size_t k = 0; k < out.size(); ++k) {
    if (out[k] == 1) continue;
    const std::size_t last = l.dims.size() - 1;
    // Dimension k continues the previous one when each operand's stride there is its stride
    // in k times out[k] (0 = 0 * out[k] for an operand broadcast along both).
    if (!l.dims.empty() && l.st_a[last] == st_a[k] * out[k] && l.st_b[last] == st_b[k] * out[k]) {
      l.dims[last] *= out[k], l.st_a[last] = st_a[k], l.st_b[last] = st_b[k];
    } else {
      l.dims.push_back(out[k]), l.st_a.push_back(st_a[k]), l.st_b.push_back(st_b[k]);
    }
  }
  return l;
}

}  // namespace kiln::kernels
