#pragma once
// Attribute codecs: how an op's typed attribute struct (Node::attrs, a std::any) is written to and
// read back from a graph file (framework/graph_io.hpp). Each op family declares the codec of its
// attribute struct beside the op's registration, with one field list serving both directions:
//
//   r.add({.type = "MatMul", ..., .attr_codec = attr_codec<MatMulOptions>([](auto& io, auto& a) {
//            io(a.transpose_a);
//            io(a.transpose_b);
//          })});
//
// The writer sees `const A&`, the reader `A&` (default-constructed first). An op built without
// attributes (an empty std::any) needs no codec; an op whose attributes have none cannot be
// written (write_graph throws UnimplementedError naming it; every op kiln registers that takes
// attributes has a codec).
//
// Encoding (little-endian, fixed widths; the file format around it is in graph_io.hpp):
//   bool, DType        1 byte
//   int, int64         8 bytes, two's complement (an int out of range on reading is an error)
//   double             8 bytes, IEEE 754 binary64 bit pattern
//   string             u32 length, then the bytes
//   vector<int|int64>  u32 count, then 8 bytes each
//   Shape              i32 rank (-1: unknown rank), then 8 bytes per dimension (-1: unknown)
//   Array              dtype, Shape, then the elements in row-major order at their own width
//                      (bool as one byte 0/1)
//   optional<TensorRef> 1 byte present, then the tensor's name (resolved on reading in the graph
//                      being imported, which already holds every op the file lists before this one)
//
// Errors: reading past the end of the data, or a value that does not decode (a bool byte other
// than 0/1, an unknown dtype, a negative size), throws InvalidArgumentError with a short message;
// graph_io adds the path and the op. Not thread-safe per object (each reader/writer is local).
#include <any>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/graph.hpp"

namespace kiln {

/// Appends encoded values to a byte string.
class AttrWriter {
 public:
  void operator()(bool v) { u8(v ? 1 : 0); }
  void operator()(int v) { i64(v); }
  void operator()(std::int64_t v) { i64(v); }
  void operator()(double v);
  void operator()(DType v) { u8(static_cast<std::uint8_t>(v)); }
  void operator()(const std::string& v);
  void operator()(const std::vector<int>& v);
  void operator()(const std::vector<std::int64_t>& v);
  void operator()(const Shape& v);
  void operator()(const Array& v);
  void operator()(const std::optional<detail::TensorRef>& v);

  void u8(std::uint8_t v) { bytes_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v);
  void i64(std::int64_t v);
  void u64(std::uint64_t v);
  void raw(const void* data, std::size_t n) { bytes_.append(static_cast<const char*>(data), n); }

  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

/// Decodes values from a byte range; `graph` resolves tensor references (may be null when the
/// data holds none).
class AttrReader {
 public:
  AttrReader(std::string_view data, const Graph* graph) : data_(data), graph_(graph) {}
  void operator()(bool& v);
  void operator()(int& v);
  void operator()(std::int64_t& v) { v = i64(); }
  void operator()(double& v);
  void operator()(DType& v) { v = dtype(); }
  void operator()(std::string& v);
  void operator()(std::vector<int>& v);
  void operator()(std::vector<std::int64_t>& v);
  void operator()(Shape& v);
  void operator()(Array& v);
  void operator()(std::optional<detail::TensorRef>& v);

  std::uint8_t u8();
  std::uint32_t u32();
  std::int64_t i64();
  std::uint64_t u64();
  DType dtype();
  /// The next n bytes; InvalidArgumentError when fewer are left.
  std::string_view take(std::size_t n);
  bool at_end() const { return pos_ == data_.size(); }
  std::size_t remaining() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  const Graph* graph_;
};

/// Writes and reads one attribute struct; empty for an op without a codec.
struct AttrCodec {
  std::function<void(const std::any& attrs, AttrWriter& w)> write;
  std::function<std::any(AttrReader& r)> read;
  explicit operator bool() const { return static_cast<bool>(write) && static_cast<bool>(read); }
};

/// The codec of attribute struct A from its field list `fields(io, a)` (see the header comment).
template <class A, class Fields>
AttrCodec attr_codec(Fields fields) {
  return {[fields](const std::any& attrs, AttrWriter& w) {
            const A* a = std::any_cast<A>(&attrs);
            if (!a) throw InternalError("attribute codec applied to attributes of another type");
            fields(w, *a);
          },
          [fields](AttrReader& r) {
            A a{};
            fields(r, a);
            return std::any(std::move(a));
          }};
}

}  // namespace kiln
