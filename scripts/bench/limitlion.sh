#!/usr/bin/env bash
# THROTTLE.LIMITLION (LimitLion's algorithm, compiled into the module)
# against LimitLion's own Lua script through EVALSHA, on the same keys, and
# both against INCR, with THROTTLE given the same arguments beside them
# (issue 21, "Speed"). One server, one run, redis-benchmark; prints a
# markdown report on stdout, progress on stderr.
#
#   scripts/bench/limitlion.sh                     # ~6 min on 2 busy cores
#   QUICK=1 scripts/bench/limitlion.sh             # ~30 s: 2 rounds, 100k requests per run
#   SERVER=redis-7.4.1 scripts/bench/limitlion.sh  # another server (a path, or a name for scripts/servers.sh)
#   MODULE=/tmp/other.so scripts/bench/limitlion.sh
#
# LimitLion's script is `limitlion/limitlion/throttle.lua` from
# ../shared/peers/limitlion-6411f9f.tar.gz (LIMITLION_TARBALL), loaded as is
# with SCRIPT LOAD and called as LimitLion calls it:
# `EVALSHA sha 0 name rps burst window requested_tokens knobs_ttl`, the
# bucket being `name` and its knobs `name:knobs`. Workloads (-c CLIENTS,
# pipeline 1 and 16, -r KEYSPACE random keys, or one hot key):
#
#   INCR                 INCR li:__rand_int__
#   THROTTLE.LIMITLION   THROTTLE.LIMITLION throttle:__rand_int__ throttle:__rand_int__:knobs 5 10 6 1 604800
#   LimitLion's Lua      EVALSHA <sha> 0 throttle:__rand_int__ 5 10 6 1 604800
#   THROTTLE             THROTTLE bt:__rand_int__ 5 10 6
#
# (redis-benchmark draws each __rand_int__ on its own, so the knobs key of
# a THROTTLE.LIMITLION call names another bucket than its own; no knobs
# hash exists, so every call reads a missing knobs key either way.)
# rps 5, burst 10, window 6: a bucket of ceil(5 × 10 × 6) = 300 tokens,
# refilled by 30 at each 6-second window, kept floor(10 × 6 × 2) = 120 s.
# The two LimitLion implementations share their buckets (the same key
# names): each group warms them with one THROTTLE.LIMITLION pass, so both
# update buckets that exist, as a running service does. Random keys: every
# call is allowed (a few calls per bucket per run); hot key: after 300,
# 30 every 6 s, so nearly every call is denied, and LimitLion (both forms)
# still writes the bucket on every call; a denied THROTTLE writes nothing.
# THROTTLE's key expires when its bucket is full again (0.2 s per token
# here), so on random keys most THROTTLE calls create their key.
#
# Before timing, the script checks that the two LimitLion forms agree: the
# same 12 calls on fresh buckets of 10 tokens give the same
# (allowed, tokens), 10 allowed, and so do 12 calls alternating between
# the two on one bucket.
#
# Speed is reported as ratios to INCR on the same server: every command's
# run immediately follows an INCR run; medians over ROUNDS rounds, with
# best/best (the best run over the best INCR run of the group), server CPU
# per call (INFO cpu) and its ratio to INCR's, and the load average.
#
# Environment (defaults in brackets; QUICK=1 lowers the starred ones):
#   SERVER [Debian's redis-server 7.0.15]  MODULE [cargo build --release]
#   LIMITLION_TARBALL [../shared/peers/limitlion-6411f9f.tar.gz]
#   ROUNDS [5*]  REQUESTS [300000*] per run at pipeline > 1, a tenth at pipeline 1
#   LUA_SHARE [4] the Lua runs do REQUESTS/LUA_SHARE  CLIENTS [50]
#   KEYSPACE [100000]  PIPELINES ["1 16"]  SERVER_CPU [0]  CLIENT_CPU [1]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

if [ "${QUICK:-0}" = 1 ]; then
  def_rounds=2 def_requests=100000
else
  def_rounds=5 def_requests=300000
fi
SERVER=${SERVER:-/usr/bin/redis-server}
MODULE=${MODULE:-}
LIMITLION_TARBALL=${LIMITLION_TARBALL:-$ROOT/../shared/peers/limitlion-6411f9f.tar.gz}
ROUNDS=${ROUNDS:-$def_rounds}
REQUESTS=${REQUESTS:-$def_requests}
LUA_SHARE=${LUA_SHARE:-4}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
PIPELINES=${PIPELINES:-"1 16"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

log() { echo "limitlion-bench: $*" >&2; }
die() { log "$*"; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/limitlion-bench.XXXXXX")
SPID=""
cleanup() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools, module, LimitLion's script, server ---------------------------------------
# redis-server, redis-cli and redis-benchmark come from Debian's packages
# (scripts/deps.sh installs them when missing).
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null 2>&1 || need_deps=1
done
[ "${need_deps:-0}" = 0 ] || source scripts/deps.sh
for tool in python3 awk tar; do
  command -v "$tool" >/dev/null 2>&1 || die "needs $tool"
done
[ -f "$LIMITLION_TARBALL" ] || die "no LimitLion tarball at $LIMITLION_TARBALL (set LIMITLION_TARBALL)"
tar -xzf "$LIMITLION_TARBALL" -C "$tmp" limitlion/limitlion/throttle.lua
LUA=$tmp/limitlion/limitlion/throttle.lua
if [ -z "$MODULE" ]; then
  log "building the module (release; nothing to do when up to date)"
  cargo build --release -p redis-throttle >&2
  MODULE=$ROOT/target/release/libredis_throttle.so
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
  git diff --quiet HEAD -- src core Cargo.toml Cargo.lock 2>/dev/null || commit="$commit with uncommitted changes"
  module_desc="target/release/libredis_throttle.so built from commit $commit"
else
  [ -f "$MODULE" ] || die "module not found: $MODULE"
  module_desc="MODULE=$MODULE (sha1 $(sha1sum "$MODULE" | cut -c1-12))"
fi
case $SERVER in
  */*) ;;
  *) SERVER=$(scripts/servers.sh bin "$SERVER") || die "no server $SERVER (scripts/servers.sh list)" ;;
esac
"$SERVER" --version >/dev/null 2>&1 || die "cannot run $SERVER"
# Private copies: on a shared machine a package upgrade may remove or
# replace the originals while this runs (Debian's redis-server is a link to
# redis-check-rdb and picks its role from its name: keep the name).
mkdir -p "$tmp/bin"
cp -L "$SERVER" "$tmp/bin/$(basename "$SERVER")"
SERVER_PATH=$SERVER
SERVER=$tmp/bin/$(basename "$SERVER")
for tool in redis-cli redis-benchmark; do cp -L "$(command -v "$tool")" "$tmp/bin/"; done
PATH=$tmp/bin:$PATH

if [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  SPIN=(taskset -c "$SERVER_CPU") CPIN=(taskset -c "$CLIENT_CPU")
  pinning="server on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU (taskset)"
else
  SPIN=() CPIN=()
  pinning="none ($(nproc 2>/dev/null || echo 1) CPU(s) or no taskset)"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=""
start_server() {
  local attempt
  mkdir -p "$tmp/server"
  for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    "${SPIN[@]}" "$SERVER" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$tmp/server" --daemonize no --logfile "$tmp/server/log" --loadmodule "$MODULE" &
    SPID=$!
    for _ in $(seq 1 100); do
      kill -0 "$SPID" 2>/dev/null || break
      [ "$(redis-cli -p "$PORT" PING 2>/dev/null)" = PONG ] && return 0
      sleep 0.1
    done
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
    log "the server did not start on port $PORT (attempt $attempt):"
    tail -5 "$tmp/server/log" >&2 || true
  done
  die "could not start $SERVER"
}
cli() { redis-cli -p "$PORT" "$@"; }
info_field() { cli INFO "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }
cpu_now() { cli INFO cpu | tr -d '\r' | awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" { t += $2 } END { printf "%.6f", t }'; }

start_server
version=$(info_field server redis_version)
SHA=$(cli -x SCRIPT LOAD <"$LUA") # the file's exact bytes, as redis-py loads it
[ "$SHA" = "$(sha1sum "$LUA" | cut -c1-40)" ] || die "SCRIPT LOAD of LimitLion's throttle.lua answered $SHA"
log "server $SERVER_PATH ($version) on port $PORT, $pinning; LimitLion's script $SHA"

# ---- the two LimitLion forms agree --------------------------------------------------
# (allowed tokens) of each of 12 calls, one pair per line; FORM: ll, lua or
# mixed (alternating, starting with the module).
twelve() { # FORM NAME
  local i form
  for i in $(seq 1 12); do
    form=$1
    [ "$form" = mixed ] && { [ $((i % 2)) = 1 ] && form=ll || form=lua; }
    if [ "$form" = ll ]; then
      cli THROTTLE.LIMITLION "$2" "$2:knobs" 0.1 1 100 1 604800
    else
      cli EVALSHA "$SHA" 0 "$2" 0.1 1 100 1 604800
    fi | head -2 | tr '\n' ' '
    echo
  done
}
a=$(twelve ll check:a)
b=$(twelve lua check:b)
c=$(twelve mixed check:c)
[ "$a" = "$b" ] && [ "$a" = "$c" ] ||
  die "THROTTLE.LIMITLION and LimitLion's script disagree: $(echo "$a" | tr '\n' '|') against $(echo "$b" | tr '\n' '|'), mixed $(echo "$c" | tr '\n' '|')"
[ "$(echo "$a" | grep -c '^1 ')" = 10 ] || die "expected 10 of 12 allowed (a bucket of 10): $a"
[ "$(cli HGET check:a tokens)" = "$(cli HGET check:b tokens)" ] || die "the buckets differ after the same calls"
log "THROTTLE.LIMITLION and LimitLion's script agree: 10 of 12 allowed, the same tokens, also alternating on one bucket"
cli FLUSHALL >/dev/null

# ---- workloads ----------------------------------------------------------------------------
names=(LIMITLION LUA THROTTLE)
declare -A rand_cmd=(
  [INCR]="INCR li:__rand_int__"
  [LIMITLION]="THROTTLE.LIMITLION throttle:__rand_int__ throttle:__rand_int__:knobs 5 10 6 1 604800"
  [LUA]="EVALSHA $SHA 0 throttle:__rand_int__ 5 10 6 1 604800"
  [THROTTLE]="THROTTLE bt:__rand_int__ 5 10 6"
)
declare -A hot_cmd=()
for n in "${!rand_cmd[@]}"; do hot_cmd[$n]=${rand_cmd[$n]//__rand_int__/hot}; done
declare -A label=(
  [INCR]="INCR"
  [LIMITLION]="THROTTLE.LIMITLION"
  [LUA]="LimitLion's Lua (EVALSHA)"
  [THROTTLE]="THROTTLE (same rps burst window)"
)

# Allowed and total calls so far, from INFO throttle (the module's own commands).
counters() { # NAME
  local prefix
  case $1 in
    LIMITLION) prefix=limitlion ;;
    THROTTLE) prefix=throttle ;;
    *) echo "0 0"; return ;;
  esac
  cli INFO throttle | tr -d '\r' | awk -F: -v p="$prefix" '
    $1 == "throttle_" p "_allowed" || ($1 == "throttle_allowed" && p == "throttle") { a = $2 }
    $1 == "throttle_" p "_denied" || ($1 == "throttle_denied" && p == "throttle") { d = $2 }
    END { print a + 0, a + d }'
}

# bench_once PIPELINE REQUESTS CMD: one redis-benchmark run; sets LINE to its
# CSV result: "test","rps","avg","min","p50","p95","p99","max".
bench_once() {
  local pl=$1 n=$2 words out
  read -r -a words <<<"$3"
  out=$("${CPIN[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$CLIENTS" -n "$n" -P "$pl" \
    -r "$KEYSPACE" --csv "${words[@]}" 2>&1) || true
  LINE=$(printf '%s\n' "$out" | grep '^"' | grep -v '^"test"' | tail -1)
  if [ -z "$LINE" ] || printf '%s\n' "$out" | grep -q -i 'error'; then
    printf '%s\n' "$out" | tail -3 >&2
    die "redis-benchmark failed on: $3"
  fi
}

RUNS=$tmp/runs.tsv # round pipeline keys name ops/s p50 p99 allowed% cpu_us load incr_ops incr_cpu
: >"$RUNS"
# run ROUND PIPELINE KEYS NAME BASE BASE_CPU: one timed run; sets RPS and CPU.
run() {
  local round=$1 pl=$2 keys=$3 name=$4 base=$5 base_cpu=$6 n cmd a0 t0 a1 t1 c0 c1 mix load
  if [ "$keys" = random ]; then cmd=${rand_cmd[$name]}; else cmd=${hot_cmd[$name]}; fi
  if [ "$pl" -gt 1 ]; then n=$REQUESTS; else n=$((REQUESTS / 10)); fi
  [ "$name" = LUA ] && n=$((n / LUA_SHARE))
  load=$(load1)
  read -r a0 t0 < <(counters "$name")
  c0=$(cpu_now)
  bench_once "$pl" "$n" "$cmd"
  c1=$(cpu_now)
  read -r a1 t1 < <(counters "$name")
  CPU=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.3f", (b - a) * 1e6 / n }')
  if [ "$t1" -gt "$t0" ]; then
    mix=$(awk -v a=$((a1 - a0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", 100 * a / t }')
  else
    mix=-
  fi
  # Fields counted from the end: the command line may contain anything.
  RPS=$(printf '%s' "$LINE" | awk -F'"' '{ print $(NF-13) }')
  printf '%s\n' "$LINE" | awk -F'"' -v r="$round" -v p="$pl" -v k="$keys" -v n="$name" -v m="$mix" \
    -v c="$CPU" -v l="$load" -v b="${base:-$RPS}" -v bc="${base_cpu:-$CPU}" \
    '{ printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, p, k, n, $(NF-13), $(NF-7), $(NF-3), m, c, l, b, bc }' >>"$RUNS"
  log "round $round P$pl $keys ${label[$name]}: $RPS ops/s, $CPU µs CPU/call, load $load$([ -z "$base" ] ||
    awk -v a="$RPS" -v b="$base" -v c="$CPU" -v bc="$base_cpu" 'BEGIN { printf " = %.2f x INCR (CPU: %.2f)", a / b, bc / c }')$([ "$mix" = - ] || echo ", allowed $mix%")"
}

LOAD_START=$(uptime)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
for round in $(seq 1 "$ROUNDS"); do
  for pl in $PIPELINES; do
    for keys in random hot; do
      # Each group starts empty, with INCR's keys and the LimitLion buckets warmed up.
      cli FLUSHALL >/dev/null
      bench_once 16 $((KEYSPACE * 3)) "${rand_cmd[INCR]}"
      if [ "$keys" = random ]; then
        bench_once 16 $((KEYSPACE * 2)) "${rand_cmd[LIMITLION]}"
      else
        bench_once 16 1000 "${hot_cmd[LIMITLION]}"
      fi
      for name in "${names[@]}"; do
        run "$round" "$pl" "$keys" INCR "" ""
        base=$RPS base_cpu=$CPU
        run "$round" "$pl" "$keys" "$name" "$base" "$base_cpu"
      done
    done
  done
done
LOAD_END=$(uptime)

# ---- report -------------------------------------------------------------------------
export R_STARTED=$STARTED R_SERVER="$SERVER_PATH, Redis $version" R_MODULE=$module_desc
export R_SCRIPT="limitlion/limitlion/throttle.lua from $(basename "$LIMITLION_TARBALL"), SHA1 $SHA"
export R_MACHINE="$(nproc) CPU(s), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo "?")"
export R_PINNING=$pinning R_LOAD_START=$LOAD_START R_LOAD_END=$LOAD_END
export R_CLIENT="redis-benchmark $(redis-benchmark --version | awk '{ print $2 }'), -c $CLIENTS, -r $KEYSPACE, $REQUESTS requests per run at pipeline 16 and $((REQUESTS / 10)) at pipeline 1 (the Lua script 1/$LUA_SHARE of that), $ROUNDS rounds"
python3 - "$RUNS" <<'PY'
import os
import statistics as st
import sys

E = os.environ

runs = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = st.median
label = {
    "INCR": "INCR",
    "LIMITLION": "THROTTLE.LIMITLION",
    "LUA": "LimitLion's Lua (EVALSHA)",
    "THROTTLE": "THROTTLE (same rps burst window)",
}
print("# THROTTLE.LIMITLION beside LimitLion's Lua script and INCR")
print()
print(f"`scripts/bench/limitlion.sh`, {E['R_STARTED']}.")
print()
print(f"- server: {E['R_SERVER']}")
print(f"- module: {E['R_MODULE']}")
print(f"- LimitLion's script: {E['R_SCRIPT']}")
print(f"- machine: {E['R_MACHINE']}")
print(f"- pinning: {E['R_PINNING']}")
print(f"- client: {E['R_CLIENT']}")
print(f"- load at the start: `{E['R_LOAD_START'].strip()}`")
print(f"- load at the end: `{E['R_LOAD_END'].strip()}`")
print()
print("| keys | pipeline | command | ops/s | × INCR | range | best/best | CPU µs/call | CPU × INCR | p50 ms | p99 ms | allowed | load |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
groups = []
for r in runs:
    g = (int(r[1]), r[2])
    if g not in groups:
        groups.append(g)
for pl, keys in sorted(groups, key=lambda g: (g[0], g[1] != "random")):
    rs = [r for r in runs if int(r[1]) == pl and r[2] == keys]
    best_incr = max(float(r[4]) for r in rs if r[3] == "INCR")
    for name in ("INCR", "LIMITLION", "LUA", "THROTTLE"):
        k = [r for r in rs if r[3] == name]
        if not k:
            continue
        ops = [float(r[4]) for r in k]
        loads = [float(r[9]) for r in k]
        cpu = [float(r[8]) for r in k]
        mixes = [r[7] for r in k if r[7] != "-"]
        allowed = f"{med([float(m) for m in mixes]):.0f}%" if mixes else "n/a"
        if name == "INCR":
            rr, rng, bb, cr = "1.00", "", "1.00", "1.00"
        else:
            ratio = [float(r[4]) / float(r[10]) for r in k]
            rr = f"{med(ratio):.2f}"
            rng = f"{min(ratio):.2f}–{max(ratio):.2f}"
            bb = f"{max(ops) / best_incr:.2f}"
            cr = f"{med([float(r[11]) / float(r[8]) for r in k]):.2f}"
        p50 = med([float(r[5]) for r in k])
        p99 = med([float(r[6]) for r in k])
        print(f"| {keys} | {pl} | {label[name]} | {med(ops):,.0f} | {rr} | {rng} | {bb} | {med(cpu):.2f} | {cr} | {p50:.3f} | {p99:.3f} | {allowed} | {min(loads):.1f}–{max(loads):.1f} |")

print()
print("THROTTLE.LIMITLION ÷ LimitLion's Lua (median over rounds of the two ratios to their own INCR run; by CPU: Lua's CPU per call ÷ the module's):")
print()
print("| keys | pipeline | ops/s | by CPU |")
print("|---|---:|---:|---:|")
for pl, keys in sorted(groups, key=lambda g: (g[0], g[1] != "random")):
    rs = [r for r in runs if int(r[1]) == pl and r[2] == keys]
    per = {}
    for r in rs:
        per.setdefault(r[0], {})[r[3]] = r
    ops, cpu = [], []
    for rnd, d in per.items():
        if "LIMITLION" in d and "LUA" in d:
            a, b = d["LIMITLION"], d["LUA"]
            ops.append((float(a[4]) / float(a[10])) / (float(b[4]) / float(b[10])))
            cpu.append(float(b[8]) / float(a[8]))
    if ops:
        print(f"| {keys} | {pl} | {med(ops):.2f}× ({min(ops):.2f}–{max(ops):.2f}) | {med(cpu):.2f}× ({min(cpu):.2f}–{max(cpu):.2f}) |")

print()
print("## Every run")
print()
print("| round | pipeline | keys | command | ops/s | p50 ms | p99 ms | allowed | CPU µs/call | load | INCR ops/s before |")
print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {label[r[3]]} | {float(r[4]):,.0f} | {r[5]} | {r[6]} | {r[7]} | {r[8]} | {r[9]} | {float(r[10]):,.0f} |")
PY
