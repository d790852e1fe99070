#pragma once
// The bytes of a kiln checkpoint file: reading (versions 1 and 2, every length checked against the
// file before anything is allocated, every checksum verified) and writing (version 2, durably).
// train::Saver (optim/saver.hpp) maps variables to these entries; this layer knows only bytes,
// names, dtypes and dims, so the fuzz target (tests/fuzz/) can drive it without a graph.
//
// Version 2, all integers little-endian, no padding:
//   header      magic "KILNCKPT" (8 bytes), version u32 = 2, count u32, index_nbytes u64
//   index       index_nbytes bytes; per entry, in the Saver's var_list order:
//                 name_len u32, name bytes (the variable's op name, non-empty, unique)
//                 dtype u8 (kiln::DType's values: 0 float32, 1 float64, 2 int32, 3 int64, 4 bool)
//                 rank u32, then rank x i64 dimensions (>= 0)
//                 nbytes u64 (elements x element size), data_crc u32 (CRC32C of the data bytes)
//   index_crc   u32: CRC32C of the header and the index
//   data        every entry's elements in index order, row-major (bool: one byte, 0 or 1)
// and nothing after: the file's size is exactly 24 + index_nbytes + 4 + the sum of the nbytes.
// CRC32C is the Castagnoli CRC (polynomial 0x1EDC6F41, reflected, init and final xor 0xFFFFFFFF;
// crc32c("123456789") = 0xE3069283), the checksum TF's checkpoints carry per tensor.
//
// Version 1 (kiln before format 2): magic, version u32 = 1, count u32, then per entry name_len,
// name, dtype, rank, dims, nbytes as above followed directly by the data. No checksums: a flipped
// data bit in a version 1 file cannot be detected.
//
// Errors (every message names the path): a file that cannot be opened or is not a regular file:
// NotFoundError; not a kiln checkpoint, an unknown version, a length, rank, dimension or size that
// runs past the file, a bad dtype, a bool byte other than 0/1, a duplicate or empty name, bytes
// after the last entry, or a checksum that does not match: InvalidArgumentError (a data checksum
// error also names the tensor). Nothing is allocated beyond the file's own size.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "framework/types.hpp"

namespace kiln::train::checkpoint {

inline constexpr std::uint32_t kVersion1 = 1;
inline constexpr std::uint32_t kVersion2 = 2;

/// CRC32C (Castagnoli) of `bytes`. Boost.CRC behind this one seam.
std::uint32_t crc32c(std::span<const std::uint8_t> bytes);

/// One tensor of a checkpoint: `data` views the file's bytes (ReadCheckpoint::bytes).
struct EntryView {
  std::string name;
  DType dtype = DType::float32;
  std::vector<std::int64_t> dims;
  std::span<const std::uint8_t> data;  // dims' product x element size bytes, already verified
};

/// A checkpoint file read whole and verified. Move-only in spirit: `entries` view `bytes`.
struct CheckpointFile {
  std::uint32_t version = 0;
  std::vector<std::uint8_t> bytes;
  std::vector<EntryView> entries;

  CheckpointFile() = default;
  CheckpointFile(const CheckpointFile&) = delete;
  CheckpointFile& operator=(const CheckpointFile&) = delete;
  CheckpointFile(CheckpointFile&&) = default;
  CheckpointFile& operator=(CheckpointFile&&) = default;
};

/// Reads and verifies the checkpoint at `path` (version 1 or 2). Throws as listed above.
CheckpointFile read_checkpoint(const std::string& path);
/// Verifies `bytes` as the contents of a checkpoint named `path` (used in messages only).
CheckpointFile parse_checkpoint(std::vector<std::uint8_t> bytes, const std::string& path);

/// One tensor to write: `data` holds product(dims) x element size bytes (bool as 0/1 bytes).
struct EntryToWrite {
  std::string name;
  DType dtype = DType::float32;
  std::vector<std::int64_t> dims;
  std::span<const std::uint8_t> data;
};

/// The version 2 header, index and index checksum of `entries`: the file is these bytes followed
/// by each entry's data in order. ValueError for an empty or repeated name or a data size that is
/// not the dims' product x element size.
std::vector<std::uint8_t> encode_index(const std::vector<EntryToWrite>& entries);
/// Writes `entries` as a version 2 checkpoint at `path` through write_file_durably.
void write_checkpoint(const std::string& path, const std::vector<EntryToWrite>& entries);

/// Writes `chunks` to `path` so that a crash at any point leaves either the old file or the new
/// one: the bytes go to "<path>.tmp" (replacing a stale one), which is fsync'ed, renamed over
/// `path`, and the directory fsync'ed so the rename itself is durable. On any failure the .tmp
/// is removed and NotFoundError names the path and the system's reason.
void write_file_durably(const std::string& path,
                        const std::vector<std::span<const std::uint8_t>>& chunks);

}  // namespace kiln::train::checkpoint
