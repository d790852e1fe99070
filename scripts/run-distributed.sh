#!/usr/bin/env bash
# The main job, data-parallel on 2 ranks of Open MPI on this machine:
#   bash scripts/run-distributed.sh [fashion_mnist options]    (e.g. --epochs 1)
# Installs Open MPI when missing, (re)configures build/ so that kiln sees MPI, builds, and runs
#   mpirun -np 2 ./build/examples/fashion_mnist --distributed "$@"
# RANKS=4 changes the number of processes. On a cluster, use a hostfile instead (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh libopenmpi-dev openmpi-bin
if [ -f build/build.ninja ] && ! grep -q KILN_HAVE_MPI build/build.ninja; then
  meson setup --reconfigure build >/dev/null  # configured before MPI was installed
fi
bash scripts/build.sh examples/fashion_mnist
if [ "$(id -u)" -eq 0 ]; then  # Open MPI refuses root without both
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun -np "${RANKS:-2}" --oversubscribe --bind-to none ./build/examples/fashion_mnist --distributed "$@"
