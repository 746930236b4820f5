#!/usr/bin/env bash
# Tests the Python package (clients/python) and runs the Python examples
# (examples/python/*.py) against fresh servers, from a virtualenv in
# target/py-client-venv (redis-py, pytest and the package, installed with
# `pip install ./clients/python`):
#
#   scripts/python.sh                   # with the module (built if needed)
#   scripts/python.sh --without-module  # plain redis-server: succeeds only if
#                                       # every test and every example FAILS
#   scripts/python.sh --venv            # only (re)installs the virtualenv and
#                                       # prints its python (scripts/seeds.sh)
#
# The second form proves that nothing passes vacuously. The pytest suite
# starts its own servers (one server and a 3-master cluster, free loopback
# ports, the module loaded with `test-clock yes`). REDIS_SERVER picks the
# server binary, THROTTLE_MODULE the module (default: scripts/build.sh's);
# Tests that need a module feature fail (rather than skip) when the module
# lacks it (REDIS_THROTTLE_REQUIRE_FEATURES=0 lets them skip, for older
# builds). Extra arguments go to pytest; PYTHON_EXAMPLES=0 leaves out the
# examples (scripts/test.sh runs the long LimitLion differential as a step of
# its own, beside the rest).
set -euo pipefail
export REDIS_THROTTLE_REQUIRE_FEATURES=${REDIS_THROTTLE_REQUIRE_FEATURES:-1}
cd "$(dirname "$0")/.."

mode=module
if [ "${1:-}" = --without-module ]; then
  mode=without
  shift
elif [ "${1:-}" = --venv ]; then
  mode=venv
  shift
fi

if [ "$mode" = module ]; then
  THROTTLE_MODULE=${THROTTLE_MODULE:-$(scripts/build.sh)}
  export THROTTLE_MODULE
elif [ "$mode" = without ]; then
  source scripts/deps.sh # redis-server when missing
fi
server=${REDIS_SERVER:-redis-server}

venv=target/py-client-venv
mkdir -p target
exec 9>target/py-client-venv.lock
flock 9 # one set-up at a time: scripts/test.sh runs both modes and the seeds at once
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "python: installing python3-venv" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  python3 -m venv "$venv"
fi
# (Re)install the package when its sources changed since the last install.
stamp=$(find clients/python/pyproject.toml clients/python/README.md clients/python/src -type f \
  -not -path '*/__pycache__/*' -not -path '*.egg-info/*' | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.redis-throttle-stamp" 2>/dev/null)" != "$stamp" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check ./clients/python pytest
  rm -rf clients/python/build # setuptools' in-tree build directory
  echo "$stamp" >"$venv/.redis-throttle-stamp"
fi
exec 9>&- # the lock goes with it
if [ "$mode" = venv ]; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi

status=0
dir=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$dir"' EXIT
if [ "${PYTHON_EXAMPLES:-1}" = 1 ]; then
  # One fresh server for the examples: with the module, or plain.
  port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  load=()
  [ "$mode" = module ] && load=(--loadmodule "$THROTTLE_MODULE")
  "$server" --port "$port" --bind 127.0.0.1 --save '' --dir "$dir" "${load[@]}" >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    "$venv/bin/python" -c "import redis,sys; redis.Redis(port=$port).ping()" >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
    sleep 0.05
  done

  passed=0 failed=0
  for ex in examples/python/*.py; do
    if REDIS_URL="redis://127.0.0.1:$port" timeout 60 "$venv/bin/python" "$ex" >"$dir/example.out" 2>&1; then
      passed=$((passed + 1))
      [ "$mode" = module ] && cat "$dir/example.out"
      [ "$mode" = without ] && echo "UNEXPECTED PASS without the module: $ex"
    else
      failed=$((failed + 1))
      [ "$mode" = module ] && { cat "$dir/example.out"; echo "FAILED: $ex"; }
    fi
  done
  if [ "$mode" = module ]; then
    echo "examples: $passed passed, $failed failed"
    [ "$failed" = 0 ] || status=1
  else
    echo "without the module: $failed of $((passed + failed)) examples failed, as they must"
    [ "$passed" = 0 ] && [ "$failed" -gt 0 ] || status=1
  fi
fi

tests=clients/python/tests
if [ "$mode" = module ]; then
  "$venv/bin/python" -m pytest "$tests" -q -rs -p no:cacheprovider "$@" || status=1
else
  xml=$dir/without-module.xml
  REDIS_THROTTLE_WITHOUT_MODULE=1 "$venv/bin/python" -m pytest "$tests" -q --tb=no -p no:cacheprovider \
    --junitxml="$xml" "$@" >"$dir/pytest.out" 2>&1 || true
  tail -1 "$dir/pytest.out"
  # Every test case must have failed (a failure or an error), none passed or skipped.
  "$venv/bin/python" - "$xml" <<'EOF' || status=1
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
bad = [f"{c.get('classname')}.{c.get('name')}" for c in cases
       if c.find("failure") is None and c.find("error") is None or c.find("skipped") is not None]
print(f"without the module: {len(cases) - len(bad)} of {len(cases)} tests failed, as they must")
for name in bad:
    print(f"UNEXPECTED PASS OR SKIP without the module: {name}")
sys.exit(1 if bad or not cases else 0)
EOF
fi
exit $status
