#include "framework/attr_codec.hpp"

#include <bit>
#include <cstring>
#include <limits>

namespace kiln {

// Every fixed-width value is copied byte for byte: the format is little-endian, as is the host.
static_assert(std::endian::native == std::endian::little, "graph files are little-endian");

namespace {
[[noreturn]] void bad(const std::string& what) { throw InvalidArgumentError(what); }

std::size_t element_width(DType t) {
  return visit_dtype(t, []<class T>() { return std::is_same_v<T, bool> ? std::size_t{1} : sizeof(T); });
}
}  // namespace

// ---------------------------------------------------------------- writer

void AttrWriter::u32(std::uint32_t v) { raw(&v, sizeof v); }
void AttrWriter::i64(std::int64_t v) { raw(&v, sizeof v); }
void AttrWriter::u64(std::uint64_t v) { raw(&v, sizeof v); }
void AttrWriter::operator()(double v) { u64(std::bit_cast<std::uint64_t>(v)); }

void AttrWriter::operator()(const std::string& v) {
  if (v.size() > std::numeric_limits<std::uint32_t>::max()) throw ValueError("string attribute too long");
  u32(static_cast<std::uint32_t>(v.size()));
  raw(v.data(), v.size());
}

void AttrWriter::operator()(const std::vector<int>& v) {
  u32(static_cast<std::uint32_t>(v.size()));
  for (int x : v) i64(x);
}

void AttrWriter::operator()(const std::vector<std::int64_t>& v) {
  u32(static_cast<std::uint32_t>(v.size()));
  for (std::int64_t x : v) i64(x);
}

void AttrWriter::operator()(const Shape& v) {
  const std::int32_t rank = v.rank();
  raw(&rank, sizeof rank);
  if (v.has_rank())
    for (std::int64_t d : v.dims()) i64(d);
}

void AttrWriter::operator()(const Array& v) {
  if (v.empty()) throw ValueError("cannot write an empty Array attribute");
  (*this)(v.dtype());
  (*this)(v.shape());
  visit_dtype(v.dtype(), [&]<class T>() {
    const auto& a = v.as<T>();
    if constexpr (std::is_same_v<T, bool>) {
      for (bool b : a) u8(b ? 1 : 0);
    } else {
      raw(a.data(), a.size() * sizeof(T));
    }
  });
}

void AttrWriter::operator()(const std::optional<detail::TensorRef>& v) {
  u8(v ? 1 : 0);
  if (v) (*this)(Tensor(*v).name());
}

// ---------------------------------------------------------------- reader

std::string_view AttrReader::take(std::size_t n) {
  if (n > remaining())
    bad("the data ends early (" + std::to_string(n) + " bytes needed, " + std::to_string(remaining()) + " left)");
  const std::string_view s = data_.substr(pos_, n);
  pos_ += n;
  return s;
}

std::uint8_t AttrReader::u8() { return static_cast<std::uint8_t>(take(1)[0]); }
std::uint32_t AttrReader::u32() {
  std::uint32_t v;
  std::memcpy(&v, take(sizeof v).data(), sizeof v);
  return v;
}
std::int64_t AttrReader::i64() {
  std::int64_t v;
  std::memcpy(&v, take(sizeof v).data(), sizeof v);
  return v;
}
std::uint64_t AttrReader::u64() {
  std::uint64_t v;
  std::memcpy(&v, take(sizeof v).data(), sizeof v);
  return v;
}
DType AttrReader::dtype() {
  const std::uint8_t t = u8();
  if (t >= kNumDTypes) bad("unknown dtype code " + std::to_string(t));
  return static_cast<DType>(t);
}

void AttrReader::operator()(bool& v) {
  const std::uint8_t b = u8();
  if (b > 1) bad("a boolean byte is " + std::to_string(b));
  v = b == 1;
}

void AttrReader::operator()(int& v) {
  const std::int64_t x = i64();
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
    bad("an int attribute is out of range: " + std::to_string(x));
  v = static_cast<int>(x);
}

void AttrReader::operator()(double& v) { v = std::bit_cast<double>(u64()); }

void AttrReader::operator()(std::string& v) {
  const std::uint32_t n = u32();
  v = std::string(take(n));
}

void AttrReader::operator()(std::vector<int>& v) {
  const std::uint32_t n = u32();
  if (n > remaining() / 8) bad("a list of " + std::to_string(n) + " values does not fit in the data");
  v.resize(n);
  for (int& x : v) (*this)(x);
}

void AttrReader::operator()(std::vector<std::int64_t>& v) {
  const std::uint32_t n = u32();
  if (n > remaining() / 8) bad("a list of " + std::to_string(n) + " values does not fit in the data");
  v.resize(n);
  for (std::int64_t& x : v) x = i64();
}

void AttrReader::operator()(Shape& v) {
  std::int32_t rank;
  std::memcpy(&rank, take(sizeof rank).data(), sizeof rank);
  if (rank < -1) bad("a shape has rank " + std::to_string(rank));
  if (rank == -1) {
    v = Shape::unknown();
    return;
  }
  if (static_cast<std::size_t>(rank) > remaining() / 8) bad("a shape of rank " + std::to_string(rank) + " does not fit");
  std::vector<std::int64_t> dims(static_cast<std::size_t>(rank));
  for (auto& d : dims) {
    d = i64();
    if (d < -1) bad("a shape has dimension " + std::to_string(d));
  }
  v = Shape(std::move(dims));
}

void AttrReader::operator()(Array& v) {
  const DType t = dtype();
  Shape s;
  (*this)(s);
  if (!s.is_fully_defined()) bad("an array value has the shape " + s.to_string());
  std::size_t count = 1;
  for (std::int64_t d : s.dims()) {
    if (d > 0 && count > remaining() / static_cast<std::size_t>(d)) bad("an array of shape " + s.to_string() + " does not fit");
    count *= static_cast<std::size_t>(d);
  }
  const std::string_view bytes = take(count * element_width(t));
  const std::vector<std::size_t> dims(s.dims().begin(), s.dims().end());
  v = visit_dtype(t, [&]<class T>() {
    xt::xarray<T> a = xt::xarray<T>::from_shape(dims);
    if constexpr (std::is_same_v<T, bool>) {
      for (std::size_t i = 0; i < count; ++i) {
        const auto b = static_cast<std::uint8_t>(bytes[i]);
        if (b > 1) bad("a boolean element is " + std::to_string(b));
        a.data()[i] = b == 1;
      }
    } else {
      if (count) std::memcpy(a.data(), bytes.data(), count * sizeof(T));
    }
    return Array(std::move(a));
  });
}

void AttrReader::operator()(std::optional<detail::TensorRef>& v) {
  if (u8() == 0) {
    v.reset();
    return;
  }
  std::string name;
  (*this)(name);
  if (!graph_) bad("a tensor reference ('" + name + "') with no graph to resolve it in");
  v = graph_->get_tensor_by_name(name).ref();
}

}  // namespace kiln
