#!/usr/bin/env bash
# Installs the client matrix's pinned clients, once (safe to run from
# several scripts at the same time):
#   setup.sh node     node 20+ (apt when missing) and clients/matrix/node_modules
#                     (`npm ci` from package-lock.json, again only when it changes)
#   setup.sh python   target/matrix-venv with redis-py from requirements.txt
#   setup.sh          both
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$root/target"
exec 9>"$root/target/.matrix-setup.lock"
flock 9

setup_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "matrix: installing nodejs and npm" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >&2
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || { echo "matrix: node $(node --version) is too old: ioredis 6 and redis 6 need node 20+" >&2; exit 1; }
  local stamp=$here/node_modules/.installed-from sum
  sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    echo "matrix: npm ci (clients/matrix/package-lock.json)" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$sum" >"$stamp"
  fi
}

setup_python() {
  local venv=$root/target/matrix-venv want sudo=""
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "matrix: installing python3-venv" >&2
    [ "$(id -u)" = 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >&2
  fi
  want=$(sed -n 's/^redis==//p' "$here/requirements.txt")
  if [ "$("$venv/bin/python" -c 'import redis; print(redis.__version__)' 2>/dev/null)" != "$want" ]; then
    echo "matrix: installing redis-py $want into $venv" >&2
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  fi
}

case "${1:-all}" in
  node) setup_node ;;
  python) setup_python ;;
  all) setup_node; setup_python ;;
  *) echo "usage: $0 [node|python|all]" >&2; exit 2 ;;
esac
