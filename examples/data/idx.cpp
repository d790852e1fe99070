#include "examples/data/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

namespace kiln::data {

namespace {

constexpr const char* kPackageHint =
    "the Fashion-MNIST files come from the Debian package dataset-fashion-mnist "
    "(apt-get install dataset-fashion-mnist), which installs them in "
    "/usr/share/datasets/fashion-mnist";

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(v));
  return buf;
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to n bytes (gzread takes an unsigned count, so in chunks); returns how many were read,
// fewer only at the end of the data. A truncated gzip stream also ends the data early (zlib
// reports it as Z_BUF_ERROR, "unexpected end of file"); other zlib errors throw.
std::size_t read_bytes(gzFile file, std::uint8_t* out, std::size_t n, const std::string& path) {
  constexpr std::size_t kChunk = std::size_t{1} << 24;
  std::size_t got = 0;
  while (got < n) {
    const auto want = static_cast<unsigned>(std::min(kChunk, n - got));
    const int r = gzread(file, out + got, want);
    if (r < 0) {
      int code = Z_OK;
      const char* msg = gzerror(file, &code);
      throw IdxError("read_idx: '" + path + "': read error: " + (msg ? msg : "unknown zlib error"));
    }
    got += static_cast<std::size_t>(r);
    if (static_cast<unsigned>(r) < want) break;
  }
  return got;
}

std::string truncated(const std::string& path, const char* part, std::size_t expected,
                      std::size_t found, gzFile file) {
  std::string msg = "read_idx: '" + path + "' is truncated: expected " + std::to_string(expected) +
                    " bytes of " + part + ", found " + std::to_string(found);
  int code = Z_OK;
  gzerror(file, &code);
  if (code == Z_BUF_ERROR) msg += " (the gzip stream ends early)";
  return msg;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  return read_idx(path, -1);
}

IdxArray read_idx(const std::string& path, int expected_rank) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  if (!exists && !ec) {  // (when ec is set, e.g. permission denied, gzopen reports it below)
    throw IdxError("read_idx: '" + path + "' does not exist; " + kPackageHint);
  }
  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) {
    const int err = errno;
    throw IdxError("read_idx: cannot open '" + path +
                   "': " + (err != 0 ? std::strerror(err) : "out of memory"));
  }

  // Magic number: two zero bytes, the element type (0x08 = unsigned byte), the number of dims.
  std::array<std::uint8_t, 4> magic{};
  std::size_t got = read_bytes(file.get(), magic.data(), magic.size(), path);
  if (got < magic.size()) {
    throw IdxError(truncated(path, "header (magic number)", magic.size(), got, file.get()));
  }
  const std::uint32_t found = (std::uint32_t{magic[0]} << 24) | (std::uint32_t{magic[1]} << 16) |
                              (std::uint32_t{magic[2]} << 8) | std::uint32_t{magic[3]};
  const bool type_ok = magic[0] == 0 && magic[1] == 0 && magic[2] == 0x08;
  const bool rank_ok = expected_rank < 0 || magic[3] == expected_rank;
  if (!type_ok || !rank_ok) {
    const std::string expected =
        expected_rank >= 0 ? hex32(0x800u + static_cast<std::uint32_t>(expected_rank))
                           : std::string(
                                 "0x000008NN (unsigned bytes with NN dims, e.g. 0x00000803 for "
                                 "images or 0x00000801 for labels)");
    throw IdxError("read_idx: '" + path + "': wrong magic number: expected " + expected +
                   ", found " + hex32(found) +
                   (type_ok ? "" : " (not an IDX file of unsigned bytes)"));
  }

  // Dims: big-endian 32-bit each. Their product is the number of data bytes.
  const int rank = magic[3];
  std::vector<std::uint8_t> dims_raw(static_cast<std::size_t>(rank) * 4);
  got = read_bytes(file.get(), dims_raw.data(), dims_raw.size(), path);
  if (got < dims_raw.size()) {
    throw IdxError(truncated(path, "header (dimensions)", dims_raw.size(), got, file.get()));
  }
  IdxArray out;
  std::uint64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    const std::uint8_t* b = dims_raw.data() + 4 * d;
    const std::uint32_t dim = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) |
                              (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
    out.shape.push_back(dim);
    // Guard the product against overflow (2^48 bytes is far beyond any real IDX file).
    if (dim != 0 && total > (std::uint64_t{1} << 48) / dim) {
      throw IdxError("read_idx: '" + path + "': dimensions too large (corrupt header?)");
    }
    total *= dim;
  }

  // Data: grow the buffer as bytes arrive, so a corrupt header cannot allocate more than the
  // file holds (plus one chunk).
  constexpr std::size_t kStep = std::size_t{1} << 24;
  const auto expected = static_cast<std::size_t>(total);
  std::size_t have = 0;
  while (have < expected) {
    const std::size_t want = std::min(kStep, expected - have);
    out.data.resize(have + want);
    const std::size_t r = read_bytes(file.get(), out.data.data() + have, want, path);
    have += r;
    if (r < want) {
      throw IdxError(truncated(path, "data", expected, have, file.get()));
    }
  }
  return out;
}

Dataset load_fashion_mnist(const std::string& dir) {
  const std::filesystem::path base(dir);
  auto file = [&](const char* name) { return (base / name).string(); };
  Dataset d;
  const std::string train_images = file("train-images-idx3-ubyte.gz");
  const std::string train_labels = file("train-labels-idx1-ubyte.gz");
  const std::string test_images = file("t10k-images-idx3-ubyte.gz");
  const std::string test_labels = file("t10k-labels-idx1-ubyte.gz");
  d.train_images = read_idx(train_images, 3);
  d.train_labels = read_idx(train_labels, 1);
  d.test_images = read_idx(test_images, 3);
  d.test_labels = read_idx(test_labels, 1);
  auto check = [](const IdxArray& images, const std::string& ip, const IdxArray& labels,
                  const std::string& lp) {
    if (images.shape[0] != labels.shape[0]) {
      throw IdxError("load_fashion_mnist: '" + ip + "' holds " + std::to_string(images.shape[0]) +
                     " images but '" + lp + "' holds " + std::to_string(labels.shape[0]) +
                     " labels");
    }
  };
  check(d.train_images, train_images, d.train_labels, train_labels);
  check(d.test_images, test_images, d.test_labels, test_labels);
  return d;
}

}  // namespace kiln::data
