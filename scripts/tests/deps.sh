#!/usr/bin/env bash
# Tests the dependency detection of scripts/deps.sh against fake directory
# trees (DEPS_ROOT), so the check that bit a new user (libclang-cpp taken
# for libclang) cannot come back. Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEPS_NO_INSTALL=1
unset LIBCLANG_PATH
source scripts/deps.sh
fail=0
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

expect() { # expect "<packages>" <description>
  local got
  got=$(deps_missing | tr '\n' ' ' | sed 's/ $//')
  if [ "$got" = "$1" ]; then echo "ok: $2"; else echo "FAIL: $2: missing '$got', expected '$1'"; fail=1; fi
}
reset_tree() { rm -rf "$root"; mkdir -p "$root/usr/bin" "$root/usr/lib/llvm-14/lib" "$root/usr/lib/x86_64-linux-gnu"; }
export DEPS_ROOT=$root

reset_tree
expect "redis-server redis-tools libclang1-14 libclang-common-14-dev" "an empty machine needs everything"

touch "$root/usr/bin/redis-server" "$root/usr/bin/redis-cli" "$root/usr/bin/redis-benchmark"
touch "$root/usr/lib/llvm-14/lib/libclang-cpp.so.14" "$root/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"
expect "libclang1-14 libclang-common-14-dev" "libclang-cpp alone is not libclang"

mkdir -p "$root/usr/lib/llvm-14/lib/clang/14.0.6/include"
touch "$root/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h"
expect "libclang1-14" "headers without the library"

for lib in libclang-14.so.1 libclang.so.1 libclang.so libclang-14.so; do
  rm -f "$root"/usr/lib/llvm-14/lib/libclang[-.]{1,s}* 2>/dev/null || true
  find "$root/usr/lib" -name 'libclang*' ! -name 'libclang-cpp*' -delete
  touch "$root/usr/lib/llvm-14/lib/$lib"
  expect "" "$lib is a libclang bindgen loads"
done

find "$root/usr/lib" -name 'libclang*' ! -name 'libclang-cpp*' -delete
touch "$root/usr/lib/x86_64-linux-gnu/libclang-14.so.1"
expect "" "Debian's multiarch libclang-14.so.1"
rm "$root/usr/bin/redis-benchmark"
expect "redis-tools" "redis-benchmark comes with redis-tools"

[ "$fail" = 0 ] && echo "deps detection: all passed"
exit "$fail"
