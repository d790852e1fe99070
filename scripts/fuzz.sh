#!/usr/bin/env bash
# Fuzzes the checkpoint reader (optim/saver_format.cpp) and the IDX reader (examples/data/idx.cpp)
# with libFuzzer (clang -fsanitize=fuzzer,address,undefined). Not part of CI: CI replays the
# committed corpus (tests/fuzz/corpus/) through the same entry functions (tests/fuzz/fuzz_entries.hpp)
# in the fuzz_corpus_test of the fast suite.
#
#   scripts/fuzz.sh                 both targets, FUZZ_SECONDS (default 120) each
#   scripts/fuzz.sh checkpoint      one target
#   scripts/fuzz.sh corpus          rewrite the seed files of tests/fuzz/corpus/ (make_corpus.cpp)
#
# Each run starts from tests/fuzz/corpus/<target> and adds what it finds to build-fuzz/corpus/<target>
# (scratch); a crash is written to build-fuzz/crashes/ and stops the run with a non-zero status.
# Keep a small, minimised crash input in tests/fuzz/corpus/<target>/ once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-fuzz
mkdir -p "$out/crashes"
CXX_FUZZ=${CXX_FUZZ:-clang++}
common=(-std=c++20 -g -O1 -I. -Wall -Wextra)
readers=(tests/fuzz/fuzz_entries.cpp optim/saver_format.cpp examples/data/idx.cpp)

if [ "${1:-}" = corpus ]; then
  "$CXX_FUZZ" "${common[@]}" tests/fuzz/make_corpus.cpp optim/saver_format.cpp -lz -o "$out/make_corpus"
  "$out/make_corpus" tests/fuzz/corpus
  exit 0
fi

targets=("${@:-checkpoint idx}")
read -r -a targets <<<"${targets[*]}"
for t in "${targets[@]}"; do
  "$CXX_FUZZ" "${common[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    "tests/fuzz/${t}_fuzz.cpp" "${readers[@]}" -lz -o "$out/${t}_fuzz"
  mkdir -p "$out/corpus/$t"
  echo "fuzz.sh: $t for ${FUZZ_SECONDS:-120} s"
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$out/${t}_fuzz" \
    -max_total_time="${FUZZ_SECONDS:-120}" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
    -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" "$out/corpus/$t" "tests/fuzz/corpus/$t"
done
