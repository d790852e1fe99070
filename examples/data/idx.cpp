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

// The bytes of an IDX file as stored: a gzip file (one or more members, RFC 1952) inflated with
// zlib, or, when the file does not begin with the gzip magic 1f 8b, the file's own bytes. zlib
// checks each member's CRC-32 and length trailer when inflate reaches it, so the caller reads until
// read() returns short (the end) and then calls finish(), which rejects a stream cut before its
// trailer and bytes after the last member. (gzread would skip such trailing bytes silently.)
class IdxSource {
 public:
  explicit IdxSource(const std::string& path) : path_(path) {
    errno = 0;
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) {
      const int err = errno;
      throw IdxError("read_idx: cannot open '" + path +
                     "': " + (err != 0 ? std::strerror(err) : "unknown error"));
    }
    refill();
    gzip_ = zs_.avail_in >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_ && inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK)  // 16: the gzip wrapper only
      throw IdxError("read_idx: '" + path + "': zlib could not start (out of memory)");
  }
  ~IdxSource() {
    if (gzip_) inflateEnd(&zs_);
  }
  IdxSource(const IdxSource&) = delete;
  IdxSource& operator=(const IdxSource&) = delete;

  /// Reads up to n bytes; fewer only at the end of the data (cut_short() tells whether the file
  /// ended inside a gzip member). Corrupt gzip data (a bad CRC-32 or length) throws IdxError.
  std::size_t read(std::uint8_t* out, std::size_t n) {
    std::size_t got = 0;
    while (got < n && !done_) {
      if (zs_.avail_in == 0) refill();
      if (!gzip_) {
        const std::size_t k = std::min<std::size_t>(n - got, zs_.avail_in);
        std::memcpy(out + got, zs_.next_in, k);
        zs_.next_in += k;
        zs_.avail_in -= static_cast<unsigned>(k);
        got += k;
        done_ = k == 0;
        continue;
      }
      // With no input left, inflate may still hold output (a match it could not finish writing);
      // only when it can make no progress at all (Z_BUF_ERROR with the file at its end) does the
      // file end inside a member (its trailer at the latest).
      zs_.next_out = out + got;
      zs_.avail_out = static_cast<unsigned>(std::min<std::size_t>(n - got, kInputSize));
      const unsigned before = zs_.avail_out;
      const int r = inflate(&zs_, Z_NO_FLUSH);
      got += before - zs_.avail_out;
      if (r == Z_STREAM_END) {
        next_member();
      } else if (r == Z_BUF_ERROR && zs_.avail_in == 0) {  // refilled just above and still empty
        cut_short_ = done_ = true;
      } else if (r != Z_OK && r != Z_BUF_ERROR) {
        throw IdxError("read_idx: '" + path_ + "': corrupt gzip data: " +
                       (zs_.msg ? zs_.msg : "zlib error " + std::to_string(r)));
      }
    }
    return got;
  }
  bool cut_short() const { return cut_short_; }

 private:
  static constexpr std::size_t kInputSize = std::size_t{1} << 16;

  void refill() {
    const std::size_t r = std::fread(in_.data(), 1, in_.size(), file_.get());
    if (r == 0 && std::ferror(file_.get()))
      throw IdxError("read_idx: '" + path_ + "': read error: " + std::strerror(errno));
    offset_ += r;
    zs_.next_in = in_.data();
    zs_.avail_in = static_cast<unsigned>(r);
  }
  // After a member's trailer checked out: the end of the file, or another member. Anything else
  // is trailing garbage.
  void next_member() {
    if (zs_.avail_in == 0) refill();
    if (zs_.avail_in == 0) {
      done_ = true;
      return;
    }
    if (zs_.avail_in == 1) {  // the second magic byte may be in the next block
      const std::uint8_t first = zs_.next_in[0];
      in_[0] = first;
      const std::size_t r = std::fread(in_.data() + 1, 1, in_.size() - 1, file_.get());
      offset_ += r;
      zs_.next_in = in_.data();
      zs_.avail_in = static_cast<unsigned>(r + 1);
    }
    const std::size_t at = offset_ - zs_.avail_in;
    if (zs_.avail_in < 2 || zs_.next_in[0] != 0x1f || zs_.next_in[1] != 0x8b)
      throw IdxError("read_idx: '" + path_ +
                     "': bytes that are not gzip data follow the gzip stream at offset " +
                     std::to_string(at));
    inflateReset(&zs_);
  }

  std::string path_;
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> file_;
  z_stream zs_{};
  std::array<std::uint8_t, kInputSize> in_{};
  std::size_t offset_ = 0;  // file bytes read so far
  bool gzip_ = false, done_ = false, cut_short_ = false;
};

std::string truncated(const std::string& path, const char* part, std::size_t expected,
                      std::size_t found, const IdxSource& source) {
  std::string msg = "read_idx: '" + path + "' is truncated: expected " + std::to_string(expected) +
                    " bytes of " + part + ", found " + std::to_string(found);
  if (source.cut_short()) msg += " (the gzip stream ends early)";
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
  IdxSource source(path);

  // Magic number: two zero bytes, the element type (0x08 = unsigned byte), the number of dims.
  std::array<std::uint8_t, 4> magic{};
  std::size_t got = source.read(magic.data(), magic.size());
  if (got < magic.size()) {
    throw IdxError(truncated(path, "header (magic number)", magic.size(), got, source));
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
  got = source.read(dims_raw.data(), dims_raw.size());
  if (got < dims_raw.size()) {
    throw IdxError(truncated(path, "header (dimensions)", dims_raw.size(), got, source));
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
  constexpr std::size_t kStep = std::size_t{1} << 20;
  const auto expected = static_cast<std::size_t>(total);
  std::size_t have = 0;
  while (have < expected) {
    const std::size_t want = std::min(kStep, expected - have);
    out.data.resize(have + want);
    const std::size_t r = source.read(out.data.data() + have, want);
    have += r;
    if (r < want) {
      throw IdxError(truncated(path, "data", expected, have, source));
    }
  }
  // Read on to the end: zlib checks the gzip trailer (CRC-32 and length) only when it gets there.
  std::uint8_t extra = 0;
  if (source.read(&extra, 1) != 0) {
    throw IdxError("read_idx: '" + path + "' holds more than the " + std::to_string(expected) +
                   " data bytes its header announces");
  }
  if (source.cut_short()) {
    throw IdxError("read_idx: '" + path +
                   "' is truncated: the gzip stream ends before its trailer (CRC-32 and length)");
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
