#!/usr/bin/env bash
# LimitLion 1.1's own test suite (876 throttle + 12 RunningCounter tests),
# unpacked at run time from ../shared/peers/limitlion-6411f9f.tar.gz, with
# only its imports (`limitlion` -> `redis_throttle.limitlion`) and its
# REDIS_PORT changed:
#
#   scripts/limitlion.sh              # on the drop-in: a server with the
#                                     # module loaded WITHOUT test-clock; then
#                                     # the Python differential, mixed fleet and
#                                     # replication tests
#                                     # (clients/python/tests/test_limitlion_differential.py)
#   scripts/limitlion.sh --limitlion  # the same suite on LimitLion itself, on a
#                                     # plain server: proves the harness (888 passed)
#
# REDIS_SERVER picks the server binary, THROTTLE_MODULE the module (default:
# scripts/build.sh's), LIMITLION_TARBALL the tarball; LIMITLION_CALLS and
# LIMITLION_SEED size and repeat the differential; LIMITLION_DIFFERENTIAL=0
# leaves it out (scripts/test.sh runs it once, in python.sh: on every
# server, tests/limitlion_lua.rs and tests/limitlion.rs compare the command
# with the script and check its replication). Extra arguments go to
# pytest (for the suite). Ends with `limitlion: N passed, M failed`; fails
# unless all 888 tests of the suite passed and nothing failed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=dropin
if [ "${1:-}" = --limitlion ]; then
  mode=limitlion
  shift
fi
tarball=${LIMITLION_TARBALL:-$PWD/../shared/peers/limitlion-6411f9f.tar.gz}
if [ ! -f "$tarball" ]; then
  echo "limitlion: no LimitLion tarball at $tarball (set LIMITLION_TARBALL)" >&2
  exit 1
fi
export LIMITLION_TARBALL=$tarball
if [ "$mode" = dropin ]; then
  THROTTLE_MODULE=${THROTTLE_MODULE:-$(scripts/build.sh)}
  export THROTTLE_MODULE
else
  source scripts/deps.sh # redis-server when missing
fi
server=${REDIS_SERVER:-redis-server}

# A virtualenv with redis-py, pytest, freezefrog (LimitLion's RunningCounter
# tests use it) and this repository's Python package.
# Lanes of scripts/test.sh may run this side by side: one sets the venv up.
venv=target/limitlion-venv
mkdir -p target
exec 9>target/limitlion-venv.lock
flock 9
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp=$(find clients/python/pyproject.toml clients/python/README.md clients/python/src -type f \
  -not -path '*/__pycache__/*' -not -path '*.egg-info/*' | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.redis-throttle-stamp" 2>/dev/null)" != "$stamp" ]; then
  # from a copy: setuptools builds in the source tree, which python.sh may
  # be installing from at the same time
  copy=$(mktemp -d)
  cp -r clients/python/. "$copy"
  "$venv/bin/pip" install -q --disable-pip-version-check "$copy" pytest freezefrog
  rm -rf "$copy"
  echo "$stamp" >"$venv/.redis-throttle-stamp"
fi
flock -u 9
py=$venv/bin/python

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

tar -xzf "$tarball" -C "$work" limitlion/tests limitlion/limitlion
suite=$work/suite
mkdir "$suite"
cp "$work"/limitlion/tests/*.py "$suite"/

# One server on a free port: plain for LimitLion, with the module (no
# test-clock: LimitLion's testing mode must work without it) for the drop-in.
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
load=()
[ "$mode" = dropin ] && load=(--loadmodule "$THROTTLE_MODULE")
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" "${load[@]}" \
  >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  "$py" -c "import redis; redis.Redis(port=$port).ping()" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.05
done

# The only changes to LimitLion's files: REDIS_PORT, and the imports.
sed -i "s/^REDIS_PORT = 6379\$/REDIS_PORT = $port/" "$suite"/conftest.py "$suite"/test_throttle.py
if [ "$mode" = dropin ]; then
  sed -i -e 's/^import limitlion$/import redis_throttle.limitlion as limitlion/' \
    -e 's/^from limitlion\./from redis_throttle.limitlion./' "$suite"/*.py
fi
changed=$(for f in "$suite"/*.py; do diff "$work/limitlion/tests/${f##*/}" "$f" | grep -c '^>' || true; done |
  awk '{ n += $1 } END { print n }')
# REDIS_PORT in conftest.py and test_throttle.py; for the drop-in also
# `import limitlion` (conftest.py, test_throttle.py), `from
# limitlion.throttle` and `from limitlion.running_counter`.
expected=2
[ "$mode" = dropin ] && expected=6
if [ "$changed" != "$expected" ]; then
  echo "limitlion: expected $expected changed lines in LimitLion's tests, got $changed" >&2
  exit 1
fi
if [ "$mode" = dropin ] && grep -nE '^(import|from) limitlion' "$suite"/*.py >&2; then
  echo "limitlion: an import of LimitLion itself is left" >&2
  exit 1
fi

pythonpath=()
[ "$mode" = limitlion ] && pythonpath=(env "PYTHONPATH=$work/limitlion")
status=0
"${pythonpath[@]}" "$py" -m pytest "$suite" -q -p no:cacheprovider -p no:redis_throttle \
  --junitxml="$work/suite.xml" "$@" || status=1

# Counts from the JUnit report: passed, failed (failures and errors), skipped.
counts() {
  "$py" - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
skipped = sum(1 for c in cases if c.find("skipped") is not None)
print(len(cases) - failed - skipped, failed, skipped)
EOF
}
read -r passed failed skipped < <(counts "$work/suite.xml")
who=$([ "$mode" = dropin ] && echo "redis_throttle.limitlion" || echo "LimitLion itself")
echo "LimitLion's suite on $who: $passed passed, $failed failed, $skipped skipped"
if [ "$passed" != 888 ] || [ "$failed" != 0 ]; then
  status=1
fi
total_passed=$passed
total_failed=$((failed + skipped))

if [ "$mode" = dropin ] && [ "${LIMITLION_DIFFERENTIAL:-1}" != 0 ]; then
  REDIS_THROTTLE_REQUIRE_FEATURES=1 "$py" -m pytest clients/python/tests/test_limitlion_differential.py \
    -q -rP -p no:cacheprovider --junitxml="$work/differential.xml" || status=1
  read -r passed failed skipped < <(counts "$work/differential.xml")
  echo "differential, mixed fleet and replication: $passed passed, $failed failed, $skipped skipped"
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed + skipped))
  [ "$failed" = 0 ] && [ "$skipped" = 0 ] && [ "$passed" -gt 0 ] || status=1
fi

echo "limitlion: $total_passed passed, $total_failed failed"
exit $status
