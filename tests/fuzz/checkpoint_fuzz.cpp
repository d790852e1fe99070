// libFuzzer target: the checkpoint reader (see tests/fuzz/fuzz_entries.hpp; built and run by
// scripts/fuzz.sh, not part of CI). A kiln::Error is the expected answer to bad bytes.
#include <cstddef>
#include <cstdint>

#include "framework/errors.hpp"
#include "tests/fuzz/fuzz_entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    kiln::fuzz::checkpoint_entry(data, size);
  } catch (const kiln::Error&) {
  }
  return 0;
}
