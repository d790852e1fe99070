#include "framework/types.hpp"

#include <algorithm>
#include <ostream>

#include "framework/errors.hpp"

namespace kiln {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float";
    case DType::float64: return "double";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::boolean: return "bool";
  }
  return "?";
}
std::size_t dtype_size(DType t) {
  return visit_dtype(t, []<class T>() { return sizeof(T); });
}
bool is_floating(DType t) { return t == float32 || t == float64; }
bool is_integer(DType t) { return t == int32 || t == int64; }
std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

std::int64_t Shape::operator[](int i) const {
  const auto& d = dims();
  const int r = static_cast<int>(d.size());
  if (i < 0) i += r;
  if (i < 0 || i >= r)
    throw ValueError("Shape index " + std::to_string(i) + " out of range for " + to_string());
  return d[static_cast<std::size_t>(i)];
}

const std::vector<std::int64_t>& Shape::dims() const {
  if (!dims_) throw ValueError("Shape has unknown rank");
  return *dims_;
}

bool Shape::is_fully_defined() const {
  return dims_ && std::all_of(dims_->begin(), dims_->end(), [](auto d) { return d >= 0; });
}

std::optional<std::int64_t> checked_num_elements(const std::vector<std::int64_t>& dims,
                                                 std::size_t element_bytes) {
  // An empty dimension makes everything 0, however large the others.
  if (std::find(dims.begin(), dims.end(), 0) != dims.end()) return 0;
  std::int64_t n = 1, bytes = 0;
  for (auto d : dims)
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  if (__builtin_mul_overflow(n, static_cast<std::int64_t>(element_bytes), &bytes)) return std::nullopt;
  return n;
}

// The known dimensions' product (no allocation: every Array::shape() comes through here).
void Shape::check_size() const {
  std::int64_t n = 1;
  bool overflow = false;
  for (auto d : *dims_) {
    if (d == 0) return;
    if (d > 0) overflow = overflow || __builtin_mul_overflow(n, d, &n);
  }
  if (overflow)
    throw ValueError("Shape " + to_string() + " has more elements than int64 can count (2^63 - 1)");
}

std::int64_t Shape::num_elements() const {
  if (!is_fully_defined()) return -1;
  return *checked_num_elements(*dims_);
}

std::int64_t Shape::num_bytes(DType t) const {
  if (!is_fully_defined()) return -1;
  const auto n = checked_num_elements(*dims_, dtype_size(t));
  if (!n)
    throw ValueError("Shape " + to_string() + " of " + dtype_name(t) + " (" +
                     std::to_string(dtype_size(t)) + " bytes each) needs more than 2^63 - 1 bytes");
  return *n * static_cast<std::int64_t>(dtype_size(t));
}

bool Shape::is_compatible_with(const Shape& other) const {
  if (!dims_ || !other.dims_) return true;
  if (dims_->size() != other.dims_->size()) return false;
  for (std::size_t i = 0; i < dims_->size(); ++i) {
    auto a = (*dims_)[i], b = (*other.dims_)[i];
    if (a >= 0 && b >= 0 && a != b) return false;
  }
  return true;
}

Shape Shape::merge_with(const Shape& other) const {
  if (!is_compatible_with(other))
    throw ValueError("Shapes " + to_string() + " and " + other.to_string() + " are incompatible");
  if (!dims_) return other;
  if (!other.dims_) return *this;
  std::vector<std::int64_t> d(*dims_);
  for (std::size_t i = 0; i < d.size(); ++i)
    if (d[i] < 0) d[i] = (*other.dims_)[i];
  return Shape(d);
}

std::string Shape::to_string() const {
  if (!dims_) return "<unknown>";
  std::string s = "[";
  for (std::size_t i = 0; i < dims_->size(); ++i) {
    if (i) s += ",";
    s += (*dims_)[i] < 0 ? "?" : std::to_string((*dims_)[i]);
  }
  return s + "]";
}

std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.to_string(); }

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  if (!a.has_rank() || !b.has_rank()) return Shape::unknown();
  const auto& da = a.dims();
  const auto& db = b.dims();
  const std::size_t r = std::max(da.size(), db.size());
  std::vector<std::int64_t> out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const std::int64_t x = i < r - da.size() ? 1 : da[i - (r - da.size())];
    const std::int64_t y = i < r - db.size() ? 1 : db[i - (r - db.size())];
    if (x == 1) out[i] = y;
    else if (y == 1) out[i] = x;
    else if (x < 0 && y < 0) out[i] = -1;
    else if (x < 0) out[i] = y;
    else if (y < 0) out[i] = x;
    else if (x == y) out[i] = x;
    else
      throw ValueError("Dimensions must be equal, but are " + std::to_string(x) + " and " +
                       std::to_string(y) + " (shapes " + a.to_string() + " and " + b.to_string() +
                       " cannot be broadcast)");
  }
  return Shape(out);
}

}  // namespace kiln
