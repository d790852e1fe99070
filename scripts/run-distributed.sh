#!/usr/bin/env bash
# The main job, data-parallel on 2 ranks of Open MPI on this machine:
#   bash scripts/run-distributed.sh [fashion_mnist options]    (e.g. --epochs 1)
# Installs Open MPI when missing, (re)configures build/ so that kiln sees MPI, builds, and runs
#   mpirun -np 2 ./build/examples/fashion_mnist --distributed "$@"
# RANKS=4 changes the number of processes. On a cluster, use a hostfile instead (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in libopenmpi-dev openmpi-bin; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run-distributed: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash scripts/install-deps.sh
if [ -f build/build.ninja ] && ! grep -q KILN_HAVE_MPI build/build.ninja; then
  meson setup --reconfigure build >/dev/null  # configured before MPI was installed
fi
bash scripts/build.sh examples/fashion_mnist
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root without both
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun -np "${RANKS:-2}" --oversubscribe --bind-to none ./build/examples/fashion_mnist --distributed "$@"
