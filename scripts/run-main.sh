#!/usr/bin/env bash
# The main job: set up, build, and train the Fashion-MNIST example (arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# Defaults: the default recipe (5 epochs), all cores, curves.csv and graph.dot in out/fashion_mnist/.
# Flags override them, e.g. `bash scripts/run-main.sh --epochs 1 --train-limit 10000`; see --help.
exec ./build/examples/fashion_mnist "$@"
