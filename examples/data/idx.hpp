#pragma once
// Reader of the IDX format of (Fashion-)MNIST, gzip'd or not (through zlib).
//
// IDX layout: a 4-byte magic number 0x00 0x00 <type> <ndims>, then ndims big-endian 32-bit
// dimensions, then the elements in row-major order. Only type 0x08 (unsigned byte) is read:
// magic 0x00000803 for images [n, rows, cols], 0x00000801 for labels [n]. Bytes after the
// elements are ignored.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::data {

/// Thrown for every failure of read_idx/load_fashion_mnist; the message names the file.
class IdxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct IdxArray {
  std::vector<std::int64_t> shape;  // dims from the header
  std::vector<std::uint8_t> data;   // product(shape) bytes, row-major
};

/// Reads an IDX file of unsigned bytes with any number of dims, compressed with gzip or not
/// (gzread passes plain files through). Throws IdxError when the file is missing (the message
/// names the Debian package dataset-fashion-mnist), cannot be read, has a wrong magic number
/// (expected and found values), or is truncated (expected and found byte counts).
IdxArray read_idx(const std::string& path);
/// Same, but requires exactly `expected_rank` dims (magic 0x000008<rank>).
IdxArray read_idx(const std::string& path, int expected_rank);

/// Where the Debian package dataset-fashion-mnist installs the four files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct Dataset {
  IdxArray train_images, train_labels;  // [60000, 28, 28], [60000]
  IdxArray test_images, test_labels;    // [10000, 28, 28], [10000]
};

/// Loads train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
/// t10k-labels-idx1-ubyte.gz from `dir`. Images must have 3 dims and labels 1, and each split's
/// image and label counts must agree (IdxError otherwise).
Dataset load_fashion_mnist(const std::string& dir = kFashionMnistDir);

}  // namespace kiln::data
