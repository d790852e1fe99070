#pragma once
// The value sources kiln's sums read (kernels/reduce.hpp): values formed from one or two arrays
// and a broadcast value as they are read, each rounded as the elementwise ops they replace round
// it, so that a sum of them is bit for bit the sum of those ops' stored output without the pass
// that writes it. A source is a pointer-like value: x[i] is value i, x + k the values from k on.
// Thread safety: views of the caller's buffers; reading them from many threads is safe.
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <xtensor/xstorage.hpp>

namespace kiln::kernels {

using Dims = xt::svector<std::size_t, 4>;  // inline up to rank 4: no allocation

/// A source whose values are a[i] * b[i], each rounded to T as a Mul kernel stores it: summed, it
/// gives bit for bit the sum of the Mul's output without writing that output (a pass over memory
/// and a buffer less).
template <class T>
struct ProductOf {
  const T* a;
  const T* b;
  T operator[](std::size_t i) const { return a[i] * b[i]; }
  friend ProductOf operator+(const ProductOf& p, std::size_t k) { return {p.a + k, p.b + k}; }
};

/// How a leaf forms each value from a[i], b[i] and a broadcast value m, rounding every step to
/// the element type as the ops it replaces round it: a * b (a Mul), (a - m) * b (a Sub, then a
/// Mul), a * m (a Mul by a broadcast factor).
enum class Form { product, centered, scaled };

/// Value i of the form kForm: a[i] * b[i], (a[i] - m) * b[i] or a[i] * m (b unread), each step
/// rounded to T.
template <Form kForm, class T>
T form_value(const T* a, const T* b, std::size_t i, T m) {
  if constexpr (kForm == Form::product) return a[i] * b[i];
  if constexpr (kForm == Form::centered) return T(a[i] - m) * b[i];
  if constexpr (kForm == Form::scaled) return a[i] * m;
}

/// A run of values of the form kForm (centered or scaled) with one broadcast value m: a light
/// source (a BroadcastSource's values along an NCHW plane), summed in AVX registers for floats.
template <class T, Form kForm>
struct ConstantRun {
  const T* a;
  const T* b;  // null for the scaled form
  T m;
  T operator[](std::size_t i) const { return form_value<kForm>(a, b, i, m); }
  friend ConstantRun operator+(const ConstantRun& p, std::size_t k) {
    return {p.a + k, kForm == Form::scaled ? p.b : p.b + k, p.m};
  }
};

/// Rows of `inner` values of the form kForm whose broadcast value depends on the column only,
/// m[col] (NHWC's per-channel mean or scale): the value at (row, col), formed as it is read.
template <class T, Form kForm>
struct ColumnRows {
  const T* a;
  const T* b;  // null for the scaled form
  const T* m;
  std::size_t inner;
  T at(std::size_t row, std::size_t col) const { return form_value<kForm>(a, b, row * inner + col, m[col]); }
  /// The rows from (row, col) on: at(r, c) of the result is at(row + r, col + c).
  ColumnRows from(std::size_t row, std::size_t col) const {
    const std::size_t e = row * inner + col;
    return {a + e, kForm == Form::scaled ? b : b + e, m + col, inner};
  }
};

/// A source whose values are formed (kForm: centered or scaled) from a[i], b[i] and m[j], where
/// m[j] is the element of m that broadcasting puts at i: (x - mean) * dy or dy * scale, summed
/// per channel, without storing the difference or the product. `dims` are the values'
/// dimensions (adjacent ones merged where m's strides allow, kernels/elementwise.hpp's
/// broadcast_loops), `m_strides` m's element strides along them (0 where m repeats). The scaled
/// form reads no b (null).
template <class T, Form kForm>
struct BroadcastSource {
  static_assert(kForm != Form::product);
  static constexpr Form form = kForm;
  using value_type = T;
  const T* a;
  const T* b;
  const T* m;
  const Dims* dims;
  const Dims* m_strides;
  std::size_t offset = 0;
  friend BroadcastSource operator+(BroadcastSource p, std::size_t k) {
    p.offset += k;
    return p;
  }
  T operator[](std::size_t i) const {
    T v;
    fill_from(offset + i, &v, 1);
    return v;
  }
  void fill(T* out, std::size_t n) const { fill_from(offset, out, n); }
  /// The next n values as a ConstantRun when their broadcast value is one element of m (they lie
  /// in one run along the innermost dimension, where m repeats: an NCHW plane), else false.
  bool constant_run(std::size_t n, ConstantRun<T, kForm>& run) const {
    const std::size_t r = dims->size(), inner = (*dims)[r - 1];
    if ((*m_strides)[r - 1] != 0 || offset % inner + n > inner) return false;
    Dims idx(r, 0);
    index_of(offset, idx);
    run = run_at(offset, m[m_offset(idx)]);
    return true;
  }
  /// The values as ColumnRows of `inner` values from here on, when m is one value per column of
  /// them (m varies along the innermost dimension only, `inner` long, contiguously) and a row
  /// starts here; else false.
  bool column_rows(std::size_t inner, ColumnRows<T, kForm>& rows) const {
    const std::size_t r = dims->size();
    if ((*dims)[r - 1] != inner || (*m_strides)[r - 1] != 1 || offset % inner != 0) return false;
    for (std::size_t k = 0; k + 1 < r; ++k)
      if ((*m_strides)[k] != 0) return false;
    rows = {a + offset, kForm == Form::scaled ? nullptr : b + offset, m, inner};
    return true;
  }
  /// f(o, run) for the rows o in [lo, hi) of n values each (row o: the values from offset + o n
  /// on), each as a ConstantRun, when every row lies in one run along the innermost dimension
  /// where m repeats (n divides it: NCHW planes): m's element found once for row lo, then stepped
  /// row by row (the division per row costs as much as summing a 14x14 plane). False, calling
  /// nothing, otherwise.
  template <class F>
  bool for_constant_rows(std::size_t lo, std::size_t hi, std::size_t n, F&& f) const {
    const std::size_t r = dims->size(), inner = (*dims)[r - 1];
    if ((*m_strides)[r - 1] != 0 || n == 0 || inner % n != 0 || offset % n != 0) return false;
    Dims idx(r, 0);
    index_of(offset + lo * n, idx);
    for (std::size_t o = lo; o < hi; ++o) {
      f(o, run_at(offset + o * n, m[m_offset(idx)]));
      idx[r - 1] += n;
      for (std::size_t k = r - 1; k > 0 && idx[k] == (*dims)[k]; --k) idx[k] = 0, ++idx[k - 1];
    }
    return true;
  }

 private:
  // The multi-index of element e over dims, and m's element at a multi-index.
  void index_of(std::size_t e, Dims& idx) const {
    for (std::size_t k = dims->size(); k-- > 0;) idx[k] = e % (*dims)[k], e /= (*dims)[k];
  }
  std::size_t m_offset(const Dims& idx) const {
    std::size_t mo = 0;
    for (std::size_t k = 0; k < idx.size(); ++k) mo += idx[k] * (*m_strides)[k];
    return mo;
  }
  ConstantRun<T, kForm> run_at(std::size_t e, T mv) const {
    return {a + e, kForm == Form::scaled ? nullptr : b + e, mv};
  }
  // The values of run [0, len) from a, b (at element e) and m (mr, stride `step`; step 0 or 1 is
  // a loop the compiler vectorizes).
  static void form_run(const T* ar, const T* br, const T* mr, std::size_t step, T* out, std::size_t len) {
    const auto run = [&](auto m_at) {
      for (std::size_t j = 0; j < len; ++j) out[j] = form_value<kForm>(ar, br, j, m_at(j));
    };
    if (step == 0) {
      const T mv = *mr;
      run([mv](std::size_t) { return mv; });
    } else if (step == 1) {
      run([mr](std::size_t j) { return mr[j]; });
    } else {
      run([mr, step](std::size_t j) { return mr[j * step]; });
    }
  }
  // Elements [e, e + n): the multi-index found once, then runs along the innermost dimension.
  void fill_from(std::size_t e, T* out, std::size_t n) const {
    const std::size_t r = dims->size(), inner = (*dims)[r - 1], step = (*m_strides)[r - 1];
    Dims idx(r, 0);
    index_of(e, idx);
    while (n > 0) {
      const std::size_t len = std::min(n, inner - idx[r - 1]);
      form_run(a + e, kForm == Form::centered ? b + e : nullptr, m + m_offset(idx), step, out, len);
      e += len, out += len, n -= len;
      idx[r - 1] += len;
      for (std::size_t k = r - 1; k > 0 && idx[k] == (*dims)[k]; --k) idx[k] = 0, ++idx[k - 1];
    }
  }
};
template <class T>
using CenteredProducts = BroadcastSource<T, Form::centered>;
template <class T>
using ScaledValues = BroadcastSource<T, Form::scaled>;

/// A BroadcastSource (its values formed with a broadcast value; they sum as constant runs or
/// column rows where m allows).
template <class Src>
concept BroadcastFormed = requires { Src::form; typename Src::value_type; };

/// A source that writes its next n values into a buffer (fill): its values cost more to form one
/// at a time than in a loop (CenteredProducts: a per-channel value subtracted). The sums form each
/// leaf block's values into a buffer and sum that, in the same order: the same result.
template <class Src>
concept FillsBlocks = requires(const Src& s, std::remove_cvref_t<decltype(s[0])>* out, std::size_t n) { s.fill(out, n); };

}  // namespace kiln::kernels
