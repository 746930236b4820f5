#!/usr/bin/env bash
# Builds the module in release mode (once; cargo skips it when nothing changed)
# and prints the path of the shared library. With THROTTLE_MODULE set (as
# scripts/test.sh sets it after its one workspace build), prints that path
# and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${THROTTLE_MODULE:-}" ]; then
  [ -f "$THROTTLE_MODULE" ] || { echo "build: THROTTLE_MODULE=$THROTTLE_MODULE is not a file" >&2; exit 1; }
  echo "$THROTTLE_MODULE"
  exit 0
fi
source scripts/deps.sh
cargo build --release -p redis-throttle >&2
echo "$PWD/target/release/libredis_throttle.so"
