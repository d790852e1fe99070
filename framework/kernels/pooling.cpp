#include "framework/kernels/pooling.hpp"

#include <algorithm>
#include <string>

#include "framework/errors.hpp"

namespace kiln::kernels {

using i64 = std::int64_t;

Pool2DGeometry make_pool2d_geometry(Pool2DGeometry spec, Padding padding) {
  const WindowDim h = window_dim(spec.in_h, spec.window_h, spec.stride_h, 1, padding);
  const WindowDim w = window_dim(spec.in_w, spec.window_w, spec.stride_w, 1, padding);
  spec.out_h = h.out;
  spec.out_w = w.out;
  spec.pad_top = h.pad_before;
  spec.pad_left = w.pad_before;
  validate(spec);
  return spec;
}

void validate(const Pool2DGeometry& g) {
  const bool ok = g.batch >= 0 && g.in_h >= 0 && g.in_w >= 0 && g.channels >= 0 && g.out_h >= 0 &&
                  g.out_w >= 0 && g.window_h >= 1 && g.window_w >= 1 && g.stride_h >= 1 &&
                  g.stride_w >= 1 && g.pad_top >= 0 && g.pad_left >= 0;
  if (!ok) {
    throw InvalidArgumentError(
        "pool2d: invalid geometry: batch=" + std::to_string(g.batch) + " in=[" +
        std::to_string(g.in_h) + "," + std::to_string(g.in_w) + "," + std::to_string(g.channels) +
        "] out=[" + std::to_string(g.out_h) + "," + std::to_string(g.out_w) + "] window=[" +
        std::to_string(g.window_h) + "," + std::to_string(g.window_w) + "] strides=[" +
        std::to_string(g.stride_h) + "," + std::to_string(g.stride_w) + "] pads=[" +
        std::to_string(g.pad_top) + "," + std::to_string(g.pad_left) + "]");
  }
}

namespace {

// The input rows [lo, hi) of window o: [o*stride - pad, + window) clipped to [0, in).
struct Span {
  i64 lo, hi;
  i64 size() const { return hi > lo ? hi - lo : 0; }
};
Span window_span(i64 o, i64 stride, i64 pad, i64 window, i64 in) {
  const i64 start = o * stride - pad;
  return {std::max<i64>(start, 0), std::min(start + window, in)};
}

// One (image, channel) plane of a tensor in either layout: pixel p = h * width + w lives at
// base[p * step] (step = channels for NHWC, 1 for NCHW).
template <class P>
struct Plane {
  P* base;
  i64 step;
  auto& operator[](i64 p) const { return base[p * step]; }
};

// Calls f(n, c, x_plane_offset, y_plane_offset, step) for every plane.
template <class F>
void for_each_plane(const Pool2DGeometry& g, F&& f) {
  const i64 in_pixels = g.in_h * g.in_w;
  const i64 out_pixels = g.out_h * g.out_w;
  for (i64 n = 0; n < g.batch; ++n) {
    for (i64 c = 0; c < g.channels; ++c) {
      if (g.channels_first) {
        f((n * g.channels + c) * in_pixels, (n * g.channels + c) * out_pixels, i64{1});
      } else {
        f(n * in_pixels * g.channels + c, n * out_pixels * g.channels + c, g.channels);
      }
    }
  }
}

// Index (h * in_w + w) of the first strict maximum of window (hs, ws), scanning row by row; the
// same choice as max_pool_forward and TF's MaxPoolGrad. A NaN counts as the maximum (the first
// one wins), so NaN propagates. Requires a non-empty window.
template <class T>
i64 first_max(const Pool2DGeometry& g, Plane<const T> x, Span hs, Span ws) {
  i64 best = hs.lo * g.in_w + ws.lo;
  for (i64 h = hs.lo; h < hs.hi; ++h) {
    for (i64 w = ws.lo; w < ws.hi; ++w) {
      const T v = x[h * g.in_w + w], m = x[best];
      if (m < v || (v != v && m == m)) best = h * g.in_w + w;  // NOLINT: v != v is the NaN test
    }
  }
  return best;
}

}  // namespace

template <class T>
void max_pool_forward(const Pool2DGeometry& g, const T* x, T* y) {
  validate(g);
  if (!g.channels_first) {
    // NHWC: a pixel's channels are contiguous, so keep a running maximum row of `channels`
    // values per output pixel (vectorizes over c). Start from the window's first pixel and
    // replace only on strictly greater values: the first maximum wins, as in first_max().
    const i64 ch = g.channels;
    for (i64 n = 0; n < g.batch; ++n) {
      const T* xn = x + n * g.in_h * g.in_w * ch;
      T* yn = y + n * g.out_h * g.out_w * ch;
      for (i64 oh = 0; oh < g.out_h; ++oh) {
        const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
        for (i64 ow = 0; ow < g.out_w; ++ow) {
          const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
          T* yr = yn + (oh * g.out_w + ow) * ch;
          if (hs.size() == 0 || ws.size() == 0) {
            std::fill_n(yr, ch, T(0));
            continue;
          }
          std::copy_n(xn + (hs.lo * g.in_w + ws.lo) * ch, ch, yr);
          for (i64 h = hs.lo; h < hs.hi; ++h) {
            for (i64 w = ws.lo; w < ws.hi; ++w) {
              const T* xr = xn + (h * g.in_w + w) * ch;
              // A NaN replaces a number and is never replaced (x != x tests NaN).
              for (i64 c = 0; c < ch; ++c)
                yr[c] = (yr[c] < xr[c] || (xr[c] != xr[c] && yr[c] == yr[c])) ? xr[c] : yr[c];
            }
          }
        }
      }
    }
    return;
  }
  // NCHW: planes are contiguous; scan each window with first_max().
  for_each_plane(g, [&](i64 xo, i64 yo, i64 step) {
    const Plane<const T> xp{x + xo, step};
    const Plane<T> yp{y + yo, step};
    for (i64 oh = 0; oh < g.out_h; ++oh) {
      const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
      for (i64 ow = 0; ow < g.out_w; ++ow) {
        const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
        const bool empty = hs.size() == 0 || ws.size() == 0;
        yp[oh * g.out_w + ow] = empty ? T(0) : xp[first_max(g, xp, hs, ws)];
      }
    }
  });
}

template <class T>
void max_pool_backward(const Pool2DGeometry& g, const T* x, const T* y, const T* dy, T* dx) {
  validate(g);
  std::fill_n(dx, g.input_size(), T(0));
  // Routing: y[o] = x[a(o)] for the argmax a(o) chosen by the forward pass, so
  // dx[p] = sum over o with a(o) = p of dy[o]. a(o) is the first x in the window equal to y[o]
  // (the forward pass copied it exactly); when none is equal (NaN), rescan with first_max().
  for_each_plane(g, [&](i64 xo, i64 yo, i64 step) {
    const Plane<const T> xp{x + xo, step};
    const Plane<const T> yp{y + yo, step};
    const Plane<const T> dyp{dy + yo, step};
    const Plane<T> dxp{dx + xo, step};
    for (i64 oh = 0; oh < g.out_h; ++oh) {
      const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
      if (hs.size() == 0) continue;
      for (i64 ow = 0; ow < g.out_w; ++ow) {
        const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
        if (ws.size() == 0) continue;
        const i64 o = oh * g.out_w + ow;
        const T target = yp[o];
        i64 arg = -1;
        for (i64 h = hs.lo; h < hs.hi && arg < 0; ++h) {
          for (i64 w = ws.lo; w < ws.hi; ++w) {
            if (xp[h * g.in_w + w] == target) {
              arg = h * g.in_w + w;
              break;
            }
          }
        }
        if (arg < 0) arg = first_max(g, xp, hs, ws);
        dxp[arg] += dyp[o];
      }
    }
  });
}

template <class T>
void avg_pool_forward(const Pool2DGeometry& g, const T* x, T* y) {
  validate(g);
  if (!g.channels_first) {
    // NHWC: sum the window's pixels as rows of `channels` values, then divide by the number of
    // input pixels in the clipped window (padding does not count).
    const i64 ch = g.channels;
    for (i64 n = 0; n < g.batch; ++n) {
      const T* xn = x + n * g.in_h * g.in_w * ch;
      T* yn = y + n * g.out_h * g.out_w * ch;
      for (i64 oh = 0; oh < g.out_h; ++oh) {
        const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
        for (i64 ow = 0; ow < g.out_w; ++ow) {
          const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
          T* yr = yn + (oh * g.out_w + ow) * ch;
          std::fill_n(yr, ch, T(0));
          for (i64 h = hs.lo; h < hs.hi; ++h) {
            for (i64 w = ws.lo; w < ws.hi; ++w) {
              const T* xr = xn + (h * g.in_w + w) * ch;
              for (i64 c = 0; c < ch; ++c) yr[c] += xr[c];
            }
          }
          const i64 count = hs.size() * ws.size();
          if (count > 0) {
            for (i64 c = 0; c < ch; ++c) yr[c] /= static_cast<T>(count);
          }
        }
      }
    }
    return;
  }
  for_each_plane(g, [&](i64 xo, i64 yo, i64 step) {
    const Plane<const T> xp{x + xo, step};
    const Plane<T> yp{y + yo, step};
    for (i64 oh = 0; oh < g.out_h; ++oh) {
      const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
      for (i64 ow = 0; ow < g.out_w; ++ow) {
        const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
        T sum = 0;
        for (i64 h = hs.lo; h < hs.hi; ++h) {
          for (i64 w = ws.lo; w < ws.hi; ++w) sum += xp[h * g.in_w + w];
        }
        const i64 count = hs.size() * ws.size();
        yp[oh * g.out_w + ow] = count > 0 ? sum / static_cast<T>(count) : T(0);
      }
    }
  });
}

template <class T>
void avg_pool_backward(const Pool2DGeometry& g, const T* dy, T* dx) {
  validate(g);
  std::fill_n(dx, g.input_size(), T(0));
  // y[o] = sum over the window of x / count(o), so dx[p] = sum over windows o containing p of
  // dy[o] / count(o) (multiplying by 1/count, as TF's AvgPoolGrad does).
  if (!g.channels_first) {
    const i64 ch = g.channels;
    for (i64 n = 0; n < g.batch; ++n) {
      T* dxn = dx + n * g.in_h * g.in_w * ch;
      const T* dyn = dy + n * g.out_h * g.out_w * ch;
      for (i64 oh = 0; oh < g.out_h; ++oh) {
        const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
        for (i64 ow = 0; ow < g.out_w; ++ow) {
          const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
          const i64 count = hs.size() * ws.size();
          if (count == 0) continue;
          const T scale = T(1) / static_cast<T>(count);
          const T* dyr = dyn + (oh * g.out_w + ow) * ch;
          for (i64 h = hs.lo; h < hs.hi; ++h) {
            for (i64 w = ws.lo; w < ws.hi; ++w) {
              T* dxr = dxn + (h * g.in_w + w) * ch;
              for (i64 c = 0; c < ch; ++c) dxr[c] += dyr[c] * scale;
            }
          }
        }
      }
    }
    return;
  }
  for_each_plane(g, [&](i64 xo, i64 yo, i64 step) {
    const Plane<const T> dyp{dy + yo, step};
    const Plane<T> dxp{dx + xo, step};
    for (i64 oh = 0; oh < g.out_h; ++oh) {
      const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
      for (i64 ow = 0; ow < g.out_w; ++ow) {
        const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
        const i64 count = hs.size() * ws.size();
        if (count == 0) continue;
        const T grad = dyp[oh * g.out_w + ow] * (T(1) / static_cast<T>(count));
        for (i64 h = hs.lo; h < hs.hi; ++h) {
          for (i64 w = ws.lo; w < ws.hi; ++w) dxp[h * g.in_w + w] += grad;
        }
      }
    }
  });
}

template void max_pool_forward<float>(const Pool2DGeometry&, const float*, float*);
template void max_pool_forward<double>(const Pool2DGeometry&, const double*, double*);
template void max_pool_backward<float>(const Pool2DGeometry&, const float*, const float*,
                                       const float*, float*);
template void max_pool_backward<double>(const Pool2DGeometry&, const double*, const double*,
                                        const double*, double*);
template void avg_pool_forward<float>(const Pool2DGeometry&, const float*, float*);
template void avg_pool_forward<double>(const Pool2DGeometry&, const double*, double*);
template void avg_pool_backward<float>(const Pool2DGeometry&, const float*, float*);
template void avg_pool_backward<double>(const Pool2DGeometry&, const double*, double*);

}  // namespace kiln::kernels
