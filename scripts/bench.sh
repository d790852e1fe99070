#!/usr/bin/env bash
# Measures kiln against libtorch and oneDNN side by side (bench/README.md): installs what it needs,
# builds bench/ in its own build directory, runs every work item for kiln and each installed peer
# as separate fresh processes, interleaved (for each repetition, thread count and item: kiln, torch,
# dnnl), and prints one table; results.md, results.csv, table.txt and the raw lines go to the
# output directory.
#
#   bash scripts/bench.sh            # the full run (about 10 minutes on an idle 2-core machine)
#   bash scripts/bench.sh --quick    # a smoke run (about 2 minutes idle; Fashion-MNIST on a subset)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<EOF
usage: bash scripts/bench.sh [options]
  --quick             one repetition, short timings, Fashion-MNIST on the first 2000 images
  --out DIR           output directory (default out/bench)
  --build-dir DIR     meson build directory (default build-bench)
  --reps N            repetitions of the whole interleaved sweep (default 3; Fashion-MNIST runs once)
  --threads "1 2"     thread counts (default "1 2")
  --fmnist-limit N    Fashion-MNIST on the first N training images (default 0: the full epoch)
  --items REGEX       only the items whose name matches (grep -E)
  --no-install        do not install packages (peers that are missing are reported as such)
  --tuned-malloc      every process (kiln and its peers alike) keeps freed memory: glibc's mmap
                      threshold fixed at 32 MiB and no trimming below 1 GiB (GLIBC_TUNABLES), so
                      steps after the first few reuse pages instead of faulting fresh ones in
Environment: OPENBLAS_* variables (e.g. OPENBLAS_CORETYPE) pass through to every process; the
table notes them and, when OPENBLAS_CORETYPE is set, the core OpenBLAS would pick without it.
EOF
}

out=out/bench build=build-bench reps=3 threads="1 2" fmnist_limit=0 items_re="" install=1 tuned_malloc=0
iters=10 min_time=0.5
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) reps=1 iters=3 min_time=0.1 fmnist_limit=2000 ;;
    --out) out="$2"; shift ;;
    --build-dir) build="$2"; shift ;;
    --reps) reps="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --fmnist-limit) fmnist_limit="$2"; shift ;;
    --items) items_re="$2"; shift ;;
    --no-install) install=0 ;;
    --tuned-malloc) tuned_malloc=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# ---- packages: kiln's own, then the bench-only peers (optional: a failure here is not fatal)
openblas_openmp=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ "$install" = 1 ]; then
  bash scripts/install-deps.sh
  missing=()
  for p in libtorch-dev libdnnl-dev libopenblas0-openmp; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    { "${sudo_cmd[@]}" apt-get update -qq &&
      "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
      echo "bench: could not install ${missing[*]}; measuring what is installed" >&2
  fi
fi

# ---- build (release, its own directory; the peers' programs exist only when found)
mkdir -p "$out"
if [ ! -f "$build/build.ninja" ]; then
  cxx="g++"
  command -v ccache >/dev/null && cxx="ccache g++"
  CXX="$cxx" meson setup "$build" --buildtype=release >"$out/build.log" 2>&1 ||
    { cat "$out/build.log" >&2; exit 1; }
fi
targets=(bench/kiln_bench bench/bench_report)
declare -A bin=([kiln]="$build/bench/kiln_bench")
for fw in torch dnnl; do
  if ninja -C "$build" -t query "bench/${fw}_bench" >/dev/null 2>&1; then
    targets+=("bench/${fw}_bench")
    bin[$fw]="$build/bench/${fw}_bench"
  fi
done
echo "bench: building ${targets[*]} in $build"
ninja -C "$build" -j2 "${targets[@]}" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log" >&2; exit 1; }

# ---- the run
raw="$out/raw.tsv"
: >"$raw"
: >"$out/errors.log"
note() { printf 'note\t%s\n' "$1" >>"$raw"; }
note "kiln $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'); repetitions $reps, at least $iters steps and ${min_time} s per process; medians over all steps"
note "threads: kiln KILN_NUM_THREADS=OPENBLAS_NUM_THREADS=N; torch set_num_threads(N), OMP_NUM_THREADS=N, OpenBLAS from $openblas_openmp; dnnl OMP_NUM_THREADS=N"
openblas_env=$(env | grep '^OPENBLAS_' | grep -v '^OPENBLAS_NUM_THREADS=' | sort | tr '\n' ' ' || true)
[ -n "$openblas_env" ] && note "environment passed to every process: ${openblas_env% }"
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  own=$(env -u OPENBLAS_CORETYPE KILN_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "${bin[kiln]}" \
    --item "per-op overhead" --iters 1 --min-time 0 | grep '^info' | cut -f4)
  note "OPENBLAS_CORETYPE forces the OpenBLAS core above; without it OpenBLAS picks $own on this CPU"
fi
if [ "$tuned_malloc" = 1 ]; then
  export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824
  note "malloc tuned for every process: GLIBC_TUNABLES=$GLIBC_TUNABLES"
else
  note "malloc: glibc's defaults (large blocks come from mmap and go back to the system when freed)"
fi
if [ "$fmnist_limit" -gt 0 ]; then
  note "fashion-mnist epoch: the first $fmnist_limit training images only (seconds for those)"
fi
[ -d "$openblas_openmp" ] || note "torch: $openblas_openmp is missing (libopenblas0-openmp): libtorch runs the system's libblas.so.3"
[ -n "${bin[torch]:-}" ] || printf 'missing\ttorch\tlibtorch-dev\n' >>"$raw"
[ -n "${bin[dnnl]:-}" ] || printf 'missing\tdnnl\tlibdnnl-dev\n' >>"$raw"

# Runs one item for one framework at one thread count; appends its lines to the raw file.
run_one() {
  local fw="$1" item="$2" t="$3"
  local args=(--item "$item" --threads "$t" --iters "$iters" --min-time "$min_time")
  [ "$item" = "fashion-mnist epoch" ] && args+=(--limit "$fmnist_limit")
  local env=()
  case "$fw" in
    kiln) env=(KILN_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t") ;;
    torch) env=(LD_LIBRARY_PATH="$openblas_openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OMP_NUM_THREADS="$t"
                OPENBLAS_NUM_THREADS="$t") ;;
    dnnl) env=(OMP_NUM_THREADS="$t") ;;
  esac
  if ! env "${env[@]}" timeout 1200 "${bin[$fw]}" "${args[@]}" >>"$raw" 2>>"$out/errors.log"; then
    printf 'failed\t%s\t%s\t%s\n' "$fw" "$item" "$t" >>"$raw"
    echo "bench: $fw '$item' at $t thread(s) failed (see $out/errors.log)" >&2
  fi
}

mapfile -t items < <("${bin[kiln]}" --list | cut -f1)
declare -A has
for fw in "${!bin[@]}"; do
  while IFS=$'\t' read -r name _; do has["$fw/$name"]=1; done < <("${bin[$fw]}" --list)
done
start=$SECONDS
for ((rep = 1; rep <= reps; ++rep)); do
  for t in $threads; do
    for item in "${items[@]}"; do
      [ -n "$items_re" ] && ! grep -qE "$items_re" <<<"$item" && continue
      # the epoch is long and its steps already many: once per thread count
      [ "$item" = "fashion-mnist epoch" ] && [ "$rep" -gt 1 ] && continue
      printf 'bench: repetition %d/%d, %d thread(s): %s (%d s)\n' "$rep" "$reps" "$t" "$item" $((SECONDS - start)) >&2
      for fw in kiln torch dnnl; do
        [ -n "${has[$fw/$item]:-}" ] && run_one "$fw" "$item" "$t"
      done
    done
  done
done
note "run time $((SECONDS - start)) s"
"$build/bench/bench_report" "$raw" "$out" | tee "$out/table.txt"
