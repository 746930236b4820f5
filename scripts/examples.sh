#!/usr/bin/env bash
# Runs the Python examples from README.md (examples/python/*.py) against a
# fresh redis-server with the module, using redis-py from a virtualenv
# under target/. Each example asserts what the README claims.
set -euo pipefail
cd "$(dirname "$0")/.."
so=$(scripts/build.sh)
venv=target/py-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import redis' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q redis
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --dir "$dir" --loadmodule "$so" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
export REDIS_URL="redis://127.0.0.1:$port"
pass=0 fail=0
for ex in examples/python/*.py; do
  if timeout 60 "$venv/bin/python" "$ex"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: $ex"; fi
done
echo "examples: $pass passed, $fail failed"
[ "$fail" = 0 ]
