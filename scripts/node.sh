#!/usr/bin/env bash
# Tests the Node.js package (clients/node) against real servers:
#
#   REDIS_SERVER=<server binary> THROTTLE_MODULE=<.so> RUSH=<rush binary> scripts/node.sh [test files...]
#
# Starts one server on a free loopback port and a 3-master cluster on free
# ports (created with `redis-cli --cluster create`: the cli beside the server
# binary, else Debian's), both with the module loaded, then runs the package's
# suite with Node's test runner (`node --test`): every command from node-redis
# 5 and 6 and ioredis 5 and 6, standalone and cluster; held calls; real
# Express and Fastify apps driven over HTTP (in child processes); rush
# against the Express app; and `npm pack` installed into an empty project.
#
# Installs what is missing: node and npm (apt) and the package's dependencies
# (`npm ci` from clients/node/package-lock.json, again when it changes), and
# builds the package (dist/, when its sources changed), under a lock that
# concurrent runs share; `scripts/node.sh --setup` does only that. Defaults: REDIS_SERVER=redis-server,
# THROTTLE_MODULE from scripts/build.sh, RUSH target/release/rush or
# target/debug/rush, else `cargo build -p rush`. NODE_SKIP_PACK=1 leaves
# out the `npm pack` file (it needs no particular server: scripts/test.sh runs
# it on one). Ends with the line "node: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pkg=$root/clients/node

server=${REDIS_SERVER:-redis-server}

# ------------------------------------------------------------- node, npm
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node.sh: installing nodejs and npm" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >&2
fi
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "node.sh: node $(node --version) is too old: the package needs node 20+" >&2; exit 1; }
mkdir -p "$root/target"
(
  flock 9
  stamp=$pkg/node_modules/.installed-from
  sum=$(sha256sum "$pkg/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    echo "node.sh: npm ci (clients/node/package-lock.json)" >&2
    (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$sum" >"$stamp"
  fi
  # dist/ again only when its sources changed: the build empties dist/, and
  # other runs (node.sh on another server, snippets.sh) may be reading it
  built=$pkg/node_modules/.dist-built-from # not in dist/: npm pack would ship it
  src=$(cd "$pkg" && find src scripts tsconfig*.json package.json package-lock.json -type f -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$built" 2>/dev/null)" != "$src" ] || [ ! -f "$pkg/dist/cjs/package.json" ]; then
    (cd "$pkg" && npm run -s build >&2)
    echo "$src" >"$built"
  fi
) 9>"$root/target/.node-setup.lock"
[ "${1:-}" = --setup ] && exit 0

so=${THROTTLE_MODULE:-$(scripts/build.sh)}
export THROTTLE_MODULE=$so
if [ -z "${RUSH:-}" ]; then
  for r in target/release/rush target/debug/rush; do [ -x "$r" ] && { RUSH=$root/$r; break; }; done
  if [ -z "${RUSH:-}" ]; then
    cargo build -q -p rush >&2
    RUSH=$root/target/debug/rush
  fi
fi
export RUSH

# --------------------------------------------------------------- servers
bindir=$(dirname "$(command -v "$server")")
cli=
for t in "$bindir/redis-cli" "$bindir/valkey-cli"; do [ -x "$t" ] && { cli=$t; break; }; done
[ -n "$cli" ] || cli=$(command -v redis-cli)
work=$(mktemp -d "${TMPDIR:-/tmp}/redis-throttle-node.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# 4 free ports for the servers and 3 for the cluster bus.
read -r -a ports < <(node -e '
  const net = require("node:net");
  const socks = [];
  (async () => {
    for (let i = 0; i < 7; i++) {
      const s = net.createServer();
      await new Promise((ok) => s.listen(0, "127.0.0.1", ok));
      socks.push(s);
    }
    console.log(socks.map((s) => s.address().port).join(" "));
    socks.forEach((s) => s.close());
  })();')
# The module is loaded with wait-tolerance-ms 1000 (default 10): with both
# cores busy, a server may release a held WAIT or BLOCK client more than 10 ms
# after its time, and then tells it "denied, retry now" (README, "Late
# release"); the tests and examples expect the plain answer.
start() { # start NAME PORT [extra server args...]
  local name=$1 port=$2
  shift 2
  mkdir -p "$work/$name"
  "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/$name" \
    --logfile "$work/$name/server.log" "$@" --loadmodule "$so" wait-tolerance-ms 1000 &
  pids+=($!)
}
wait_ping() { # wait_ping PORT NAME
  local n
  for n in $(seq 200); do
    "$cli" -p "$1" PING >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "node.sh: server $2 on port $1 did not start:" >&2
  tail -20 "$work/$2/server.log" >&2
  exit 1
}
start standalone "${ports[0]}"
for i in 0 1 2; do
  start "node$i" "${ports[$((i + 1))]}" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 5000 --cluster-port "${ports[$((i + 4))]}"
done
wait_ping "${ports[0]}" standalone
for i in 0 1 2; do wait_ping "${ports[$((i + 1))]}" "node$i"; done
addrs=()
for i in 1 2 3; do addrs+=("127.0.0.1:${ports[$i]}"); done
"$cli" --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$work/create.log" 2>&1 ||
  { cat "$work/create.log" >&2; exit 1; }
for n in $(seq 300); do # every node sees the same slots and the cluster is ok (15 s)
  ok=0
  for i in 1 2 3; do
    "$cli" -p "${ports[$i]}" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
  done
  if [ "$ok" = 3 ] && "$cli" --cluster check "${addrs[0]}" 2>/dev/null | grep -q 'All nodes agree about slots'; then
    break
  fi
  [ "$n" = 300 ] && { echo "node.sh: the cluster did not form" >&2; exit 1; }
  sleep 0.05
done
export REDIS_URL=redis://127.0.0.1:${ports[0]}
CLUSTER_NODES=$(IFS=,; echo "${addrs[*]}")
export CLUSTER_NODES
echo "node.sh: $("$server" --version | cut -d' ' -f1-3) on $REDIS_URL and cluster $CLUSTER_NODES; rush $RUSH" >&2

# ----------------------------------------------------------------- tests
cd "$pkg"
# One file at a time: the held-call tests read the server's count of held clients.
files=("$@")
if [ ${#files[@]} = 0 ]; then
  for f in test/*.test.mjs; do
    [ "${NODE_SKIP_PACK:-0}" = 1 ] && [ "$f" = test/pack.test.mjs ] && continue
    files+=("$f")
  done
fi
status=0
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}" 2>&1 | tee "$work/test.out" || status=$?
pass=$(sed -n 's/^ℹ pass \([0-9]*\)$/\1/p' "$work/test.out" | tail -1)
fail=$(sed -n 's/^ℹ fail \([0-9]*\)$/\1/p' "$work/test.out" | tail -1)
# A run that did not get as far as its summary failed as a whole.
[ -n "$pass" ] || { pass=0; fail=$((${fail:-0} + 1)); }
echo "node: $pass passed, ${fail:-0} failed"
[ "$status" = 0 ] && [ "${fail:-0}" = 0 ]
