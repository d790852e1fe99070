#include "optim/saver_format.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <boost/crc.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "framework/errors.hpp"

namespace kiln::train::checkpoint {

static_assert(
    std::endian::native == std::endian::little,
    "kiln checkpoints store raw little-endian elements; add byte swapping for big-endian hosts");

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'C', 'K', 'P', 'T'};
constexpr std::size_t kHeaderV2 = 8 + 4 + 4 + 8;  // magic, version, count, index_nbytes

std::size_t element_size(DType t) {
  return visit_dtype(t, []<class T>() { return sizeof(T); });
}

std::string system_reason() {
  return std::strerror(errno);
}

// Reads little-endian fields from [pos, end) of a byte buffer. Every read is checked against the
// bytes that remain BEFORE anything is allocated or copied, so a corrupt length can never ask for
// more than the file holds; `region` names what is being read ("the index", "the file").
class Cursor {
 public:
  Cursor(std::span<const std::uint8_t> bytes, std::size_t base, const std::string& path,
         const char* region)
      : bytes_(bytes), base_(base), path_(path), region_(region) {}

  std::size_t remaining() const { return bytes_.size() - pos_; }
  std::size_t offset() const { return base_ + pos_; }

  template <class T>
  T get(const char* field) {
    T v{};
    std::memcpy(&v, take(sizeof(T), field).data(), sizeof(T));
    return v;
  }
  std::span<const std::uint8_t> take(std::uint64_t n, const char* field) {
    if (n > remaining())
      fail(std::string(field) + " at offset " + std::to_string(offset()) + " needs " +
           std::to_string(n) + " bytes but " + region_ + " has " + std::to_string(remaining()) +
           " left");
    const auto out = bytes_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return out;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw InvalidArgumentError("Checkpoint " + path_ + " is truncated or corrupt: " + what);
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t pos_ = 0;
  std::size_t base_;
  const std::string& path_;
  const char* region_;
};

// An entry's description (everything but its data): name, dtype, dims and the data size, which
// must equal the dims' product times the element size. Dims are read one by one after checking
// that `rank` of them fit in what is left, so a corrupt rank cannot allocate.
struct EntryHead {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> dims;
  std::uint64_t nbytes;
};

EntryHead read_entry_head(Cursor& c, std::uint32_t index) {
  EntryHead h;
  const auto name_len = c.get<std::uint32_t>("a name length");
  if (name_len == 0) c.fail("entry " + std::to_string(index) + " has an empty name");
  const auto name = c.take(name_len, "a name");
  h.name.assign(name.begin(), name.end());
  const std::string who = "entry '" + h.name + "'";
  const auto code = c.get<std::uint8_t>("a dtype");
  if (code >= kNumDTypes)
    c.fail(who + " has dtype code " + std::to_string(code) + " (0 to 4 are valid)");
  h.dtype = static_cast<DType>(code);
  const auto rank = c.get<std::uint32_t>("a rank");
  if (rank > c.remaining() / sizeof(std::int64_t))
    c.fail(who + " has rank " + std::to_string(rank) +
           ", more dimensions than the bytes left hold");
  h.dims.reserve(rank);
  // The element count, saturating: any product past the largest size_t cannot match a real size.
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t n = 1;
  bool overflow = false;
  for (std::uint32_t k = 0; k < rank; ++k) {
    const auto d = c.get<std::int64_t>("a dimension");
    if (d < 0) c.fail(who + " has a negative dimension " + std::to_string(d));
    h.dims.push_back(d);
    const auto ud = static_cast<std::uint64_t>(d);
    if (ud != 0 && n > kMax / ud) overflow = true;
    n *= ud;
  }
  const bool empty = std::find(h.dims.begin(), h.dims.end(), 0) != h.dims.end();
  const std::size_t esize = element_size(h.dtype);
  h.nbytes = c.get<std::uint64_t>("a data size");
  if (!empty && (overflow || n > kMax / esize || h.nbytes != n * esize))
    c.fail(who + " has a data size of " + std::to_string(h.nbytes) +
           " bytes that does not match its shape");
  if (empty && h.nbytes != 0)
    c.fail(who + " has no elements but a data size of " + std::to_string(h.nbytes));
  return h;
}

// Bool elements are bytes that must be 0 or 1 (any other byte is not a valid C++ bool).
void check_bools(const EntryHead& h, std::span<const std::uint8_t> data, const Cursor& c) {
  if (h.dtype != DType::boolean) return;
  for (auto b : data)
    if (b > 1)
      c.fail("entry '" + h.name + "' holds a bool byte " + std::to_string(b) +
             " (0 or 1 are valid)");
}

void add_entry(CheckpointFile& out, std::set<std::string>& names, EntryHead&& h,
               std::span<const std::uint8_t> data, const Cursor& c) {
  if (!names.insert(h.name).second) c.fail("the name '" + h.name + "' appears twice");
  check_bools(h, data, c);
  out.entries.push_back(EntryView{std::move(h.name), h.dtype, std::move(h.dims), data});
}

void parse_v1(CheckpointFile& out, Cursor& c, std::uint32_t count) {
  std::set<std::string> names;
  for (std::uint32_t e = 0; e < count; ++e) {
    EntryHead h = read_entry_head(c, e);
    const auto data = c.take(h.nbytes, "tensor data");
    add_entry(out, names, std::move(h), data, c);
  }
  if (c.remaining() != 0)
    c.fail(std::to_string(c.remaining()) + " bytes follow the last of the " +
           std::to_string(count) + " entries");
}

std::string hex32(std::uint32_t v) {
  char buf[12];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(v));
  return buf;
}

void parse_v2(CheckpointFile& out, Cursor& file, std::uint32_t count, const std::string& path) {
  const auto index_nbytes = file.get<std::uint64_t>("the index size");
  const auto index = file.take(index_nbytes, "the index");
  const auto stored_crc = file.get<std::uint32_t>("the index checksum");
  const std::span<const std::uint8_t> all(out.bytes);
  const std::uint32_t crc = crc32c(all.first(kHeaderV2 + index.size()));
  if (crc != stored_crc)
    throw InvalidArgumentError("Checkpoint " + path + " is corrupt: the checksum of its index is " +
                               hex32(crc) + ", the file says " + hex32(stored_crc));
  Cursor c(index, kHeaderV2, path, "the index");
  std::set<std::string> names;
  for (std::uint32_t e = 0; e < count; ++e) {
    EntryHead h = read_entry_head(c, e);
    const auto data_crc = c.get<std::uint32_t>("a data checksum");
    const auto data = file.take(h.nbytes, ("the data of entry '" + h.name + "'").c_str());
    const std::uint32_t got = crc32c(data);
    if (got != data_crc)
      throw InvalidArgumentError("Checkpoint " + path + " is corrupt: the data of tensor '" +
                                 h.name + "' has checksum " + hex32(got) + ", the index says " +
                                 hex32(data_crc));
    add_entry(out, names, std::move(h), data, c);
  }
  if (c.remaining() != 0)
    c.fail(std::to_string(c.remaining()) + " bytes of the index follow the last of the " +
           std::to_string(count) + " entries");
  if (file.remaining() != 0)
    file.fail(std::to_string(file.remaining()) + " bytes follow the data of the last entry");
}

template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

// Removes `path` on destruction unless released: a failed write never leaves its .tmp behind.
class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(std::string path) : path_(std::move(path)) {}
  ~RemoveOnFailure() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  RemoveOnFailure(const RemoveOnFailure&) = delete;
  RemoveOnFailure& operator=(const RemoveOnFailure&) = delete;
  void release() { path_.clear(); }

 private:
  std::string path_;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  /// close(2) can report a delayed write error: check it.
  int close() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

}  // namespace

std::uint32_t crc32c(std::span<const std::uint8_t> bytes) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

CheckpointFile parse_checkpoint(std::vector<std::uint8_t> bytes, const std::string& path) {
  CheckpointFile out;
  out.bytes = std::move(bytes);
  Cursor c(out.bytes, 0, path, "the file");
  if (out.bytes.size() < sizeof(kMagic) ||
      std::memcmp(out.bytes.data(), kMagic, sizeof(kMagic)) != 0)
    throw InvalidArgumentError("File " + path + " is not a kiln checkpoint");
  c.take(sizeof(kMagic), "the magic");
  out.version = c.get<std::uint32_t>("the format version");
  if (out.version != kVersion1 && out.version != kVersion2)
    throw InvalidArgumentError("Checkpoint " + path + " has format version " +
                               std::to_string(out.version) + ", this kiln reads versions 1 and 2");
  const auto count = c.get<std::uint32_t>("the entry count");
  if (out.version == kVersion1)
    parse_v1(out, c, count);
  else
    parse_v2(out, c, count, path);
  return out;
}

CheckpointFile read_checkpoint(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0)
    throw NotFoundError("Unable to open checkpoint file " + path + ": " + system_reason());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw NotFoundError("Unable to open checkpoint file " + path + ": not a regular file");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      throw NotFoundError("Unable to read checkpoint file " + path + ": " + system_reason());
    if (r == 0) break;  // the file shrank while being read: parsed as truncated
    got += static_cast<std::size_t>(r);
  }
  bytes.resize(got);
  return parse_checkpoint(std::move(bytes), path);
}

std::vector<std::uint8_t> encode_index(const std::vector<EntryToWrite>& entries) {
  std::vector<std::uint8_t> index;
  std::set<std::string> names;
  for (const auto& e : entries) {
    if (e.name.empty() || !names.insert(e.name).second)
      throw ValueError("Checkpoint entry names must be unique and non-empty: '" + e.name + "'");
    std::uint64_t n = 1;
    for (auto d : e.dims) n *= static_cast<std::uint64_t>(d);
    if (n * element_size(e.dtype) != e.data.size())
      throw ValueError("Checkpoint entry '" + e.name + "': " + std::to_string(e.data.size()) +
                       " data bytes do not match its shape");
    put<std::uint32_t>(index, static_cast<std::uint32_t>(e.name.size()));
    index.insert(index.end(), e.name.begin(), e.name.end());
    put<std::uint8_t>(index, static_cast<std::uint8_t>(e.dtype));
    put<std::uint32_t>(index, static_cast<std::uint32_t>(e.dims.size()));
    for (auto d : e.dims) put<std::int64_t>(index, d);
    put<std::uint64_t>(index, e.data.size());
    put<std::uint32_t>(index, crc32c(e.data));
  }
  std::vector<std::uint8_t> out(kMagic, kMagic + sizeof(kMagic));
  put<std::uint32_t>(out, kVersion2);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(entries.size()));
  put<std::uint64_t>(out, index.size());
  out.insert(out.end(), index.begin(), index.end());
  put<std::uint32_t>(out, crc32c(out));
  return out;
}

void write_checkpoint(const std::string& path, const std::vector<EntryToWrite>& entries) {
  const std::vector<std::uint8_t> index = encode_index(entries);
  std::vector<std::span<const std::uint8_t>> chunks{index};
  for (const auto& e : entries) chunks.push_back(e.data);
  write_file_durably(path, chunks);
}

void write_file_durably(const std::string& path,
                        const std::vector<std::span<const std::uint8_t>>& chunks) {
  const std::string tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0)
    throw NotFoundError("Saver::save: cannot open " + tmp + " for writing: " + system_reason());
  RemoveOnFailure guard(tmp);
  for (auto chunk : chunks) {
    while (!chunk.empty()) {
      const ssize_t w = ::write(fd.get(), chunk.data(), chunk.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) throw NotFoundError("Saver::save: failed writing " + tmp + ": " + system_reason());
      chunk = chunk.subspan(static_cast<std::size_t>(w));
    }
  }
  if (::fsync(fd.get()) != 0)
    throw NotFoundError("Saver::save: cannot fsync " + tmp + ": " + system_reason());
  if (fd.close() != 0)
    throw NotFoundError("Saver::save: failed closing " + tmp + ": " + system_reason());
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw NotFoundError("Saver::save: cannot rename " + tmp + " to " + path + ": " +
                        system_reason());
  guard.release();
  // The rename is durable once the directory holding both names is on disk.
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0 || ::fsync(dfd.get()) != 0)
    throw NotFoundError("Saver::save: cannot fsync the directory " + dir + " of " + path + ": " +
                        system_reason());
}

}  // namespace kiln::train::checkpoint
