#!/usr/bin/env bash
# Installs what building and testing the module needs, when it is missing:
#   - redis-server, redis-cli, redis-benchmark (Debian's redis packages);
#   - the libclang shared library that bindgen (run by the redis-module
#     crate) loads, and clang's resource headers (stddef.h).
# Sourced by the other scripts; safe to run repeatedly; installs nothing
# when everything is present.
#
# Detection is exact (see deps_missing): bindgen loads `libclang.so`,
# `libclang-N.so`, `libclang.so.N` or `libclang-N.so.N`, never
# `libclang-cpp.so.N` (a different library that Debian ships on its own).
# DEPS_ROOT, when set, is prepended to every path looked at: the tests of
# this detection (scripts/tests/deps.sh) point it at a fake tree.
#
# Installing never stops a process it did not start: Debian starts its own
# redis-server service on 6379 after installing it; that service is
# stopped through the service manager, nothing else is touched.
set -euo pipefail

DEPS_LLVM=${DEPS_LLVM:-14}

# Prints the libclang that bindgen would load, or fails.
deps_find_libclang() {
  local root=${DEPS_ROOT:-} dir f base
  local dirs=()
  [ -n "${LIBCLANG_PATH:-}" ] && dirs+=("$LIBCLANG_PATH")
  dirs+=("$root"/usr/lib/llvm-*/lib "$root/usr/lib/x86_64-linux-gnu" "$root/usr/lib/aarch64-linux-gnu"
    "$root/usr/lib64" "$root/usr/local/lib" "$root/usr/lib")
  for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for f in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
      [ -e "$f" ] || continue
      base=${f##*/}
      case $base in libclang-cpp*) continue ;; esac
      echo "$f"
      return 0
    done
  done
  return 1
}

# Prints clang's resource stddef.h, or fails.
deps_find_clang_headers() {
  local root=${DEPS_ROOT:-} f
  for f in "$root"/usr/lib/llvm-*/lib/clang/*/include/stddef.h "$root"/usr/lib/clang/*/include/stddef.h \
    "$root"/usr/local/lib/clang/*/include/stddef.h; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

# Prints the Debian packages to install, one per line (nothing when all is there).
deps_missing() {
  local have_server=1 have_tools=1
  if [ -n "${DEPS_ROOT:-}" ]; then
    [ -e "$DEPS_ROOT/usr/bin/redis-server" ] || have_server=0
    [ -e "$DEPS_ROOT/usr/bin/redis-cli" ] && [ -e "$DEPS_ROOT/usr/bin/redis-benchmark" ] || have_tools=0
  else
    command -v redis-server >/dev/null 2>&1 || have_server=0
    command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 || have_tools=0
  fi
  [ "$have_server" = 1 ] || echo redis-server
  [ "$have_tools" = 1 ] || echo redis-tools
  deps_find_libclang >/dev/null || echo "libclang1-$DEPS_LLVM"
  deps_find_clang_headers >/dev/null || echo "libclang-common-$DEPS_LLVM-dev"
  return 0
}

# Stops the redis-server service Debian's package starts on install,
# through the service manager only (never by matching process names).
deps_stop_debian_service() {
  local sudo=$1
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl stop redis-server >/dev/null 2>&1 || true
    $sudo systemctl disable redis-server >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/redis-server ]; then
    $sudo /etc/init.d/redis-server stop >/dev/null 2>&1 || true
  fi
}

deps_install() {
  local need
  mapfile -t need < <(deps_missing)
  [ ${#need[@]} -gt 0 ] || return 0
  echo "deps: installing ${need[*]}" >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  local had_server=0
  command -v redis-server >/dev/null 2>&1 && had_server=1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  [ "$had_server" = 1 ] || deps_stop_debian_service "$sudo"
  local missing
  missing=$(deps_missing)
  if [ -n "$missing" ]; then
    echo "deps: still missing after install: $(echo "$missing" | tr '\n' ' ')" >&2
    return 1
  fi
}

if [ "${DEPS_NO_INSTALL:-0}" != 1 ]; then
  deps_install
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || { echo "deps: cargo (Rust toolchain) is required: https://rustup.rs" >&2; exit 1; }
fi
