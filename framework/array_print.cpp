// operator<<(std::ostream&, const Array&): NumPy's repr (numpy/core/arrayprint.py, NumPy 2 with
// legacy printing off), always with shape and dtype:
//
//   array([[1. , 2.5, 3. ],
//          [4. , 5. , 6. ]], shape=(2, 3), dtype=float32)
//
// Arrays of more than 1000 elements show the first and last 3 entries of each axis longer than 6,
// with "..." between. Lines wrap at 75 characters. Floats use NumPy's 'maxprec' mode: each value in
// its shortest round-trip form for its own dtype, at most 8 fractional digits, the column aligned
// on the decimal point; scientific notation when the largest magnitude is >= 1e8, the smallest
// nonzero < 1e-4, or their ratio > 1e3.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "framework/array.hpp"

namespace kiln {

namespace {

constexpr std::size_t kThreshold = 1000, kEdgeItems = 3, kLineWidth = 75, kPrecision = 8;

const char* numpy_dtype(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::boolean: break;
  }
  return "bool";
}

// Shortest round-trip digits of v (fixed or scientific), rounded to kPrecision fractional digits
// when longer, trailing zeros trimmed (a "1." keeps its point; "1.e-05" likewise).
template <class T>
std::string shortest(T v, std::chars_format fmt) {
  char buf[128];
  std::string s(buf, std::to_chars(buf, buf + sizeof buf, v, fmt).ptr);
  const std::size_t dot = s.find('.'), e = s.find('e');
  const std::size_t frac_end = e == std::string::npos ? s.size() : e;
  if (dot != std::string::npos && frac_end - dot - 1 > kPrecision) {
    s.assign(buf, std::to_chars(buf, buf + sizeof buf, v, fmt, static_cast<int>(kPrecision)).ptr);
    const std::size_t e2 = s.find('e');
    std::string mant = s.substr(0, e2), exp = e2 == std::string::npos ? "" : s.substr(e2);
    while (mant.back() == '0') mant.pop_back();
    s = mant + exp;
  }
  if (s.find('.') == std::string::npos) {
    const std::size_t at = s.find('e');
    s.insert(at == std::string::npos ? s.size() : at, ".");
  }
  return s;
}

// Formats the shown values of one dtype into equal-width strings (NumPy's FloatingFormat,
// IntegerFormat, BoolFormat).
template <class T>
std::vector<std::string> format_all(const std::vector<T>& vals, [[maybe_unused]] bool scalar) {
  std::vector<std::string> out;
  if constexpr (std::is_same_v<T, bool>) {
    for (bool b : vals) out.push_back(b ? (scalar ? "True" : " True") : "False");
    return out;
  } else if constexpr (std::is_integral_v<T>) {
    std::size_t w = 0;
    for (T v : vals) w = std::max(w, std::to_string(v).size());
    for (T v : vals) {
      const std::string s = std::to_string(v);
      out.push_back(std::string(w - s.size(), ' ') + s);
    }
    return out;
  } else {
    double max_abs = 0, min_abs = INFINITY;
    bool neg_inf = false;
    for (T v : vals) {
      if (!std::isfinite(v)) {
        neg_inf = neg_inf || (std::isinf(v) && v < 0);
        continue;
      }
      const double a = std::abs(static_cast<double>(v));
      if (a == 0) continue;
      max_abs = std::max(max_abs, a);
      min_abs = std::min(min_abs, a);
    }
    const bool sci = min_abs != INFINITY && (max_abs >= 1e8 || min_abs < 1e-4 || max_abs / min_abs > 1e3);
    // Split each finite value into integer part, fraction digits and exponent.
    struct Parts {
      std::string integer, frac, exp;
    };
    std::vector<Parts> parts(vals.size());
    std::size_t pad_left = 0, pad_right = 0, exp_digits = 0;
    for (std::size_t i = 0; i < vals.size(); ++i) {
      if (!std::isfinite(vals[i])) continue;
      const std::string s = shortest(vals[i], sci ? std::chars_format::scientific : std::chars_format::fixed);
      const std::size_t dot = s.find('.'), e = s.find('e');
      Parts& p = parts[i];
      p.integer = s.substr(0, dot);
      p.frac = s.substr(dot + 1, e == std::string::npos ? std::string::npos : e - dot - 1);
      if (e != std::string::npos) p.exp = s.substr(e + 1);  // sign and digits, e.g. "-05"
      pad_left = std::max(pad_left, p.integer.size());
      pad_right = std::max(pad_right, p.frac.size());
      exp_digits = std::max(exp_digits, p.exp.empty() ? 0 : p.exp.size() - 1);
    }
    // Every entry has the width of a finite one: integer part, point, the rest. Non-finite entries
    // are right-aligned to it and may widen the integer part ("-inf").
    const std::size_t right = pad_right + (sci ? exp_digits + 2 : 0);
    if (std::any_of(vals.begin(), vals.end(), [](T v) { return !std::isfinite(v); }))
      pad_left = std::max(pad_left + right + 1, std::size_t{3} + (neg_inf ? 1 : 0)) - right - 1;
    const std::size_t width = pad_left + 1 + right;
    for (std::size_t i = 0; i < vals.size(); ++i) {
      const T v = vals[i];
      std::string s;
      if (!std::isfinite(v)) {
        s = std::isnan(v) ? "nan" : v < 0 ? "-inf" : "inf";
        out.push_back(std::string(width > s.size() ? width - s.size() : 0, ' ') + s);
        continue;
      }
      const Parts& p = parts[i];
      s = std::string(pad_left - p.integer.size(), ' ') + p.integer + "." + p.frac;
      if (sci) {  // scientific: every mantissa gets the same number of digits, zero-filled
        s += std::string(pad_right - p.frac.size(), '0') + "e" + p.exp.substr(0, 1) +
             std::string(exp_digits - (p.exp.size() - 1), '0') + p.exp.substr(1);
      } else {
        s += std::string(pad_right - p.frac.size(), ' ');
      }
      out.push_back(s);
    }
    return out;
  }
}

// The indices shown along an axis of length n (all, or the first and last kEdgeItems; npos marks
// the "..." between them).
std::vector<std::size_t> shown(std::size_t n, bool summarize) {
  std::vector<std::size_t> idx;
  if (summarize && n > 2 * kEdgeItems) {
    for (std::size_t i = 0; i < kEdgeItems; ++i) idx.push_back(i);
    idx.push_back(std::string::npos);
    for (std::size_t i = n - kEdgeItems; i < n; ++i) idx.push_back(i);
  } else {
    for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
  }
  return idx;
}

struct Printer {
  const std::vector<std::size_t>& dims;
  bool summarize;
  const std::vector<std::string>& words;  // formatted shown elements, in row-major order
  std::size_t next = 0;

  // NumPy's _extendLine: wrap before a word that would pass the width, unless the line holds only
  // its indent.
  static void extend(std::string& s, std::string& line, const std::string& word, std::size_t width,
                     const std::string& indent) {
    if (line.size() + word.size() > width && line.size() > indent.size()) {
      while (!line.empty() && line.back() == ' ') line.pop_back();
      s += line + "\n";
      line = indent;
    }
    line += word;
  }

  // NumPy's _formatArray recurser.
  std::string format(std::size_t axis, const std::string& indent, std::size_t width) {
    if (axis == dims.size()) return words[next++];
    const std::string next_indent = indent + " ";
    const std::size_t axes_left = dims.size() - axis;
    const auto idx = shown(dims[axis], summarize);
    std::string s;
    if (axes_left == 1) {
      const std::size_t elem_width = width - 1;
      std::string line = indent;
      for (std::size_t k = 0; k < idx.size(); ++k) {
        const std::string word = idx[k] == std::string::npos ? "..." : format(axis + 1, next_indent, width - 1);
        extend(s, line, word, elem_width, indent);
        if (k + 1 < idx.size()) line += ", ";
      }
      s += line;
    } else {
      const std::string sep = "," + std::string(axes_left - 1, '\n');
      for (std::size_t k = 0; k < idx.size(); ++k) {
        s += indent + (idx[k] == std::string::npos ? "..." : format(axis + 1, next_indent, width - 1));
        if (k + 1 < idx.size()) s += sep;
      }
    }
    return "[" + s.substr(indent.size()) + "]";
  }
};

// Appends the shown elements of x (dims d) to out in row-major order.
template <class T>
void gather(const T* x, const std::vector<std::size_t>& d, std::size_t axis, bool summarize,
            std::vector<T>& out) {
  if (axis == d.size()) {
    out.push_back(*x);
    return;
  }
  std::size_t stride = 1;
  for (std::size_t k = axis + 1; k < d.size(); ++k) stride *= d[k];
  for (std::size_t i : shown(d[axis], summarize))
    if (i != std::string::npos) gather(x + i * stride, d, axis + 1, summarize, out);
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const Array& a) {
  if (a.empty()) return os << "Array(empty: the value of an Operation)";
  const Shape shape = a.shape();
  const std::vector<std::size_t> dims(shape.dims().begin(), shape.dims().end());
  const bool summarize = static_cast<std::size_t>(a.size()) > kThreshold;
  std::vector<std::string> words;
  visit_dtype(a.dtype(), [&]<class T>() {
    std::vector<T> vals;
    if (a.size() > 0) gather(a.view<T>().data(), dims, 0, summarize, vals);
    words = format_all(vals, dims.empty());
  });
  const std::string prefix = "array(";
  std::string body;
  if (a.size() == 0) {
    body = "[]";
  } else {
    Printer p{dims, summarize, words};
    body = p.format(0, std::string(prefix.size() + 1, ' '), kLineWidth - 1);
  }
  std::string shape_text = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) shape_text += ", ";
    shape_text += std::to_string(dims[i]);
  }
  shape_text += dims.size() == 1 ? ",)" : ")";
  const std::string head = prefix + body + ",";
  const std::string extra = "shape=" + shape_text + ", dtype=" + numpy_dtype(a.dtype()) + ")";
  const std::size_t last_line = head.size() - (head.rfind('\n') == std::string::npos ? 0 : head.rfind('\n') + 1);
  const std::string spacer = last_line + extra.size() + 1 > kLineWidth ? "\n" + std::string(prefix.size(), ' ') : " ";
  return os << head << spacer << extra;
}

}  // namespace kiln
