#pragma once
// Reader of the IDX format of (Fashion-)MNIST, gzip'd or not (inflated with zlib).
//
// IDX layout: a 4-byte magic number 0x00 0x00 <type> <ndims>, then ndims big-endian 32-bit
// dimensions, then the elements in row-major order. Only type 0x08 (unsigned byte) is read:
// magic 0x00000803 for images [n, rows, cols], 0x00000801 for labels [n]. Nothing may follow
// the elements. A gzip'd file is read to the end of its stream, so its CRC-32 and length trailer
// are checked; it may hold several gzip members but nothing after the last.
#include <cstdint>
#include <string>
#include <vector>

#include "framework/errors.hpp"

namespace kiln::data {

/// Thrown for every failure of read_idx/load_fashion_mnist; the message names the file.
/// An InvalidArgumentError (so a kiln::Error and a std::runtime_error).
class IdxError : public kiln::InvalidArgumentError {
 public:
  using kiln::InvalidArgumentError::InvalidArgumentError;
};

struct IdxArray {
  std::vector<std::int64_t> shape;  // dims from the header
  std::vector<std::uint8_t> data;   // product(shape) bytes, row-major
};

/// Reads an IDX file of unsigned bytes with any number of dims, compressed with gzip or not
/// (gzread passes plain files through). Throws IdxError when the file is missing (the message
/// names the Debian package dataset-fashion-mnist), cannot be read, has a wrong magic number
/// (expected and found values), is truncated (expected and found byte counts; a gzip stream cut
/// before its trailer), holds bytes after the elements or after the gzip stream, or is corrupt
/// gzip data (zlib's reason, e.g. "incorrect data check" for a CRC-32 that does not match).
/// Never allocates more than the file's data plus 1 MiB, whatever its header says.
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
