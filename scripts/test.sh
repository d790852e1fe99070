#!/usr/bin/env bash
# Set up, build, and run every test: the release build (g++; with the allocation count of a
# steady-state run, which replaces malloc and so runs in no sanitizer build), the test suite again under
# ASan + UBSan (clang, UBSan fatal), and the concurrency tests under ThreadSanitizer (clang).
# Ends with `tests: N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh || exit 1
if [ ! -f build-asan/build.ninja ]; then
  CXX=clang++ meson setup build-asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false -Dcpp_args=-fno-sanitize-recover=all -Dwerror=true >/dev/null || exit 1
fi
# Under the sanitizers only the test programs are built (not the examples and benchmarks).
ninja -C build-asan -j"$(nproc)" tests/kiln_tests tests/kiln_concurrency_tests tests/fuzz_corpus_test \
  tests/mpi_launcher_test tests/mpi_program tests/pool_exit_program || exit 1
# ThreadSanitizer (clang) for the concurrency tests: the library, that test program and the
# program it starts.
if [ ! -f build-tsan/build.ninja ]; then
  CXX=clang++ meson setup build-tsan -Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false \
    -Dwerror=true >/dev/null || exit 1
fi
ninja -C build-tsan -j"$(nproc)" tests/kiln_concurrency_tests tests/pool_exit_program || exit 1

log=$(mktemp)
status=0
meson test -C build -v --suite fast --suite slow --suite alloc >"$log" 2>&1 || status=1
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan -v --no-rebuild --suite fast >>"$log" 2>&1 || status=1
OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  meson test -C build-tsan -v --no-rebuild kiln_concurrency_tests >>"$log" 2>&1 || status=1
# `meson install` gives headers, the library and a pkg-config file a program can build against.
inst=$(mktemp -d)
if meson install -C build --destdir "$inst" --no-rebuild --quiet >>"$log" 2>&1; then
  pc=$(find "$inst" -name kiln.pc | head -n1)
  prefix="$inst/usr/local"
  if [ -n "$pc" ] && c++ -std=c++20 -fsyntax-only $(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$prefix" --cflags kiln) \
      examples/linear_regression.cpp >>"$log" 2>&1; then
    echo "install: headers, library and kiln.pc usable"
  else
    echo "install: FAILED to build against the installed tree"; status=1
  fi
else
  echo "install: meson install FAILED"; status=1
fi
rm -rf "$inst"
grep -E '^\[doctest\] (test cases|Status)|FAILED|ERROR|Sanitizer|runtime error' "$log" | head -200
[ $status -eq 0 ] || tail -n 60 "$log"
passed=$(grep -E '^\[doctest\] test cases:' "$log" | awk -F'|' '{gsub(/[^0-9]/,"",$2); s+=$2} END {print s+0}')
failed=$(grep -E '^\[doctest\] test cases:' "$log" | awk -F'|' '{gsub(/[^0-9]/,"",$3); s+=$3} END {print s+0}')
rm -f "$log"
echo "tests: ${passed} passed, ${failed} failed"
exit $status
