#!/usr/bin/env bash
# Builds the module in release mode (once; cargo skips it when nothing changed)
# and prints the path of the shared library.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo build --release -p redis-throttle >&2
echo "$PWD/target/release/libredis_throttle.so"
