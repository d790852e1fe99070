#pragma once
// The entry functions of the fuzz targets (tests/fuzz/*_fuzz.cpp, built by scripts/fuzz.sh with
// clang -fsanitize=fuzzer,address,undefined) and of the corpus replay test that CI runs
// (tests/fuzz/corpus_replay_test.cpp). Each takes any bytes and either returns (the bytes were a
// valid file, and what was read is consistent) or throws a kiln::Error. Anything else (another
// exception, a sanitizer report, an abort from a broken invariant) is a bug in the reader.
#include <cstddef>
#include <cstdint>

namespace kiln::fuzz {

/// Parses `data` as a kiln checkpoint (optim/saver_format.hpp, versions 1 and 2). On success
/// checks that every entry's data size is its dims' product times its element size, and that
/// encoding the entries again and parsing that gives the same entries.
void checkpoint_entry(const std::uint8_t* data, std::size_t size);

/// Writes `data` to a per-process temporary file and reads it with data::read_idx. On success
/// checks that the data size is the product of the dims.
void idx_entry(const std::uint8_t* data, std::size_t size);

}  // namespace kiln::fuzz
