#!/usr/bin/env bash
# Runs redis-server in the foreground with the module loaded, building the
# module first (and installing redis-server and libclang when missing).
#   scripts/serve.sh                    # 127.0.0.1:6379
#   PORT=6380 scripts/serve.sh          # another port
#   scripts/serve.sh --appendonly yes   # extra redis-server arguments
# Data (dump.rdb, appendonlydir/) and the server log live in DATA_DIR
# (default target/serve/<port>), never in the checkout's root. Ctrl-C stops
# the server cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-6379}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
busy() {
  echo "serve: 127.0.0.1:$port is already in use; pick another port, e.g. PORT=$((port + 1)) scripts/serve.sh" >&2
  exit 1
}
port_busy && busy
so=$(scripts/build.sh)
server=${REDIS_SERVER:-redis-server}
data=${DATA_DIR:-$PWD/target/serve/$port}
mkdir -p "$data"
port_busy && busy
echo "serve: $so loaded on redis://127.0.0.1:$port (redis-cli -p $port); data and log in $data; Ctrl-C stops" >&2
status=0
"$server" --port "$port" --bind 127.0.0.1 --dir "$data" --logfile "$data/redis.log" \
  --loadmodule "$so" "$@" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 130 ]; then
  echo "serve: redis-server exited with status $status; the end of $data/redis.log:" >&2
  tail -n 15 "$data/redis.log" >&2 || true
  exit "$status"
fi
echo "serve: stopped" >&2
