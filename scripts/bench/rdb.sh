#!/usr/bin/env bash
# RDB size and load time per key, side by side: N keys of each kind, each
# in a fresh server, saved (SAVE), then loaded by a restart of the same
# server (the load time is what the server logs: "DB loaded from disk:
# X seconds"), and DEBUG RELOAD timed (save and load, as a replica's full
# sync pays).
#
#   scripts/bench/rdb.sh                     # 1,000,000 keys per kind
#   N=100000 scripts/bench/rdb.sh
#   MODULE=/tmp/old.so scripts/bench/rdb.sh  # another build of the module
#
# Every key lives an hour or more (a bucket is deleted once full again, so
# its limit refills slowly: 80 tokens, one per 1,000 s).
# Key names are redis-benchmark's: a prefix and 12 digits ("rl:000000123456").
# Kinds: THROTTLE buckets (one call each, a limit of 80 tokens); the same
# with knobs (THROTTLE.SET); PERMIT keys (one call each); LEASE keys (one
# live lease each); and redis-cell's layout: an integer string (a TAT in
# ns) with a TTL, what CL.THROTTLE keys cost under redis-cell. Keys are
# written by a Lua loop inside the server (one EVAL per 100,000 keys).
#
# Prints a markdown table: kind, RDB bytes per key, load ms (the median of
# LOADS restarts, taken in turns across the kinds so that a busy moment
# falls on all of them alike; the range beside it), DEBUG RELOAD ms, and the
# ratio of bytes and load time to redis-cell's strings.
# Environment: N [1000000]; SERVER [redis-server]; MODULE [scripts/build.sh];
# KINDS [cell-string throttle knobs permit lease] (cell-string is the
# reference, always included); LOADS [5]; CALLGRIND=1 also loads each RDB
# once in a server under callgrind and prints the instructions per key
# (the whole run's, less a start with no RDB; needs valgrind: use N=200000
# or so, callgrind runs about 50 times slower); the dumps are kept in
# target/rdb-callgrind/KIND.cg.out for callgrind_annotate.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
N=${N:-1000000}
SERVER=${SERVER:-redis-server}
MODULE=${MODULE:-$(scripts/build.sh)}
CLI=${CLI:-redis-cli}
work=$(mktemp -d)
trap 'for p in "$work"/*.port; do [ -f "$p" ] && $CLI -p "$(cat "$p")" shutdown nosave >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # dir port
  "$SERVER" --port "$2" --bind 127.0.0.1 --dir "$1" --dbfilename dump.rdb --save "" \
    --appendonly no --daemonize yes --logfile "$1/log" --enable-debug-command yes \
    --loadmodule "$MODULE" >/dev/null
  for _ in $(seq 100); do $CLI -p "$2" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "rdb: the server on $2 did not start" >&2; cat "$1/log" >&2; exit 1
}

# Each kind: the Lua body run for i in [from, to].
declare -A body=(
  [throttle]="redis.call('THROTTLE', 'rl:' .. string.format('%012d', i), '0.001', 80000, 1)"
  [knobs]="redis.call('THROTTLE.SET', 'rl:' .. string.format('%012d', i), 'RPS', '0.001', 'BURST', 80000, 'WINDOW', 1); redis.call('THROTTLE', 'rl:' .. string.format('%012d', i))"
  [permit]="redis.call('PERMIT', 'rl:' .. string.format('%012d', i), 3600000, 10)"
  [lease]="redis.call('LEASE', 'rl:' .. string.format('%012d', i), 10, 3600000)"
  [cell-string]="redis.call('SET', 'rl:' .. string.format('%012d', i), '18000000000' .. string.format('%08d', i), 'PX', 3600000)"
)
kinds="cell-string $(echo "${KINDS:-throttle knobs permit lease}" | tr ' ' '\n' | grep -vx cell-string | tr '\n' ' ')"
LOADS=${LOADS:-5}

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

declare -A bytes=() load=() reload=()
for kind in $kinds; do
  dir="$work/$kind"
  mkdir -p "$dir"
  port=$(free_port)
  echo "$port" >"$work/$kind.port"
  start "$dir" "$port"
  step=100000
  for ((from = 1; from <= N; from += step)); do
    to=$((from + step - 1)); [ "$to" -le "$N" ] || to=$N
    $CLI -p "$port" eval "for i = $from, $to do ${body[$kind]} end return 1" 0 >/dev/null
  done
  have=$($CLI -p "$port" dbsize)
  [ "$have" = "$N" ] || { echo "rdb: $kind: $have keys, not $N" >&2; exit 1; }
  $CLI -p "$port" save >/dev/null
  bytes[$kind]=$(stat -c %s "$dir/dump.rdb")
  t=$(date +%s%N)
  $CLI -p "$port" debug reload >/dev/null
  reload[$kind]=$(ms_since "$t")
  $CLI -p "$port" shutdown nosave >/dev/null 2>&1 || true
  rm -f "$work/$kind.port"
  echo "rdb: $kind written" >&2
done

# The loads: a restart of each kind's server in turn, LOADS times.
declare -A loads=()
for ((round = 1; round <= LOADS; round++)); do
  for kind in $kinds; do
    dir="$work/$kind"
    port=$(free_port)
    echo "$port" >"$work/$kind.port"
    sleep 0.5
    : >"$dir/log"
    start "$dir" "$port"
    for _ in $(seq 600); do
      grep -q "DB loaded from disk" "$dir/log" && break; sleep 0.1
    done
    secs=$(grep "DB loaded from disk" "$dir/log" | tail -1 | sed -E 's/.*DB loaded from disk: ([0-9.]+) seconds.*/\1/')
    loads[$kind]="${loads[$kind]:-} $(python3 -c "print(round(float('$secs') * 1000))")"
    have=$($CLI -p "$port" dbsize)
    [ "$have" = "$N" ] || { echo "rdb: $kind: $have keys after the restart, not $N" >&2; exit 1; }
    $CLI -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$work/$kind.port"
  done
  echo "rdb: loads, round $round of $LOADS done" >&2
done
for kind in $kinds; do
  load[$kind]=$(echo ${loads[$kind]} | tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[1] "-" v[NR] }')
done

# Instructions per key: each RDB loaded by a server under callgrind, less
# a start of the same server with no RDB.
declare -A instr=()
if [ "${CALLGRIND:-0}" = 1 ]; then
  command -v valgrind >/dev/null 2>&1 || { echo "rdb: CALLGRIND=1 needs valgrind" >&2; exit 1; }
  mkdir -p "$work/empty"
  for kind in empty $kinds; do
    dir="$work/$kind"
    port=$(free_port)
    : >"$dir/log"
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$SERVER" --port "$port" --bind 127.0.0.1 \
      --dir "$dir" --dbfilename dump.rdb --save "" --appendonly no --logfile "$dir/log" \
      --loadmodule "$MODULE" >"$dir/valgrind.log" 2>&1 &
    pid=$!
    for _ in $(seq 1200); do
      grep -q "Ready to accept" "$dir/log" 2>/dev/null && break; sleep 0.5
    done
    $CLI -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    instr[$kind]=$(sed -n 's/^totals: *//p' "$dir/cg.out" | head -1)
    [ -n "${instr[$kind]}" ] || { echo "rdb: no callgrind totals for $kind" >&2; cat "$dir/valgrind.log" >&2; exit 1; }
    mkdir -p "$ROOT/target/rdb-callgrind"
    cp "$dir/cg.out" "$ROOT/target/rdb-callgrind/$kind.cg.out"
    echo "rdb: $kind loaded under callgrind" >&2
  done
fi

declare -A names=(
  [cell-string]="redis-cell's layout (an integer string with a TTL)"
  [throttle]="THROTTLE buckets" [knobs]="THROTTLE buckets with knobs"
  [permit]="PERMIT keys" [lease]="LEASE keys (one live lease)"
)
version=$("$SERVER" --version | sed -E 's/.*v=([0-9.]+).*/\1/')
echo "RDB of $N keys per kind, $(basename "$SERVER") $version, $(date -u +%Y-%m-%d); load: the median of $LOADS restarts each, in turns:"
echo
echo "| keys | RDB bytes per key | load ms (median) | load ms (range) | DEBUG RELOAD ms | bytes vs strings | load vs strings |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for kind in $kinds; do
  read -r median range <<<"${load[$kind]}"
  read -r median0 _ <<<"${load[cell-string]}"
  python3 -c 'import sys
n, b, l, r, b0, l0 = map(int, sys.argv[2:8])
print(f"| {sys.argv[1]} | {b / n:.1f} | {l} | {sys.argv[8]} | {r} | {b / b0:.2f}× | {l / max(l0, 1):.2f}× |")' \
    "${names[$kind]}" "$N" "${bytes[$kind]}" "$median" "${reload[$kind]}" "${bytes[cell-string]}" "$median0" "$range"
done
if [ "${CALLGRIND:-0}" = 1 ]; then
  echo
  echo "Load instructions (callgrind; the whole load, less a start without an RDB):"
  echo
  echo "| keys | instructions per key | vs strings |"
  echo "|---|---:|---:|"
  for kind in $kinds; do
    python3 -c 'import sys
n, i, i0, e = map(int, sys.argv[2:])
print(f"| {sys.argv[1]} | {(i - e) / n:,.0f} | {(i - e) / (i0 - e):.2f}× |")' \
      "${names[$kind]}" "$N" "${instr[$kind]}" "${instr[cell-string]}" "${instr[empty]}"
  done
fi
