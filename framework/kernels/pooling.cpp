#include "framework/kernels/pooling.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include "framework/errors.hpp"
#include "framework/kernels/elementwise.hpp"
#include "framework/thread_pool.hpp"

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

template <class T>
using B = xsimd::batch<T>;
template <class T>
constexpr i64 kW = static_cast<i64>(B<T>::size);

// The input rows [lo, hi) of window o: [o*stride - pad, + window) clipped to [0, in).
struct Span {
  i64 lo, hi;
  i64 size() const { return hi > lo ? hi - lo : 0; }
};
Span window_span(i64 o, i64 stride, i64 pad, i64 window, i64 in) {
  const i64 start = o * stride - pad;
  return {std::max<i64>(start, 0), std::min(start + window, in)};
}

i64 in_image(const Pool2DGeometry& g) { return g.in_h * g.in_w * g.channels; }
i64 out_image(const Pool2DGeometry& g) { return g.out_h * g.out_w * g.channels; }

// f(n) for every image n, the batch split into chunks of about 32K input elements on the pool.
// Every kernel below writes only image n's outputs in f(n), so the chunks are independent.
template <class F>
void for_images(const Pool2DGeometry& g, F&& f) {
  const i64 grain = std::max<i64>(1, (i64{1} << 15) / std::max<i64>(1, in_image(g)));
  parallel_for(g.batch, grain, [&](i64 lo, i64 hi) {
    for (i64 n = lo; n < hi; ++n) f(n);
  });
}

// The running-maximum update of max pooling, lane by lane: take v when it is greater than m, or
// NaN while m is not. NaN compares false, so a NaN m stays: the first NaN wins.
template <class T>
auto take(const B<T>& v, const B<T>& m) {
  // xsimd's != on batches is an ordered comparison (false for NaN): test NaN with isnan.
  return (v > m) | (xsimd::isnan(v) & (m == m));
}

// The index lanes of a gather of T (as many as T's).
template <class T>
using GatherIndex = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;

// Images up to this many pixels keep a pixel index exactly in a lane of T (2^24 for float).
template <class T>
constexpr i64 kMaxSimdPixels = i64{1} << (std::is_same_v<T, float> ? 24 : 53);

// The maximum over a window, lane by lane, and the pixel p = h * in_w + w of lane 0's window it
// came from, as a T (exact): the window's rows hs and columns ws are lane 0's, and tap(p) holds the
// lanes' values at the tap of lane 0's pixel p (lane l's pixel is then p plus the caller's lane
// offset). Scanned row by row with take. Every caller's lanes are either channels (either layout),
// outputs along a row (NCHW) or one output broadcast to all lanes (the rest): branch-free, so a
// data-dependent compare costs no misprediction (the scalar scan it replaced branched on it:
// NCHW's 128x32x26x26 max pool took 11.7 ms at one thread, against 1.4 ms in NHWC).
template <class T>
struct WindowMax {
  B<T> value, pixel;
};
template <class T, class Tap>
WindowMax<T> window_max(Span hs, Span ws, i64 in_w, Tap&& tap) {
  const i64 first = hs.lo * in_w + ws.lo;
  WindowMax<T> r{tap(first), B<T>(static_cast<T>(first))};
  // The first pixel against itself changes nothing (not greater; a NaN m stays).
  for (i64 h = hs.lo; h < hs.hi; ++h) {
    for (i64 w = ws.lo; w < ws.hi; ++w) {
      const i64 p = h * in_w + w;
      const B<T> v = tap(p);
      const auto better = take(v, r.value);
      r.value = xsimd::select(better, v, r.value);
      r.pixel = xsimd::select(better, B<T>(static_cast<T>(p)), r.pixel);
    }
  }
  return r;
}

// out[l] = start + l * lane_step + pixel[l] * scale for every lane l: the argmax entries of a
// window scan, its pixels (exact integers in T, below 2^24) converted and widened to i64 in AVX2
// registers rather than stored and converted one lane at a time (one thread, 128x26x26x32 NHWC
// 1.75 -> 1.63 ms, 128x11x11x64 0.30 -> 0.26 ms, 128x32x26x26 NCHW 2.0 -> 1.8 ms). scale is
// below 2^31 (_mm256_mul_epi32 multiplies 32-bit halves).
template <class T>
void store_argmax(i64* out, const B<T>& pixel, i64 scale, i64 start, i64 lane_step) {
  const __m256i s = _mm256_set1_epi64x(scale);
  const auto put = [&](i64* o, __m128i p32, i64 l) {  // lanes l..l+3, their pixels in p32
    const i64 a = start + l * lane_step;
    const __m256i first = _mm256_setr_epi64x(a, a + lane_step, a + 2 * lane_step, a + 3 * lane_step);
    const __m256i p = _mm256_cvtepi32_epi64(p32);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm256_add_epi64(first, _mm256_mul_epi32(p, s)));
  };
  if constexpr (std::is_same_v<T, float>) {
    const __m256i p32 = _mm256_cvttps_epi32(pixel);
    put(out, _mm256_castsi256_si128(p32), 0);
    put(out + 4, _mm256_extracti128_si256(p32, 1), 4);
  } else {
    put(out, _mm256_cvttpd_epi32(pixel), 0);
  }
}

// Lane 0 of a batch.
template <class T>
T lane0(const B<T>& b) {
  alignas(64) T v[kW<T>];
  b.store_aligned(v);
  return v[0];
}

// One output of one channel (the values of the channel at pixel p in x[p * pixel_step]): y = the
// window's maximum, pixel = where. The window scan with the value broadcast to every lane; past
// the pixels a lane of T holds exactly, a scalar scan with an integer index.
template <class T>
void pool_one(const T* x, i64 pixel_step, i64 in_w, Span hs, Span ws, T& y, i64& pixel) {
  if ((hs.hi - 1) * in_w + ws.hi <= kMaxSimdPixels<T>) {
    const WindowMax<T> r = window_max<T>(hs, ws, in_w, [&](i64 p) { return B<T>(x[p * pixel_step]); });
    y = lane0(r.value), pixel = static_cast<i64>(lane0(r.pixel));
    return;
  }
  pixel = hs.lo * in_w + ws.lo, y = x[pixel * pixel_step];
  for (i64 h = hs.lo; h < hs.hi; ++h) {
    for (i64 w = ws.lo; w < ws.hi; ++w) {
      const T v = x[(h * in_w + w) * pixel_step];
      if (v > y || (v != v && y == y)) y = v, pixel = h * in_w + w;  // take, one value
    }
  }
}

// Max pooling of image n by channels: per output pixel, the window scan kW<T> channels at a time,
// then the channels past the last whole vector one at a time. NHWC's channels are contiguous (a
// load, a store); NCHW's lie a plane apart (a gather: (kW - 1) planes of kMaxSimdPixels fit I), for
// images whose rows hold fewer full windows than lanes (the CNN's 11x11 pooled to 5x5: 1.25-1.33
// -> 0.55-0.91 ms at 128x64x11x11, one thread, against one output at a time). Every lane has the
// same window, so clipped windows go the vector way too.
template <bool kChannelsFirst, class T>
void max_pool_image_by_channels(const Pool2DGeometry& g, i64 n, const T* x, T* y, i64* argmax) {
  using I = GatherIndex<T>;
  const i64 C = g.channels, in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  // Input pixel p of channel c at xn[p * px + c * cx]; output o of channel c at yn[o * py + c * cy].
  const i64 px = kChannelsFirst ? 1 : C, cx = kChannelsFirst ? in_plane : 1;
  const i64 py = kChannelsFirst ? 1 : C, cy = kChannelsFirst ? out_plane : 1;
  const i64 base = n * in_image(g);
  const T* xn = x + base;
  T* yn = y + n * out_image(g);
  i64* an = argmax + n * out_image(g);
  const bool simd = in_plane <= kMaxSimdPixels<T> && C < (i64{1} << 31);  // store_argmax's scale
  alignas(64) I planes[kW<T>];
  for (i64 l = 0; l < kW<T>; ++l) planes[l] = static_cast<I>(kChannelsFirst ? l * in_plane : 0);
  const auto plane = xsimd::batch<I>::load_aligned(planes);
  alignas(64) T values[kW<T>];
  alignas(64) i64 index[kW<T>];
  for (i64 oh = 0; oh < g.out_h; ++oh) {
    const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
    for (i64 ow = 0; ow < g.out_w; ++ow) {
      const Span ws = window_span(ow, g.stride_w, g.pad_left, g.window_w, g.in_w);
      const i64 o = oh * g.out_w + ow;
      if (hs.size() == 0 || ws.size() == 0) {
        for (i64 c = 0; c < C; ++c) yn[o * py + c * cy] = T(0), an[o * py + c * cy] = -1;
        continue;
      }
      i64 c = 0;
      for (; simd && c + kW<T> <= C; c += kW<T>) {
        const T* xc = xn + c * cx;
        const WindowMax<T> r = window_max<T>(hs, ws, g.in_w, [&](i64 p) {
          if constexpr (kChannelsFirst)
            return B<T>::gather(xc + p, plane);
          else
            return B<T>::load_unaligned(xc + p * C);
        });
        if constexpr (kChannelsFirst) {  // lane l: plane c + l
          r.value.store_aligned(values);
          store_argmax(index, r.pixel, 1, base + c * in_plane, in_plane);
          for (i64 l = 0; l < kW<T>; ++l) yn[(c + l) * out_plane + o] = values[l], an[(c + l) * out_plane + o] = index[l];
        } else {  // lane l: channel c + l of pixel p, p * C + c + l
          r.value.store_unaligned(yn + o * C + c);
          store_argmax(an + o * C + c, r.pixel, C, base + c, 1);
        }
      }
      for (; c < C; ++c) {
        i64& a = an[o * py + c * cy];
        pool_one(xn + c * cx, px, g.in_w, hs, ws, yn[o * py + c * cy], a);
        a = base + a * px + c * cx;
      }
    }
  }
}

// NCHW max pooling of image n: its planes are contiguous, and an output row runs along input
// rows. The outputs whose window lies inside the input's columns go kW<T> at a time, lanes along
// the output row (lane l: output ow + l, lane 0's columns shifted by l * stride_w): a tap is one
// load (stride 1) or one gather; a row's last lanes overlap the vector before (they write the
// same values again) rather than go one at a time. The other outputs (windows clipped by
// padding) go one at a time; images whose rows hold fewer full windows than lanes go by channels
// (above) when they have a vector of them, else one output at a time.
template <class T>
void max_pool_nchw_image(const Pool2DGeometry& g, i64 n, const T* x, T* y, i64* argmax) {
  using I = GatherIndex<T>;
  const i64 in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w, sw = g.stride_w;
  // The full windows: ow * sw - pad_left >= 0 and ow * sw - pad_left + window_w <= in_w.
  const i64 full_lo = std::min(g.out_w, (g.pad_left + sw - 1) / sw);
  const i64 last = g.in_w + g.pad_left - g.window_w;  // ow * sw <= last
  const i64 full_hi = std::max(full_lo, last < 0 ? 0 : std::min(g.out_w, last / sw + 1));
  // Lane offsets l * sw < kW * in_w fit I for images of kMaxSimdPixels.
  const bool simd = in_plane <= kMaxSimdPixels<T> && full_hi - full_lo >= kW<T>;
  if (!simd && in_plane <= kMaxSimdPixels<T> && g.channels >= kW<T>)
    return max_pool_image_by_channels<true>(g, n, x, y, argmax);
  alignas(64) I columns[kW<T>];
  for (i64 l = 0; l < kW<T>; ++l) columns[l] = static_cast<I>(l * sw);
  const auto column = xsimd::batch<I>::load_aligned(columns);
  for (i64 c = 0; c < g.channels; ++c) {
    const i64 base = (n * g.channels + c) * in_plane;
    const T* xp = x + base;
    T* yp = y + (n * g.channels + c) * out_plane;
    i64* ap = argmax + (n * g.channels + c) * out_plane;
    for (i64 oh = 0; oh < g.out_h; ++oh) {
      const Span hs = window_span(oh, g.stride_h, g.pad_top, g.window_h, g.in_h);
      T* yr = yp + oh * g.out_w;
      i64* ar = ap + oh * g.out_w;
      const auto one = [&](i64 ow) {
        const Span ws = window_span(ow, sw, g.pad_left, g.window_w, g.in_w);
        if (hs.size() == 0 || ws.size() == 0) {
          yr[ow] = T(0), ar[ow] = -1;
          return;
        }
        pool_one(xp, 1, g.in_w, hs, ws, yr[ow], ar[ow]);
        ar[ow] += base;
      };
      if (!simd || hs.size() == 0) {
        for (i64 ow = 0; ow < g.out_w; ++ow) one(ow);
        continue;
      }
      for (i64 ow = 0; ow < full_lo; ++ow) one(ow);
      for (i64 ow = full_lo; ow < full_hi; ow += kW<T>) {
        const i64 o = std::min(ow, full_hi - kW<T>);  // the last vector ends at full_hi
        const i64 w0 = o * sw - g.pad_left;
        const WindowMax<T> r = window_max<T>(hs, Span{w0, w0 + g.window_w}, g.in_w, [&](i64 p) {
          return sw == 1 ? B<T>::load_unaligned(xp + p) : B<T>::gather(xp + p, column);
        });
        r.value.store_unaligned(yr + o);
        store_argmax(ar + o, r.pixel, 1, base, sw);  // lane l's pixel: p + l * sw
      }
      for (i64 ow = full_hi; ow < g.out_w; ++ow) one(ow);
    }
  }
}

// Image n's argmax entries, each checked to lie in image n of x (or be -1), so that a wrong
// argmax input cannot write outside dx or race with another chunk.
[[noreturn]] void bad_argmax(const char* op, i64 o, i64 a, i64 lo, i64 hi) {
  throw InvalidArgumentError(std::string(op) + ": argmax[" + std::to_string(o) + "] = " +
                             std::to_string(a) + " is outside its image's input elements [" +
                             std::to_string(lo) + ", " + std::to_string(hi) + ")");
}

}  // namespace

template <class T>
void max_pool_forward(const Pool2DGeometry& g, const T* x, T* y, i64* argmax) {
  validate(g);
  for_images(g, [&](i64 n) {
    if (g.channels_first)
      max_pool_nchw_image(g, n, x, y, argmax);
    else
      max_pool_image_by_channels<false>(g, n, x, y, argmax);
  });
}

// Lanes l of (a[l] == e + l), l < kW<T>, as a mask of T lanes (all bits set where equal).
template <class T>
auto index_mask(const i64* a, i64 e) {
  const __m256i step = _mm256_setr_epi64x(0, 1, 2, 3);
  const auto eq = [&](i64 k) {  // lanes k..k+3
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k));
    return _mm256_cmpeq_epi64(v, _mm256_add_epi64(_mm256_set1_epi64x(e + k), step));
  };
  if constexpr (std::is_same_v<T, float>) {
    // The low halves of the 64-bit masks of lanes 0-3 and 4-7, in lane order: shuffle_ps takes
    // (m0[0], m0[1], m1[0], m1[1] | m0[2], m0[3], m1[2], m1[3]), the permute restores the order.
    const __m256 s = _mm256_shuffle_ps(_mm256_castsi256_ps(eq(0)), _mm256_castsi256_ps(eq(4)), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(_mm256_castps_si256(s), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)));
  } else {
    return _mm256_castsi256_pd(eq(0));
  }
}

// Disjoint windows (stride >= window, or a single window, and nothing padded before: 2x2 pooling
// at stride 2): every input element lies in at most one window, so the scatter below writes each
// element at most once, the sum 0 + dy[o] where argmax[o] points at it and 0 elsewhere. Image n
// of NHWC is then written in one pass in memory order with no fill: each pixel's channels from
// its window's outputs, as a mask (argmax equal to the pixel's own index) on dy + 0 (the
// scatter's 0 + dy turns -0 into +0). Returns false, leaving the image to the scatter, unless
// every output's entry was found in its window (the entries found are distinct elements, so
// finding as many as there are outputs means each output's is in its own window): an entry
// elsewhere, -1 or out of range is the scatter's to place or reject. In the CNN step (NHWC, one
// thread, three processes each), its two MaxPoolGrads: 128x26x26x32 1.12-1.21 -> 0.72-0.76 ms,
// 128x11x11x64 0.27-0.36 -> 0.18-0.21 ms (the fill and the scattered adds went over the image
// twice, the adds one element at a time). NCHW keeps the scatter (its lanes along a row would
// need a gather of argmax and dy per vector).
i64 disjoint_stride(i64 out, i64 stride, i64 window) { return out == 1 ? std::max(stride, window) : stride; }
bool disjoint(const Pool2DGeometry& g) {
  return !g.channels_first && g.pad_top == 0 && g.pad_left == 0 &&
         disjoint_stride(g.out_h, g.stride_h, g.window_h) >= g.window_h &&
         disjoint_stride(g.out_w, g.stride_w, g.window_w) >= g.window_w;
}
// The gate of ReluGrad(g, f) (kernels::gate), which max_pool_backward_relu applies to its sums.
template <class V>
V relu_gate(const V& g, const V& f) {
  return gate(f > V(0), g, f);
}

// With a `relu` input (the features of a ReluGrad that reads the result), each element goes out
// through relu_gate with it.
template <class T>
bool max_pool_backward_disjoint_image(const Pool2DGeometry& g, i64 n, const i64* argmax, const T* dy, const T* relu,
                                      T* dx) {
  const i64 C = g.channels, ii = in_image(g), oi = out_image(g), lo = n * ii;
  const i64 sh = disjoint_stride(g.out_h, g.stride_h, g.window_h), sw = disjoint_stride(g.out_w, g.stride_w, g.window_w);
  const i64* an = argmax + n * oi;
  const T* dyn = dy + n * oi;
  T* dxn = dx + lo;
  const T* fn = relu ? relu + lo : nullptr;
  const B<T> zero(T(0));
  i64 found = 0;
  for (i64 h = 0; h < g.in_h; ++h) {
    const i64 oh = h / sh;
    const bool row_in = oh < g.out_h && h - oh * sh < g.window_h;
    for (i64 w = 0; w < g.in_w; ++w) {
      const i64 ow = w / sw, p = (h * g.in_w + w) * C;
      T* out = dxn + p;
      if (!row_in || ow >= g.out_w || w - ow * sw >= g.window_w) {  // in no window
        for (i64 c = 0; c < C; ++c) out[c] = fn ? relu_gate(T(0), fn[p + c]) : T(0);
        continue;
      }
      const i64* a = an + (oh * g.out_w + ow) * C;
      const T* d = dyn + (oh * g.out_w + ow) * C;
      i64 c = 0;
      for (; c + kW<T> <= C; c += kW<T>) {
        const auto m = index_mask<T>(a + c, lo + p + c);
        B<T> v = B<T>::load_unaligned(d + c) + zero;
        if constexpr (std::is_same_v<T, float>) {
          v = _mm256_and_ps(m, v);
          found += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(m)));
        } else {
          v = _mm256_and_pd(m, v);
          found += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_pd(m)));
        }
        if (fn) v = relu_gate(v, B<T>::load_unaligned(fn + p + c));
        v.store_unaligned(out + c);
      }
      for (; c < C; ++c) {
        const bool hit = a[c] == lo + p + c;
        const T v = hit ? T(0) + d[c] : T(0);
        out[c] = fn ? relu_gate(v, fn[p + c]) : v;
        found += hit;
      }
    }
  }
  return found == oi;
}

// Image n by the scatter.
template <class T>
void max_pool_backward_scatter_image(const Pool2DGeometry& g, i64 n, const i64* argmax, const T* dy, T* dx) {
  // One unsigned compare per output tells an entry inside the image from -1 and from a bad one.
  const i64 ii = in_image(g), oi = out_image(g);
  T* dxn = dx + n * ii;
  std::fill_n(dxn, ii, T(0));
  const i64 lo = n * ii;
  for (i64 o = n * oi; o < (n + 1) * oi; ++o) {
    // The element in image n; unsigned, so that no entry can overflow the subtraction.
    const std::uint64_t e = static_cast<std::uint64_t>(argmax[o]) - static_cast<std::uint64_t>(lo);
    if (e >= static_cast<std::uint64_t>(ii)) {
      if (argmax[o] == -1) continue;
      bad_argmax("MaxPoolGrad", o, argmax[o], lo, lo + ii);
    }
    dxn[e] += dy[o];
  }
}

// max_pool_backward, then (relu given) relu_gate with it, image by image.
template <class T>
void max_pool_backward_images(const Pool2DGeometry& g, const i64* argmax, const T* dy, const T* relu, T* dx) {
  validate(g);
  const bool windows_disjoint = disjoint(g);
  const i64 ii = in_image(g);
  for_images(g, [&](i64 n) {
    if (windows_disjoint && max_pool_backward_disjoint_image(g, n, argmax, dy, relu, dx)) return;
    max_pool_backward_scatter_image(g, n, argmax, dy, dx);
    if (!relu) return;
    T* dxn = dx + n * ii;
    const T* fn = relu + n * ii;
    i64 e = 0;
    for (; e + kW<T> <= ii; e += kW<T>)
      relu_gate(B<T>::load_unaligned(dxn + e), B<T>::load_unaligned(fn + e)).store_unaligned(dxn + e);
    for (; e < ii; ++e) dxn[e] = relu_gate(dxn[e], fn[e]);
  });
}

template <class T>
void max_pool_backward(const Pool2DGeometry& g, const i64* argmax, const T* dy, T* dx) {
  // y[o] = x[argmax[o]], so d sum(y * dy) / dx[p] = sum over o with argmax[o] = p of dy[o]: a
  // scatter. Outputs of image n point into image n only, so the images are independent.
  max_pool_backward_images<T>(g, argmax, dy, nullptr, dx);
}

template <class T>
void max_pool_backward_relu(const Pool2DGeometry& g, const i64* argmax, const T* dy, const T* relu, T* dx) {
  max_pool_backward_images(g, argmax, dy, relu, dx);
}

template <class T>
void max_pool_grad_grad(const Pool2DGeometry& g, const i64* argmax, const T* gg, T* out) {
  validate(g);
  // max_pool_backward is dx = S^T dy with S the 0/1 matrix S[o, argmax[o]] = 1; its derivative
  // in dy, applied to gg, is S gg: a gather.
  const i64 ii = in_image(g), oi = out_image(g);
  for_images(g, [&](i64 n) {
    const i64 lo = n * ii, hi = lo + ii;
    for (i64 o = n * oi; o < (n + 1) * oi; ++o) {
      const i64 a = argmax[o];
      if (a == -1) {
        out[o] = T(0);
        continue;
      }
      if (a < lo || a >= hi) bad_argmax("MaxPoolGradGrad", o, a, lo, hi);
      out[o] = gg[a];
    }
  });
}

template <class T>
void avg_pool_forward(const Pool2DGeometry& g, const T* x, T* y) {
  validate(g);
  const i64 ch = g.channels;
  for_images(g, [&](i64 n) {
    const T* xn = x + n * in_image(g);
    T* yn = y + n * out_image(g);
    if (!g.channels_first) {
      // NHWC: sum the window's pixels as rows of `channels` values, then divide by the number
      // of input pixels in the clipped window (padding does not count).
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
      return;
    }
    for (i64 c = 0; c < ch; ++c) {
      const T* xp = xn + c * g.in_h * g.in_w;
      T* yp = yn + c * g.out_h * g.out_w;
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
    }
  });
}

template <class T>
void avg_pool_backward(const Pool2DGeometry& g, const T* dy, T* dx) {
  validate(g);
  // y[o] = sum over the window of x / count(o), so dx[p] = sum over windows o containing p of
  // dy[o] / count(o) (multiplying by 1/count, as TF's AvgPoolGrad does).
  const i64 ch = g.channels;
  for_images(g, [&](i64 n) {
    T* dxn = dx + n * in_image(g);
    const T* dyn = dy + n * out_image(g);
    std::fill_n(dxn, in_image(g), T(0));
    if (!g.channels_first) {
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
      return;
    }
    for (i64 c = 0; c < ch; ++c) {
      const T* dyp = dyn + c * g.out_h * g.out_w;
      T* dxp = dxn + c * g.in_h * g.in_w;
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
    }
  });
}

#define KILN_POOL_INSTANTIATE(T)                                                               \
  template void max_pool_forward<T>(const Pool2DGeometry&, const T*, T*, i64*);                \
  template void max_pool_backward<T>(const Pool2DGeometry&, const i64*, const T*, T*);         \
  template void max_pool_backward_relu<T>(const Pool2DGeometry&, const i64*, const T*, const T*, T*); \
  template void max_pool_grad_grad<T>(const Pool2DGeometry&, const i64*, const T*, T*);        \
  template void avg_pool_forward<T>(const Pool2DGeometry&, const T*, T*);                      \
  template void avg_pool_backward<T>(const Pool2DGeometry&, const T*, T*);
KILN_POOL_INSTANTIATE(float)
KILN_POOL_INSTANTIATE(double)
#undef KILN_POOL_INSTANTIATE

}  // namespace kiln::kernels
