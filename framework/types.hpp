#pragma once
// Element types and (partially known) shapes.
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

enum class DType : std::uint8_t { float32, float64, int32, int64, boolean };
inline constexpr DType float32 = DType::float32;
inline constexpr DType float64 = DType::float64;
inline constexpr DType int32 = DType::int32;
inline constexpr DType int64 = DType::int64;
inline constexpr DType boolean = DType::boolean;
inline constexpr int kNumDTypes = 5;

/// TF's names: "float", "double", "int32", "int64", "bool".
const char* dtype_name(DType t);
/// Bytes per element (sizeof of the C++ type).
std::size_t dtype_size(DType t);
bool is_floating(DType t);
bool is_integer(DType t);
std::ostream& operator<<(std::ostream& os, DType t);

/// The DType of a C++ element type (float, double, int32_t, int64_t, bool).
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return float32; }
template <>
constexpr DType dtype_of<double>() { return float64; }
template <>
constexpr DType dtype_of<std::int32_t>() { return int32; }
template <>
constexpr DType dtype_of<std::int64_t>() { return int64; }
template <>
constexpr DType dtype_of<bool>() { return boolean; }

/// Calls f.template operator()<T>() with the C++ type of `t`.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::float32: return f.template operator()<float>();
    case DType::float64: return f.template operator()<double>();
    case DType::int32: return f.template operator()<std::int32_t>();
    case DType::int64: return f.template operator()<std::int64_t>();
    case DType::boolean: break;
  }
  return f.template operator()<bool>();
}

/// Elements of an array of `dims` (each >= 0) and bytes at `element_bytes` each; nullopt when either
/// count exceeds INT64_MAX. The one overflow check behind Shape and make_array.
std::optional<std::int64_t> checked_num_elements(const std::vector<std::int64_t>& dims,
                                                 std::size_t element_bytes = 1);

/// A shape whose rank and dimensions may be unknown. -1 is an unknown dimension. A shape whose known
/// dimensions multiply past INT64_MAX elements cannot be made: its constructor throws ValueError
/// naming the dimensions.
class Shape {
 public:
  Shape() : dims_(std::vector<std::int64_t>{}) {}  // scalar
  Shape(std::initializer_list<std::int64_t> dims) : Shape(std::vector<std::int64_t>(dims)) {}
  explicit Shape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) { check_size(); }
  static Shape unknown() {
    Shape s;
    s.dims_.reset();
    return s;
  }
  static Shape unknown_of_rank(int rank) { return Shape(std::vector<std::int64_t>(rank, -1)); }

  bool has_rank() const { return dims_.has_value(); }
  /// -1 when the rank is unknown.
  int rank() const { return dims_ ? static_cast<int>(dims_->size()) : -1; }
  /// Dimension i (negative counts from the end); -1 when unknown. Requires a known rank.
  std::int64_t operator[](int i) const;
  const std::vector<std::int64_t>& dims() const;
  bool is_fully_defined() const;
  /// Product of the dimensions, -1 if any is unknown.
  std::int64_t num_elements() const;
  /// Bytes of an array of this shape and dtype t, -1 if any dimension is unknown; ValueError naming
  /// the shape and dtype when the count exceeds INT64_MAX.
  std::int64_t num_bytes(DType t) const;
  /// True when some fully defined shape could match both.
  bool is_compatible_with(const Shape& other) const;
  /// The most specific shape compatible with both (throws ValueError when incompatible).
  Shape merge_with(const Shape& other) const;
  std::string to_string() const;  // "[?,28,28,1]" or "<unknown>"

  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  void check_size() const;
  std::optional<std::vector<std::int64_t>> dims_;
};
std::ostream& operator<<(std::ostream& os, const Shape& s);

/// NumPy broadcasting of two static shapes; throws ValueError naming both when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace kiln
