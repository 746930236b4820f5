#!/usr/bin/env bash
# The client matrix: the module's commands driven from the clients people
# use, against one standalone server and one 3 + 3 cluster, both with the
# module loaded:
#   - Python: redis-py sync and asyncio, RESP2 and RESP3, RedisCluster
#     (matrix.py, redis-py pinned in requirements.txt, in target/matrix-venv);
#   - Node.js: ioredis and node-redis, standalone and cluster (matrix.mjs,
#     pinned by package-lock.json, installed with `npm ci` into
#     clients/matrix/node_modules, which git ignores);
#   - redis-cli -c against the cluster (redirects followed, blocking PERMIT);
#   - redis-benchmark: every `redis-benchmark` line of README.md and
#     docs/*.md, run as written but against the test server and with fewer
#     requests.
#
#   clients/matrix/run.sh                       # Debian's redis-server
#   MATRIX_SERVER=$(scripts/servers.sh bin redis-7.4.1) clients/matrix/run.sh
#
# Environment: MATRIX_SERVER (server binary; default redis-server),
# THROTTLE_MODULE (the .so; default: scripts/build.sh builds it),
# MATRIX_CLUSTER_PORT (first of the cluster's 6 ports, default 21001; bus
# ports are each + 100). Prints "matrix: N passed, M failed" last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

server=${MATRIX_SERVER:-redis-server}
so=${THROTTLE_MODULE:-$(scripts/build.sh)}
export THROTTLE_MODULE=$so
bindir=$(dirname "$(command -v "$server")")
pick() { # the tool beside the server binary (same version), else Debian's
  local t
  for t in "$bindir/$1" "$bindir/${1/redis/valkey}"; do [ -x "$t" ] && { echo "$t"; return; }; done
  command -v "$1"
}
cli=$(pick redis-cli)
bench=$(pick redis-benchmark)
label=$("$server" --version | sed -E 's/^(\S+) server v=(\S+).*/\L\1-\2/')
work=$root/target/matrix/$label-$$
mkdir -p "$work"
pass=0 fail=0
result() { # result NAME STATUS
  if [ "$2" = 0 ]; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1"; fi
}

# ------------------------------------------------------------------ tools
"$here/setup.sh"
venv=$root/target/matrix-venv

# ---------------------------------------------------------------- servers
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --logfile "$work/standalone.log" --loadmodule "$so" &
spid=$!
export CLUSTER_PORT=${MATRIX_CLUSTER_PORT:-21001}
cleanup() {
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  REDIS_SERVER=$server REDIS_CLI=$cli scripts/cluster.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
REDIS_SERVER=$server REDIS_CLI=$cli scripts/cluster.sh start >"$work/cluster.log" 2>&1 ||
  { cat "$work/cluster.log" >&2; exit 1; }
for _ in $(seq 100); do "$cli" -p "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
export REDIS_URL=redis://127.0.0.1:$port
nodes=()
for i in 0 1 2 3 4 5; do nodes+=("127.0.0.1:$((CLUSTER_PORT + i))"); done
CLUSTER_NODES=$(IFS=,; echo "${nodes[*]}")
export CLUSTER_NODES MATRIX_RUN=$$
echo "matrix: $("$server" --version | cut -d' ' -f1-3) on $REDIS_URL and cluster ${nodes[0]}..."

# ----------------------------------------------------------------- python
status=0
"$venv/bin/python" "$here/matrix.py" || status=$?
result "python (redis-py)" "$status"

# ------------------------------------------------------------------- node
status=0
node "$here/matrix.mjs" || status=$?
result "node (ioredis, node-redis)" "$status"

# -------------------------------------------------------------- redis-cli
moved() { # MOVED redirects answered by the cluster's masters so far
  local n=0 p c
  for p in "${nodes[@]}"; do
    c=$("$cli" -p "${p##*:}" INFO errorstats | tr -d '\r' | sed -n 's/^errorstat_MOVED:count=//p')
    n=$((n + ${c:-0}))
  done
  echo "$n"
}
cli_checks() { # every check runs; prints each mismatch; fails if any
  local c=("$cli" -c -p "$CLUSTER_PORT") before out i bad=0
  expect() { # expect WHAT GLOB OUTPUT
    # shellcheck disable=SC2053
    [[ $3 == $2 ]] || { echo "     redis-cli -c $1: got '$3'"; bad=1; }
  }
  before=$(moved)
  for i in $(seq 12); do # keys on every master: redirects followed
    expect "THROTTLE (key $i)" "1 79 0 200 80 " "$("${c[@]}" THROTTLE "cli:$$:$i" 5 2 8 | tr '\n' ' ')"
  done
  [ "$(moved)" -gt "$before" ] || { echo "     redis-cli -c: no MOVED followed"; bad=1; }
  expect THROTTLE.ALL "1 0 0 4 99 " \
    "$("${c[@]}" THROTTLE.ALL 1 "{cli:$$}:sec" 5 1 1 "{cli:$$}:min" 1 100 1 | tr '\n' ' ')"
  expect "THROTTLE.ALL across slots" "*CROSSSLOT*" \
    "$("${c[@]}" THROTTLE.ALL 1 "cli:$$:a" 5 1 1 "cli:$$:b" 1 100 1 2>&1 | tr '\n' ' ')"
  expect PERMIT "0 * 253402300799999 " "$("${c[@]}" PERMIT "cli:$$:p" 300 5 | tr '\n' ' ')"
  expect "PERMIT BLOCK" "0 * * " "$("${c[@]}" PERMIT "cli:$$:p" 300 5 BLOCK 5000 | tr '\n' ' ')"
  "${c[@]}" THROTTLE "cli:$$:g" 5 2 8 >/dev/null
  expect THROTTLE.GET "tokens * limit 80 rps 5 burst  window  source last-call *" \
    "$("${c[@]}" THROTTLE.GET "cli:$$:g" | tr '\n' ' ')"
  return "$bad"
}
status=0
cli_checks || status=$?
result "redis-cli -c ($("$cli" --version))" "$status"

# --------------------------------------------------------- redis-benchmark
# Every redis-benchmark line in README.md, as written, with the port and the
# request count replaced: it must run without an error reply (redis-benchmark
# exits 1 on the first one) and the server must count its calls.
bench_checks() {
  local line n=0 cmd calls_before calls_after args lines words
  mapfile -t lines < <(grep -hE '^redis-benchmark ' README.md docs/*.md 2>/dev/null || true)
  # Each line's words (shell quoting undone), joined by \x1f: one python for all.
  mapfile -t words < <(python3 -c 'import shlex, sys
for l in sys.argv[1:]: print("\x1f".join(shlex.split(l)[1:]))' "${lines[@]}")
  for line in "${lines[@]}"; do
    IFS=$'\x1f' read -r -a args <<<"${words[n]}"
    n=$((n + 1))
    local out=() skip=0 a cluster=0
    for a in "${args[@]}"; do
      if [ "$skip" = 1 ]; then skip=0; continue; fi
      case $a in
        -p | -h | -n) skip=1 ;; # the test's own server and request count
        --cluster) cluster=1; out+=("$a") ;;
        *) out+=("$a") ;;
      esac
    done
    local target=$port
    [ "$cluster" = 1 ] && target=$CLUSTER_PORT
    cmd=$(printf '%s\n' "${out[@]}" | grep -m1 -iE '^(THROTTLE|THROTTLE\..+|PERMIT)$' || true)
    local stat=cmdstat_${cmd,,}
    sum_calls() {
      local s=0 p ports=("$target") c
      [ "$cluster" = 1 ] && ports=("${nodes[@]##*:}")
      for p in "${ports[@]}"; do
        c=$("$cli" -p "$p" INFO commandstats | tr -d '\r' | sed -n "s/^$stat:calls=\([0-9]*\),.*/\1/p")
        s=$((s + ${c:-0}))
      done
      echo "$s"
    }
    calls_before=$(sum_calls)
    if ! "$bench" -p "$target" -n 2000 "${out[@]}" >"$work/bench-$n.log" 2>&1; then
      echo "README redis-benchmark line $n failed: $line"; cat "$work/bench-$n.log"; return 1
    fi
    calls_after=$(sum_calls)
    if [ -n "$cmd" ] && [ $((calls_after - calls_before)) -lt 2000 ]; then # a module command: counted
      echo "line $n: $((calls_after - calls_before)) $cmd calls counted, 2000 expected"
      return 1
    fi
    echo "     $(tr '\r' '\n' <"$work/bench-$n.log" | grep 'requests per second' | tail -n 1)"
  done
  [ "$n" -gt 0 ] || { echo "no redis-benchmark line in README.md or docs/*.md"; return 1; }
}
status=0
bench_checks || status=$?
result "redis-benchmark (README lines)" "$status"

echo "matrix: $pass passed, $fail failed"
[ "$fail" = 0 ]
