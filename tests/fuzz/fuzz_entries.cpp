#include "tests/fuzz/fuzz_entries.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "examples/data/idx.hpp"
#include "framework/errors.hpp"
#include "optim/saver_format.hpp"

namespace kiln::fuzz {

namespace {

// A broken invariant of a reader: abort, so that libFuzzer and the replay test both see it.
void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

std::uint64_t element_size(DType t) {
  return visit_dtype(t, []<class T>() { return sizeof(T); });
}

// A version 2 file with its index checksum recomputed: mutations of the index then reach the
// parser behind the checksum. nullopt when the bytes are too short to hold one.
std::optional<std::vector<std::uint8_t>> with_index_crc_fixed(const std::uint8_t* data,
                                                              std::size_t size) {
  constexpr std::size_t kHeader = 24;
  if (size < kHeader || data[8] != train::checkpoint::kVersion2) return std::nullopt;
  std::uint64_t index_nbytes = 0;
  std::memcpy(&index_nbytes, data + 16, sizeof index_nbytes);
  if (index_nbytes > size - kHeader || size - kHeader - index_nbytes < 4) return std::nullopt;
  std::vector<std::uint8_t> bytes(data, data + size);
  const std::size_t end = kHeader + static_cast<std::size_t>(index_nbytes);
  const std::uint32_t crc =
      train::checkpoint::crc32c(std::span<const std::uint8_t>(bytes).first(end));
  std::memcpy(bytes.data() + end, &crc, sizeof crc);
  return bytes;
}

void check_checkpoint(std::vector<std::uint8_t> input) {
  const train::checkpoint::CheckpointFile f =
      train::checkpoint::parse_checkpoint(std::move(input), "<fuzz input>");
  std::vector<train::checkpoint::EntryToWrite> again;
  for (const auto& e : f.entries) {
    std::uint64_t n = 1;
    for (auto d : e.dims) n *= static_cast<std::uint64_t>(d);
    require(e.data.size() == n * element_size(e.dtype), "entry size matches its shape");
    require(e.data.data() >= f.bytes.data() &&
                e.data.data() + e.data.size() <= f.bytes.data() + f.bytes.size(),
            "entry data lies inside the file");
    again.push_back({e.name, e.dtype, e.dims, e.data});
  }
  // Round trip through the version 2 writer.
  std::vector<std::uint8_t> bytes = train::checkpoint::encode_index(again);
  for (const auto& e : again) bytes.insert(bytes.end(), e.data.begin(), e.data.end());
  const auto g = train::checkpoint::parse_checkpoint(std::move(bytes), "<fuzz round trip>");
  require(g.entries.size() == f.entries.size(), "round trip keeps the entries");
  for (std::size_t i = 0; i < g.entries.size(); ++i) {
    const auto &a = f.entries[i], &b = g.entries[i];
    require(a.name == b.name && a.dtype == b.dtype && a.dims == b.dims &&
                std::equal(a.data.begin(), a.data.end(), b.data.begin(), b.data.end()),
            "round trip keeps each entry");
  }
}

}  // namespace

void checkpoint_entry(const std::uint8_t* data, std::size_t size) {
  if (auto fixed = with_index_crc_fixed(data, size)) {
    try {
      check_checkpoint(std::move(*fixed));
    } catch (const Error&) {
    }
  }
  check_checkpoint(std::vector<std::uint8_t>(data, data + size));
}

void idx_entry(const std::uint8_t* data, std::size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("kiln_fuzz_idx_" + std::to_string(::getpid())))
          .string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    require(static_cast<bool>(out.flush()), "the temporary IDX file is written");
  }
  struct Remove {
    ~Remove() { std::remove(path.c_str()); }
  } remove;
  const data::IdxArray a = data::read_idx(path);
  std::uint64_t n = 1;
  for (auto d : a.shape) n *= static_cast<std::uint64_t>(d);
  require(a.data.size() == n, "IDX data size matches its dims");
}

}  // namespace kiln::fuzz
