#!/usr/bin/env bash
# The main job: set up, build, and train the Fashion-MNIST example (arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec ./build/examples/linear_regression "$@"
