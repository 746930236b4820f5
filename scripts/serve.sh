#!/usr/bin/env bash
# Runs redis-server in the foreground with the module loaded.
#   scripts/serve.sh                 # 127.0.0.1:6379
#   PORT=6380 scripts/serve.sh       # another port
#   scripts/serve.sh --appendonly yes   # extra redis-server arguments
set -euo pipefail
cd "$(dirname "$0")/.."
so=$(scripts/build.sh)
port=${PORT:-6379}
echo "serve: redis-server on 127.0.0.1:$port with $so" >&2
exec redis-server --port "$port" --bind 127.0.0.1 --save "" --loadmodule "$so" "$@"
