#!/usr/bin/env bash
# Builds redis-cell 0.5.0, the reference native rate-limit module, from
# ../shared/peers/redis-cell-0.5.0.tar.gz, once, into a cache outside the
# clone, and prints the path of its module (libredis_cell.so). For running
# the peer side by side (scripts/bench.sh, scripts/bench/profile.sh) and for
# differential tests:
#
#   CELL_SO=$(scripts/cell.sh)
#   redis-server --loadmodule "$CELL_SO"      # CL.THROTTLE key max_burst count period [quantity]
#
# Only the peer's own Cargo.lock and crates from the registry are used
# (`cargo build --release --locked`); nothing of its code enters this repo.
# The cache is THROTTLE_CACHE (default ~/.cache/redis-throttle), under
# peers/redis-cell-0.5.0/{src,target}; concurrent runs wait on a lock and
# reuse one build (a few minutes on 2 cores, once). Sources: PEERS_SRC
# (default ../shared/peers beside the clone). Everything but the printed
# path goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${THROTTLE_CACHE:-$HOME/.cache/redis-throttle}
src=${PEERS_SRC:-$PWD/../shared/peers}
name=redis-cell-0.5.0
dir=$cache/peers/$name
# crate-type "dylib" in the peer's Cargo.toml: rustc names it lib<crate>.so.
so=$dir/target/release/libredis_cell.so

built() { [ -f "$so" ] && [ -f "$dir/.built" ]; }

if ! built; then
  tarball=$src/$name.tar.gz
  [ -f "$tarball" ] || { echo "cell: no source $tarball" >&2; exit 1; }
  command -v cargo >/dev/null 2>&1 || { echo "cell: cargo is needed to build $name" >&2; exit 1; }
  mkdir -p "$cache/peers"
  exec 9>"$cache/peers/.$name.lock"
  flock 9 # another run may be building it: wait, then reuse
  if ! built; then
    echo "cell: building $name in $dir (cargo build --release, once)" >&2
    t0=$SECONDS
    rm -rf "$dir/src" "$dir/.built"
    mkdir -p "$dir/src"
    tar -xzf "$tarball" -C "$dir/src" --strip-components=1
    if ! cargo build --release --locked --manifest-path "$dir/src/Cargo.toml" \
      --target-dir "$dir/target" >"$dir/build.log" 2>&1; then
      tail -n 30 "$dir/build.log" >&2
      echo "cell: build of $name failed; log in $dir/build.log" >&2
      exit 1
    fi
    [ -f "$so" ] || { echo "cell: the build made no $so; see $dir/target/release" >&2; exit 1; }
    touch "$dir/.built"
    echo "cell: built $name in $((SECONDS - t0)) s" >&2
  fi
fi
echo "$so"
