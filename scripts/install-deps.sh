#!/usr/bin/env bash
# Installs the Debian 12 packages kiln needs to build, test and run its main job (and the packages
# given as arguments).
# Idempotent: when everything is present it prints nothing and touches no network.
set -euo pipefail
packages=(meson ninja-build pkg-config cmake g++ clang libclang-rt-14-dev
  libxtensor-dev xtl-dev libxsimd-dev libopenblas-dev libdnnl-dev libboost-graph-dev doctest-dev
  zlib1g-dev libcli11-dev dataset-fashion-mnist
  graphviz gnuplot-nox)  # the main job's pictures: graph.svg (dot) and curves.png (gnuplot)
packages+=("$@")  # extra packages, e.g. Open MPI from scripts/run-distributed.sh
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
