#!/usr/bin/env bash
# The main job: set up, build the library and the example only (scripts/test.sh builds the tests),
# and train the Fashion-MNIST example (arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh examples/fashion_mnist
# Defaults: the default recipe (5 epochs), one BLAS thread; in out/fashion_mnist/: graph.dot and
# graph.svg, curves.csv, moving_stats.csv and curves.png (the pictures need graphviz and
# gnuplot-nox, which scripts/install-deps.sh installs). Flags override the defaults, e.g.
# `bash scripts/run-main.sh --epochs 1 --train-limit 10000`; see --help.
exec ./build/examples/fashion_mnist "$@"
