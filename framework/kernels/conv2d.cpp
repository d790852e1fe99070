#include "framework/kernels/conv2d.hpp"

#include <algorithm>
#include <string>
#include <type_traits>

#include "framework/errors.hpp"
#include "framework/kernels/gemm.hpp"
#include "framework/kernels/scratch.hpp"
#include "framework/thread_pool.hpp"

namespace kiln::kernels {

using i64 = std::int64_t;

WindowDim window_dim(i64 in, i64 window, i64 stride, i64 dilation, Padding padding) {
  if (in < 0 || window < 1 || stride < 1 || dilation < 1) {
    throw InvalidArgumentError(
        "window_dim: need in >= 0 and window, stride, dilation >= 1; got in=" + std::to_string(in) +
        " window=" + std::to_string(window) + " stride=" + std::to_string(stride) +
        " dilation=" + std::to_string(dilation));
  }
  const i64 effective = (window - 1) * dilation + 1;
  WindowDim d;
  if (padding == Padding::valid) {
    // TF's GetWindowedOutputSize: (in - e + stride) / stride with C++ truncation.
    d.out = (in - effective + stride) / stride;
    if (d.out < 0) {
      throw InvalidArgumentError("window_dim: VALID window of effective size " +
                                 std::to_string(effective) + " does not fit an input of size " +
                                 std::to_string(in));
    }
    return d;
  }
  // SAME: out = ceil(in / stride); pad so that the last window ends at the input's end, the
  // odd pixel going after (bottom/right), as TF does.
  d.out = (in + stride - 1) / stride;
  const i64 total = std::max<i64>((d.out - 1) * stride + effective - in, 0);
  d.pad_before = total / 2;
  d.pad_after = total - d.pad_before;
  return d;
}

Conv2DGeometry make_conv2d_geometry(Conv2DGeometry spec, Padding padding) {
  const WindowDim h = window_dim(spec.in_h, spec.kernel_h, spec.stride_h, spec.dilation_h, padding);
  const WindowDim w = window_dim(spec.in_w, spec.kernel_w, spec.stride_w, spec.dilation_w, padding);
  spec.out_h = h.out;
  spec.out_w = w.out;
  spec.pad_top = h.pad_before;
  spec.pad_left = w.pad_before;
  validate(spec);
  return spec;
}

void validate(const Conv2DGeometry& g) {
  const bool ok = g.batch >= 0 && g.in_h >= 0 && g.in_w >= 0 && g.in_c >= 0 && g.out_h >= 0 &&
                  g.out_w >= 0 && g.out_c >= 0 && g.kernel_h >= 1 && g.kernel_w >= 1 &&
                  g.stride_h >= 1 && g.stride_w >= 1 && g.dilation_h >= 1 && g.dilation_w >= 1 &&
                  g.pad_top >= 0 && g.pad_left >= 0;
  if (!ok) {
    throw InvalidArgumentError(
        "conv2d: invalid geometry: batch=" + std::to_string(g.batch) + " in=[" +
        std::to_string(g.in_h) + "," + std::to_string(g.in_w) + "," + std::to_string(g.in_c) +
        "] out=[" + std::to_string(g.out_h) + "," + std::to_string(g.out_w) + "," +
        std::to_string(g.out_c) + "] kernel=[" + std::to_string(g.kernel_h) + "," +
        std::to_string(g.kernel_w) + "] strides=[" + std::to_string(g.stride_h) + "," +
        std::to_string(g.stride_w) + "] dilations=[" + std::to_string(g.dilation_h) + "," +
        std::to_string(g.dilation_w) + "] pads=[" + std::to_string(g.pad_top) + "," +
        std::to_string(g.pad_left) + "]");
  }
}

namespace {

// The outputs o in [0, out) whose tap o * stride + offset lies inside [0, in):
// o >= ceil(-offset / stride) and o < ceil((in - offset) / stride).
struct Range {
  i64 lo, hi;
};
Range valid_outputs(i64 out, i64 stride, i64 offset, i64 in) {
  const i64 lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const i64 hi = in - offset <= 0 ? 0 : std::min(out, (in - offset + stride - 1) / stride);
  return {std::min(lo, out), std::max(hi, std::min(lo, out))};
}

// Sizes of the per-image matrix product: P output pixels, K = kernel_h * kernel_w * in_c taps.
struct Dims {
  i64 images;     // gemm calls (1 when the whole batch forms one product)
  i64 pixels;     // P: rows (NHWC) or columns (NCHW) of the column matrix per call
  i64 taps;       // K
  i64 in_image;   // input elements per call
  i64 out_image;  // output elements per call
  bool direct;    // the column matrix is the input itself (1x1 kernel, stride 1, no padding)
};

Dims dims_of(const Conv2DGeometry& g) {
  Dims d;
  d.images = g.batch;
  d.pixels = g.out_h * g.out_w;
  d.taps = g.kernel_h * g.kernel_w * g.in_c;
  d.in_image = g.in_h * g.in_w * g.in_c;
  d.out_image = g.out_h * g.out_w * g.out_c;
  // A 1x1 kernel with stride 1 and no padding reads pixel p for output p: im2col would copy x.
  d.direct = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
             g.pad_top == 0 && g.pad_left == 0 && g.out_h == g.in_h && g.out_w == g.in_w;
  if (d.direct && !g.channels_first && d.images > 0) {
    // NHWC images are consecutive [P, in_c] blocks: the batch is one [batch * P, in_c] matrix.
    d.pixels *= d.images;
    d.in_image *= d.images;
    d.out_image *= d.images;
    d.images = 1;
  }
  return d;
}

// im2col reads x and writes col; col2im (kAccumulate) reads col and adds into x.
template <bool kAccumulate, class T>
using XPtr = std::conditional_t<kAccumulate, T*, const T*>;
template <bool kAccumulate, class T>
using ColPtr = std::conditional_t<kAccumulate, const T*, T*>;

// NHWC column matrix col[P, K]: row p = oh * out_w + ow holds, for each tap (i, j), the in_c
// channels of input pixel (oh*sh - pt + i*dh, ow*sw - pl + j*dw), i.e. column (i*kw + j)*in_c + c
// matches filter row (i, j, c). Off-image taps are zero. With kAccumulate the same index map runs
// backwards (col2im): x[pixel] += col[p, tap], which is the adjoint of the copy.
// Within one kernel row i, the in-image taps are j in [jlo, jhi) (valid_outputs with stride dw);
// with dw == 1 they are adjacent pixels, so x and col share one contiguous run of
// (jhi - jlo) * in_c values: one copy per kernel row instead of one per tap.
template <bool kAccumulate, class T>
void im2col_nhwc(const Conv2DGeometry& g, XPtr<kAccumulate, T> x, ColPtr<kAccumulate, T> col) {
  const i64 c_n = g.in_c;
  const i64 krow_len = g.kernel_w * c_n;
  const i64 row_len = g.kernel_h * krow_len;
  for (i64 oh = 0; oh < g.out_h; ++oh) {
    for (i64 ow = 0; ow < g.out_w; ++ow) {
      auto* row = col + (oh * g.out_w + ow) * row_len;
      const i64 iw0 = ow * g.stride_w - g.pad_left;  // input column of tap j = 0
      const Range rj = valid_outputs(g.kernel_w, g.dilation_w, iw0, g.in_w);
      for (i64 i = 0; i < g.kernel_h; ++i) {
        const i64 ih = oh * g.stride_h - g.pad_top + i * g.dilation_h;
        auto* krow = row + i * krow_len;
        const bool row_inside = ih >= 0 && ih < g.in_h;
        if constexpr (!kAccumulate) {
          const i64 lo = row_inside ? rj.lo * c_n : krow_len;
          std::fill_n(krow, lo, T(0));
          std::fill(krow + std::max(lo, rj.hi * c_n), krow + krow_len, T(0));
        }
        if (!row_inside || rj.hi <= rj.lo) continue;
        auto* xrow = x + ih * g.in_w * c_n;
        if (g.dilation_w == 1) {
          const i64 n = (rj.hi - rj.lo) * c_n;
          auto* src = xrow + (iw0 + rj.lo) * c_n;
          auto* dst = krow + rj.lo * c_n;
          if constexpr (kAccumulate) {
            for (i64 e = 0; e < n; ++e) src[e] += dst[e];
          } else {
            std::copy_n(src, n, dst);
          }
          continue;
        }
        for (i64 j = rj.lo; j < rj.hi; ++j) {
          auto* src = xrow + (iw0 + j * g.dilation_w) * c_n;
          auto* dst = krow + j * c_n;
          if constexpr (kAccumulate) {
            for (i64 c = 0; c < c_n; ++c) src[c] += dst[c];
          } else {
            std::copy_n(src, c_n, dst);
          }
        }
      }
    }
  }
}

// The column matrix filled a column at a time: column k = (i*kw + j)*in_c + c (the filter's row
// order) holds, for each output pixel p = oh * out_w + ow, input (c, oh*sh - pt + i*dh,
// ow*sw - pl + j*dw) (zero when off-image), with the in-image ranges computed once per tap.
// NCHW's column matrix is col[K, P]: a column is a contiguous row of col, and stride-1 taps copy
// runs of the input row. NHWC's is im2col_nhwc's col[P, K]: a column is strided by K, the input
// by in_c; for short kernel rows (kShortKernelRow) this beats im2col_nhwc's copy call and range
// computation per pixel and kernel row. kAccumulate runs the map backwards (col2im, the adjoint;
// NHWC's col2im stays with im2col_nhwc, whose order of additions its results have). Not inlined:
// inlined into im2col beside im2col_nhwc, GCC kept the NHWC inner loop's variables on the stack
// (a store and a reload per element).
template <bool kAccumulate, bool kChannelsFirst, class T>
[[gnu::noinline]] void im2col_by_column(const Conv2DGeometry& g, XPtr<kAccumulate, T> x,
                                        ColPtr<kAccumulate, T> col) {
  const i64 pixels = g.out_h * g.out_w, taps = g.kernel_h * g.kernel_w * g.in_c;
  // Column k starts at col + k * k_step, its pixel p at p * p_step; input pixel q of channel c
  // is x[c * c_step + q * q_step].
  const i64 k_step = kChannelsFirst ? pixels : 1, p_step = kChannelsFirst ? 1 : taps;
  const i64 c_step = kChannelsFirst ? g.in_h * g.in_w : 1, q_step = kChannelsFirst ? 1 : g.in_c;
  for (i64 i = 0; i < g.kernel_h; ++i) {
    const i64 h_off = i * g.dilation_h - g.pad_top;
    const Range rh = valid_outputs(g.out_h, g.stride_h, h_off, g.in_h);
    for (i64 j = 0; j < g.kernel_w; ++j) {
      const i64 w_off = j * g.dilation_w - g.pad_left;
      const Range rw = valid_outputs(g.out_w, g.stride_w, w_off, g.in_w);
      for (i64 c = 0; c < g.in_c; ++c) {
        auto* column = col + ((i * g.kernel_w + j) * g.in_c + c) * k_step;
        auto* xc = x + c * c_step;
        for (i64 oh = 0; oh < g.out_h; ++oh) {
          auto* dst = column + oh * g.out_w * p_step;
          const bool row_inside = oh >= rh.lo && oh < rh.hi;
          const i64 lo = row_inside ? rw.lo : g.out_w, hi = row_inside ? rw.hi : g.out_w;
          if constexpr (!kAccumulate) {
            for (i64 ow = 0; ow < lo; ++ow) dst[ow * p_step] = T(0);
            for (i64 ow = hi; ow < g.out_w; ++ow) dst[ow * p_step] = T(0);
          }
          if (!row_inside) continue;
          // Input pixel of output (oh, ow): row oh*sh + h_off, column ow*sw + w_off.
          const i64 step = g.stride_w * q_step;
          auto* src = xc + ((oh * g.stride_h + h_off) * g.in_w + w_off) * q_step;
          for (i64 ow = lo; ow < hi; ++ow) {
            if constexpr (kAccumulate)
              src[ow * step] += dst[ow * p_step];
            else
              dst[ow * p_step] = src[ow * step];
          }
        }
      }
    }
  }
}

// Kernel rows (kernel_w * in_c values, the run im2col_nhwc copies per pixel) up to this long fill
// the NHWC column matrix a column at a time. Measured (batch 128, 28x28 SAME, 32 filters, one
// thread, forward / filter gradient in ms, per pixel -> by column): 3x3 on one channel (the first
// convolution of a grey image) 1.70 / 2.19 -> 0.72 / 1.24; 2x2 on 2 channels 1.62 / 2.32 -> 1.02 /
// 1.69; 5x5 on one 3.1 / 3.95 -> 2.91 / 3.77; 3x3 on 2 channels 2.07 / 2.77 -> 2.18 / 3.27, on 3
// channels 2.37 / 2.88 -> 3.47 / 4.74 (a copy call per run pays from about six values on).
constexpr i64 kShortKernelRow = 5;

template <class T>
void im2col(const Conv2DGeometry& g, const T* x, T* col) {
  if (g.channels_first) {
    im2col_by_column<false, true, T>(g, x, col);
  } else if (g.kernel_w * g.in_c <= kShortKernelRow) {
    im2col_by_column<false, false, T>(g, x, col);
  } else {
    im2col_nhwc<false, T>(g, x, col);
  }
}

// dx = col2im(col): zero dx, then scatter-add every column entry into its input pixel.
template <class T>
void col2im(const Conv2DGeometry& g, const T* col, T* dx) {
  std::fill_n(dx, g.in_h * g.in_w * g.in_c, T(0));
  if (g.channels_first) {
    im2col_by_column<true, true, T>(g, dx, col);
  } else {
    im2col_nhwc<true, T>(g, dx, col);
  }
}

// Images per chunk on the pool: enough multiply-adds (about 2^19, some 5 us) per chunk.
i64 image_grain(const Conv2DGeometry& g) {
  const i64 work = std::max<i64>(1, g.out_h * g.out_w * g.kernel_h * g.kernel_w * g.in_c * g.out_c);
  return std::max<i64>(1, (i64{1} << 19) / work);
}

}  // namespace

// Every kernel splits the batch into chunks of images on the pool (parallel_for_workers); each
// thread has its im2col buffer, taken before the loop, and runs one single-threaded product per
// image (measured on this project's machines: per-image products whose column matrix stays in
// cache beat one product over the whole batch, whose column matrix streams from memory).

template <class T>
void conv2d_forward(const Conv2DGeometry& g, const T* x, const T* filter, T* y) {
  validate(g);
  const Dims d = dims_of(g);
  if (d.direct && !g.channels_first) {
    // The batch is one [batch * P, in_c] matrix: y = x * filter, split by gemm itself.
    gemm(false, false, d.pixels, g.out_c, d.taps, T(1), x, d.taps, filter, g.out_c, T(0), y,
         g.out_c);
    return;
  }
  const int workers = num_threads();
  Scratch<T> ws(d.direct ? 0 : static_cast<std::size_t>(workers * d.pixels * d.taps));
  parallel_for_workers(d.images, image_grain(g), workers, [&](i64 lo, i64 hi, int w) {
    T* wcol = ws.data() + static_cast<std::size_t>(w * d.pixels * d.taps);
    for (i64 n = lo; n < hi; ++n) {
      const T* xn = x + n * d.in_image;
      T* yn = y + n * d.out_image;
      const T* col = xn;
      if (!d.direct) {
        im2col(g, xn, wcol);
        col = wcol;
      }
      if (g.channels_first) {
        // y_n[out_c, P] = filter^T[out_c, K] * col[K, P]  (filter stored [K, out_c]).
        gemm_serial(true, false, g.out_c, d.pixels, d.taps, T(1), filter, g.out_c, col, d.pixels,
                    T(0), yn, d.pixels);
      } else {
        // y_n[P, out_c] = col[P, K] * filter[K, out_c].
        gemm_serial(false, false, d.pixels, g.out_c, d.taps, T(1), col, d.taps, filter, g.out_c,
                    T(0), yn, g.out_c);
      }
    }
  });
}

template <class T>
void conv2d_backprop_input(const Conv2DGeometry& g, const T* filter, const T* dy, T* dx) {
  validate(g);
  const Dims d = dims_of(g);
  if (d.direct && !g.channels_first) {
    // dx[batch * P, in_c] = dy * filter^T.
    gemm(false, true, d.pixels, d.taps, g.out_c, T(1), dy, g.out_c, filter, g.out_c, T(0), dx,
         d.taps);
    return;
  }
  const int workers = num_threads();
  Scratch<T> ws(d.direct ? 0 : static_cast<std::size_t>(workers * d.pixels * d.taps));
  parallel_for_workers(d.images, image_grain(g), workers, [&](i64 lo, i64 hi, int w) {
    for (i64 n = lo; n < hi; ++n) {
      const T* dyn = dy + n * d.out_image;
      T* dxn = dx + n * d.in_image;
      // y = col * filter is linear in col, so dcol = dy * filter^T; then dx = col2im(dcol), the
      // adjoint of im2col. In the direct case col is x itself and dcol is dx.
      T* dcol = d.direct ? dxn : ws.data() + static_cast<std::size_t>(w * d.pixels * d.taps);
      if (g.channels_first) {
        // dcol[K, P] = filter[K, out_c] * dy_n[out_c, P].
        gemm_serial(false, false, d.taps, d.pixels, g.out_c, T(1), filter, g.out_c, dyn, d.pixels,
                    T(0), dcol, d.pixels);
      } else {
        // dcol[P, K] = dy_n[P, out_c] * filter^T[out_c, K].
        gemm_serial(false, true, d.pixels, d.taps, g.out_c, T(1), dyn, g.out_c, filter, g.out_c,
                    T(0), dcol, d.taps);
      }
      if (!d.direct) col2im(g, dcol, dxn);
    }
  });
}

template <class T>
void conv2d_backprop_filter(const Conv2DGeometry& g, const T* x, const T* dy, T* dfilter) {
  validate(g);
  const Dims d = dims_of(g);
  const i64 fsize = g.filter_size();
  if (d.images == 0) {
    std::fill_n(dfilter, fsize, T(0));
    return;
  }
  if (d.direct && !g.channels_first) {
    // dfilter[in_c, out_c] = x^T[in_c, batch * P] * dy[batch * P, out_c], split by gemm itself.
    gemm(true, false, d.taps, g.out_c, d.pixels, T(1), x, d.taps, dy, g.out_c, T(0), dfilter,
         g.out_c);
    return;
  }
  // dfilter = sum over images of col_n^T dy_n (NHWC; col_n dy_n^T for NCHW). Each chunk of
  // images sums its images into its own partial result; the partials are added in chunk order,
  // whose bounds depend only on the batch size: bit-identical results for any thread count.
  // About 8 chunks keep that sum short. A partial is [K, out_c] (dfilter's layout) or, when there
  // are fewer filters than taps, transposed: [out_c, K] = sum of dy_n^T col_n. The library call
  // is fastest with the smaller side as its rows (oneDNN, one thread, batch 128, pixels x taps x
  // filters, transposed against direct: 121x288x64 3.22 against 3.73 ms, 49x288x64 1.15 / 1.24,
  // 169x27x16 0.15 / 0.17, 100x800x64 6.4 / 9.0; 676x9x32 0.82 / 0.44, 784x25x32 1.47 / 1.13,
  // 196x9x32 0.25 / 0.15).
  const bool transposed = g.out_c < d.taps;
  const i64 grain = std::max(image_grain(g), (d.images + 7) / 8);
  const i64 chunks = parallel_chunk_count(d.images, grain);
  Scratch<T> partial(static_cast<std::size_t>(chunks * fsize));
  const int workers = num_threads();
  Scratch<T> ws(d.direct ? 0 : static_cast<std::size_t>(workers * d.pixels * d.taps));
  parallel_for_workers(d.images, grain, workers, [&](i64 lo, i64 hi, int w) {
    T* wcol = ws.data() + static_cast<std::size_t>(w * d.pixels * d.taps);
    i64 chunk = 0;
    while (chunk + 1 < chunks && parallel_chunk_begin(d.images, grain, chunk + 1) <= lo) ++chunk;
    T* part = partial.data() + chunk * fsize;
    for (i64 n = lo; n < hi; ++n) {
      const T* xn = x + n * d.in_image;
      const T* dyn = dy + n * d.out_image;
      const T* col = xn;
      if (!d.direct) {
        im2col(g, xn, wcol);
        col = wcol;
      }
      const T beta = n == lo ? T(0) : T(1);
      if (g.channels_first && transposed) {
        // part[out_c, K] += dy_n[out_c, P] * col^T[P, K]  (col stored [K, P]).
        gemm_serial(false, true, g.out_c, d.taps, d.pixels, T(1), dyn, d.pixels, col, d.pixels,
                    beta, part, d.taps);
      } else if (g.channels_first) {
        // part[K, out_c] += col[K, P] * dy_n^T[P, out_c].
        gemm_serial(false, true, d.taps, g.out_c, d.pixels, T(1), col, d.pixels, dyn, d.pixels,
                    beta, part, g.out_c);
      } else if (transposed) {
        // part[out_c, K] += dy_n^T[out_c, P] * col[P, K].
        gemm_serial(true, false, g.out_c, d.taps, d.pixels, T(1), dyn, g.out_c, col, d.taps, beta,
                    part, d.taps);
      } else {
        // part[K, out_c] += col^T[K, P] * dy_n[P, out_c].
        gemm_serial(true, false, d.taps, g.out_c, d.pixels, T(1), col, d.taps, dyn, g.out_c, beta,
                    part, g.out_c);
      }
    }
  });
  // dfilter = the sum over chunks (in order) of the partials, transposed back where they are.
  T* p0 = partial.data();
  for (i64 c = 1; c < chunks; ++c) {
    const T* pc = p0 + c * fsize;
    for (i64 i = 0; i < fsize; ++i) p0[i] += pc[i];
  }
  if (!transposed) {
    std::copy_n(p0, fsize, dfilter);
    return;
  }
  for (i64 k = 0; k < d.taps; ++k)
    for (i64 o = 0; o < g.out_c; ++o) dfilter[k * g.out_c + o] = p0[o * d.taps + k];
}

#define KILN_CONV_INSTANTIATE(T)                                                             \
  template void conv2d_forward<T>(const Conv2DGeometry&, const T*, const T*, T*);           \
  template void conv2d_backprop_input<T>(const Conv2DGeometry&, const T*, const T*, T*);    \
  template void conv2d_backprop_filter<T>(const Conv2DGeometry&, const T*, const T*, T*);
KILN_CONV_INSTANTIATE(float)
KILN_CONV_INSTANTIATE(double)
#undef KILN_CONV_INSTANTIATE

}  // namespace kiln::kernels
