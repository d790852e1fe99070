#!/usr/bin/env bash
# Installs what is missing, configures and builds the release tree in build/ (g++, -Werror).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || CXX=${CXX:-g++} meson setup build -Dwerror=true >/dev/null
ninja -C build -j"$(nproc)" "$@"
