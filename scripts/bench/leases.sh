#!/usr/bin/env bash
# Leases (LEASE, LEASE.RELEASE) side by side with INCR and with the
# sorted-set semaphore users run today, in one run on one server (issue
# 24's "Speed and memory"). Prints a markdown report on stdout; progress
# goes to stderr.
#
#   scripts/bench/leases.sh                     # ~4-5 min on 2 busy cores
#   QUICK=1 scripts/bench/leases.sh             # ~45 s: 2 rounds, 1 s runs, 100k keys, 1 waiters round
#   PARTS="memory" scripts/bench/leases.sh      # some parts only: pairs memory waiters
#   SERVER=redis-7.4.1 scripts/bench/leases.sh  # another server (a path, or a name for scripts/servers.sh)
#   MODULE=/tmp/other.so scripts/bench/leases.sh
#
# One server (loopback, a free port, no persistence) with the module; the
# sorted-set semaphore is two Lua scripts on the same server (below). With
# 2 or more CPUs the server runs on CPU SERVER_CPU and the clients on
# CLIENT_CPU (taskset). The machine is assumed shared and busy: speed is
# reported as ratios to INCR + DECR pairs measured on the same server just
# before, medians over ROUNDS rounds, and the load average is recorded with
# every run.
#
# Parts:
# - pairs: pairs per second of acquire + release, driven by
#   bench-tools' pairbench (CLIENTS connections, each running pairs back to
#   back, PIPELINE pairs at a time; the release carries the id the acquire
#   answered), for KEYSPACE random keys and for one hot key:
#     INCR+DECR:  INCR bi:{key}                          / DECR bi:{key}
#     LEASE:      LEASE bl:{key} LIMIT 60000             / LEASE.RELEASE bl:{key} {id}
#     ZSET (Lua): EVALSHA acquire 1 bz:{key} LIMIT 60000 {member} / EVALSHA release 1 bz:{key} {id}
#   LIMIT is at least CLIENTS × PIPELINE, so every acquire is granted, even
#   on the hot key (where that many leases are live at once).
# - memory: used_memory delta for one key holding HOLDERS live leases (1 to
#   10,000, the most a key holds), for LEASE and for the ZSET semaphore, with
#   MEMORY USAGE and the DUMP length (the RDB encoding) per lease; then
#   MEMKEYS keys holding one lease each, beside INCR + PEXPIRE keys.
# - waiters: bench-tools' leasewait: a key with limit 1 held, WAITERS
#   clients queued with LEASE … BLOCK, then a chain where each admitted
#   waiter releases at once; per admission, the time from sending the
#   release to the next waiter's reply. Beside it, the same chain on Redis's
#   own blocking (BLPOP waiters, LPUSH of one token), the floor for any
#   hand-off through the server. WAIT_ROUNDS rounds each.
#
# The sorted-set semaphore (ZSET): the shape of redis-semaphore's and
# similar libraries' scripts, with the server's clock. Acquire: TIME,
# ZREMRANGEBYSCORE the expired, ZCARD, and if below the limit ZADD the
# caller's member scored by its expiry and PEXPIRE the key by the ttl;
# release: ZREM. Members are client-chosen 16-digit numbers (the size of a
# LEASE id; a UUID would cost more). It has no fencing ids and no waiting.
#
# Environment (defaults in brackets; QUICK=1 lowers the starred ones):
#   SERVER [Debian's redis-server 7.0.15] a path, or a name for scripts/servers.sh
#   MODULE [cargo build --release] a prebuilt libredis_throttle.so
#   PARTS ["pairs memory waiters"]  ROUNDS [5*]  RUN_SECONDS [2*] per timed run
#   CLIENTS [50]  PIPELINES ["1 16"]  KEYSPACE [100000]  LIMIT [1000]
#   HOLDERS ["1 10 100 1000 10000"]  MEMKEYS [1000000*]
#   WAITERS [1000]  WAIT_ROUNDS [3*]
#   SERVER_CPU [0]  CLIENT_CPU [1]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

if [ "${QUICK:-0}" = 1 ]; then
  def_rounds=2 def_seconds=1 def_memkeys=100000 def_wait_rounds=1
else
  def_rounds=5 def_seconds=2 def_memkeys=1000000 def_wait_rounds=3
fi
SERVER=${SERVER:-/usr/bin/redis-server}
MODULE=${MODULE:-}
PARTS=${PARTS:-"pairs memory waiters"}
ROUNDS=${ROUNDS:-$def_rounds}
RUN_SECONDS=${RUN_SECONDS:-$def_seconds}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
KEYSPACE=${KEYSPACE:-100000}
LIMIT=${LIMIT:-1000}
HOLDERS=${HOLDERS:-"1 10 100 1000 10000"}
MEMKEYS=${MEMKEYS:-$def_memkeys}
WAITERS=${WAITERS:-1000}
WAIT_ROUNDS=${WAIT_ROUNDS:-$def_wait_rounds}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

log() { echo "leases: $*" >&2; }
die() { log "$*"; exit 1; }
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
load1() { cut -d' ' -f1 /proc/loadavg; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/leases-bench.XXXXXX")
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

# ---- tools, module, server ------------------------------------------------------
# redis-server and redis-cli come from Debian's packages
# (scripts/deps.sh installs them when missing).
for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || need_deps=1
done
[ "${need_deps:-0}" = 0 ] || source scripts/deps.sh
for tool in python3 awk; do
  command -v "$tool" >/dev/null 2>&1 || die "needs $tool"
done
if [ -z "$MODULE" ]; then
  log "building the module and bench-tools (release; nothing to do when up to date)"
  cargo build --release -p redis-throttle -p bench-tools >&2
  MODULE=$ROOT/target/release/libredis_throttle.so
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
  git diff --quiet HEAD -- src core Cargo.toml Cargo.lock 2>/dev/null || commit="$commit with uncommitted changes"
  module_desc="target/release/libredis_throttle.so built from commit $commit"
else
  [ -f "$MODULE" ] || die "module not found: $MODULE"
  module_desc="MODULE=$MODULE (sha1 $(sha1sum "$MODULE" | cut -c1-12))"
  cargo build --release -p bench-tools >&2
fi
PAIRBENCH=$ROOT/target/release/pairbench
LEASEWAIT=$ROOT/target/release/leasewait
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
for tool in redis-cli; do cp -L "$(command -v "$tool")" "$tmp/bin/"; done
PATH=$tmp/bin:$PATH

if [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  SPIN=(taskset -c "$SERVER_CPU") CPIN=(taskset -c "$CLIENT_CPU")
  pinning="server on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU (taskset)"
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
      --dir "$tmp/server" --daemonize no --logfile "$tmp/server/log" --maxclients 4000 \
      --loadmodule "$MODULE" &
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
log "server $SERVER_PATH ($version) on port $PORT, $pinning"

# The sorted-set semaphore.
ZACQ='local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
local n = redis.call("ZCARD", KEYS[1])
if n >= limit then return false end
redis.call("ZADD", KEYS[1], now + ttl, ARGV[3])
redis.call("PEXPIRE", KEYS[1], ttl)
return {ARGV[3], now + ttl, n + 1, limit}'
ZREL='return redis.call("ZREM", KEYS[1], ARGV[1])'
ZACQ_SHA=$(cli SCRIPT LOAD "$ZACQ")
ZREL_SHA=$(cli SCRIPT LOAD "$ZREL")

# Both limit as they should before anything is timed: 2 of 3 granted, a
# release frees a place.
check_limit() { # NAME ACQUIRE... (the member, when needed, is appended)
  local name=$1 got=() r out
  shift
  for m in 1700000000000001 1700000000000002 1700000000000003; do
    r=$(cli "$@" $([ "$name" = ZSET ] && echo "$m") | head -1)
    got+=("${r:-nil}")
  done
  [ "${got[0]}" != nil ] && [ "${got[1]}" != nil ] && [ "${got[2]}" = nil ] ||
    die "$name: 3 acquires on limit 2 answered ${got[*]} (first lines)"
  if [ "$name" = ZSET ]; then
    out=$(cli EVALSHA "$ZREL_SHA" 1 check:z "${got[0]}")
  else
    out=$(cli LEASE.RELEASE check:l "${got[0]}")
  fi
  [ "$out" = 1 ] || die "$name: the release answered $out"
  log "$name: 2 of 3 granted on limit 2, release answered 1"
}
check_limit LEASE LEASE check:l 2 60000
check_limit ZSET EVALSHA "$ZACQ_SHA" 1 check:z 2 60000
cli FLUSHALL >/dev/null

LOAD_START=$(uptime)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
META=$tmp/meta.tsv
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
meta started "$STARTED"
meta load_start "$LOAD_START"
meta server "$SERVER_PATH, Redis $version"
meta module "$module_desc"
meta machine "$(nproc) CPU(s), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo "?")"
meta pinning "$pinning"
meta setup "CLIENTS=$CLIENTS PIPELINES='$PIPELINES' KEYSPACE=$KEYSPACE LIMIT=$LIMIT ROUNDS=$ROUNDS RUN_SECONDS=$RUN_SECONDS HOLDERS='$HOLDERS' MEMKEYS=$MEMKEYS WAITERS=$WAITERS WAIT_ROUNDS=$WAIT_ROUNDS"
meta parts "$PARTS"

# ---- pairs ------------------------------------------------------------------------
PAIRS=$tmp/pairs.tsv # round pipeline keys kind pairs/s granted denied released cpu_us/pair load incr_pairs/s incr_cpu
: >"$PAIRS"
for pl in $PIPELINES; do
  [ $((CLIENTS * pl)) -le "$LIMIT" ] || die "LIMIT=$LIMIT is below CLIENTS × PIPELINE = $((CLIENTS * pl)): the hot key would deny"
done
declare -A acq=(
  [INCR]="INCR bi:{key}"
  [LEASE]="LEASE bl:{key} $LIMIT 60000"
  [ZSET]="EVALSHA $ZACQ_SHA 1 bz:{key} $LIMIT 60000 {member}"
)
declare -A rel=(
  [INCR]="DECR bi:{key}"
  [LEASE]="LEASE.RELEASE bl:{key} {id}"
  [ZSET]="EVALSHA $ZREL_SHA 1 bz:{key} {id}"
)
# pairbench_run KIND PIPELINE KEYSPACE SECONDS: sets OUT (its key=value line).
pairbench_run() {
  OUT=$("${CPIN[@]}" "$PAIRBENCH" --port "$PORT" --clients "$CLIENTS" --pipeline "$2" \
    --keyspace "$3" --seconds "$4" --acquire "${acq[$1]}" --release "${rel[$1]}") ||
    die "pairbench failed on $1 (pipeline $2, keyspace $3): $OUT"
}
field() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
# run ROUND PIPELINE KEYS KIND BASE BASE_CPU: one timed run; sets PPS and CPU.
run() {
  local round=$1 pl=$2 keys=$3 kind=$4 base=$5 base_cpu=$6 ks c0 c1 load pairs
  ks=$KEYSPACE
  [ "$keys" = hot ] && ks=0
  load=$(load1)
  c0=$(cpu_now)
  pairbench_run "$kind" "$pl" "$ks" "$RUN_SECONDS"
  c1=$(cpu_now)
  PPS=$(field "$OUT" pairs_per_s)
  pairs=$(field "$OUT" pairs)
  CPU=$(awk -v a="$c0" -v b="$c1" -v n="$pairs" 'BEGIN { printf "%.3f", (b - a) * 1e6 / n }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$pl" "$keys" "$kind" "$PPS" \
    "$(field "$OUT" granted)" "$(field "$OUT" denied)" "$(field "$OUT" released)" "$CPU" "$load" \
    "${base:-$PPS}" "${base_cpu:-$CPU}" >>"$PAIRS"
  log "round $round P$pl $keys $kind: $PPS pairs/s, $CPU µs CPU/pair, load $load$([ -z "$base" ] ||
    awk -v a="$PPS" -v b="$base" -v c="$CPU" -v bc="$base_cpu" 'BEGIN { printf " = %.2f x INCR+DECR (CPU: %.2f)", a / b, bc / c }')"
}
if has_part pairs; then
  meta load_pairs_start "$(uptime)"
  for round in $(seq 1 "$ROUNDS"); do
    for pl in $PIPELINES; do
      for keys in random hot; do
        # Each group starts empty, with the INCR keys warmed up.
        cli FLUSHALL >/dev/null
        ks=$KEYSPACE
        [ "$keys" = hot ] && ks=0
        pairbench_run INCR "$pl" "$ks" 0.5
        for kind in LEASE ZSET; do
          run "$round" "$pl" "$keys" INCR "" ""
          base=$PPS base_cpu=$CPU
          run "$round" "$pl" "$keys" "$kind" "$base" "$base_cpu"
        done
      done
    done
  done
  meta load_pairs_end "$(uptime)"
fi

# ---- memory -------------------------------------------------------------------------
# gen COUNT 'CMD args': RESP for COUNT commands; __i__ becomes a 12-digit
# index (redis-benchmark's key length), __m__ a 16-digit member.
gen() {
  awk -v n="$1" -v tpl="$2" 'BEGIN {
    nw = split(tpl, w, " ")
    for (j = 1; j <= nw; j++) {
      if ((p = index(w[j], "__i__")) > 0) { kind[j] = "i"; pre[j] = substr(w[j], 1, p - 1); suf[j] = substr(w[j], p + 5) }
      else if ((p = index(w[j], "__m__")) > 0) { kind[j] = "m"; pre[j] = substr(w[j], 1, p - 1); suf[j] = substr(w[j], p + 5) }
      else { kind[j] = ""; fixed[j] = "$" length(w[j]) "\r\n" w[j] "\r\n" }
    }
    head = "*" nw "\r\n"
    for (i = 0; i < n; i++) {
      printf "%s", head
      for (j = 1; j <= nw; j++) {
        if (kind[j] == "") { printf "%s", fixed[j]; continue }
        a = pre[j] (kind[j] == "i" ? sprintf("%012d", i) : sprintf("%.0f", 1700000000000000 + i)) suf[j]
        printf "$%d\r\n%s\r\n", length(a), a
      }
    }
  }'
}
# used_memory once this reading client is the only one connected (a
# client that just left is freed a moment later; its buffers would count).
used_memory() {
  local out
  for _ in $(seq 1 100); do
    out=$(cli INFO all | tr -d '\r')
    if [ "$(printf '%s\n' "$out" | awk -F: '$1 == "connected_clients" { print $2 }')" = 1 ]; then
      printf '%s\n' "$out" | awk -F: '$1 == "used_memory" { print $2 }'
      return 0
    fi
    sleep 0.05
  done
  die "other clients stay connected: used_memory would count them"
}
# fill COUNT TEMPLATE...: pipes the commands; sets DELTA (used_memory after − before).
fill() {
  local n=$1 m0 m1 out tpl
  shift
  cli FLUSHALL >/dev/null
  m0=$(used_memory)
  for tpl in "$@"; do
    out=$(gen "$n" "$tpl" | cli --pipe 2>&1) || true
    case $out in *"errors: 0,"*) ;; *) die "filling '$tpl' failed: $(printf '%s' "$out" | tail -2)" ;; esac
  done
  m1=$(used_memory)
  DELTA=$((m1 - m0))
}
dump_len() { cli EVAL "return string.len(redis.call('DUMP', KEYS[1]))" 1 "$1"; }
MEM=$tmp/memory.tsv   # kind holders used_memory_delta memory_usage dump_bytes
KEYS_TSV=$tmp/keys.tsv # kind keys bytes/key memory_usage_of_one
: >"$MEM"
: >"$KEYS_TSV"
if has_part memory; then
  meta load_memory_start "$(uptime)"
  # Once, unmeasured: the first write of each kind after other work
  # allocates things that stay (seen: 25 KB on the first LEASE after the
  # pairs part), which would be charged to the first row.
  fill 1 "LEASE ml:000000000000 10000 3600000"
  fill 1 "EVALSHA $ZACQ_SHA 1 mz:000000000000 10000 3600000 __m__"
  for n in $HOLDERS; do
    fill "$n" "LEASE ml:000000000000 10000 3600000"
    got=$(cli LEASE.PEEK ml:000000000000 | head -1)
    [ "$got" = "$n" ] || die "LEASE: $got leases in use, not $n"
    printf 'LEASE\t%s\t%s\t%s\t%s\n' "$n" "$DELTA" "$(cli MEMORY USAGE ml:000000000000 SAMPLES 0)" \
      "$(dump_len ml:000000000000)" >>"$MEM"
    fill "$n" "EVALSHA $ZACQ_SHA 1 mz:000000000000 10000 3600000 __m__"
    got=$(cli ZCARD mz:000000000000)
    [ "$got" = "$n" ] || die "ZSET: $got members, not $n"
    printf 'ZSET\t%s\t%s\t%s\t%s\n' "$n" "$DELTA" "$(cli MEMORY USAGE mz:000000000000 SAMPLES 0)" \
      "$(dump_len mz:000000000000)" >>"$MEM"
    log "memory, $n on one key: LEASE $(awk -F'\t' -v n="$n" '$1 == "LEASE" && $2 == n { print $3 }' "$MEM") B, ZSET $DELTA B"
  done
  for kind in INCR LEASE ZSET; do
    case $kind in
      INCR) fill "$MEMKEYS" "INCR mk:__i__" "PEXPIRE mk:__i__ 3600000" ;;
      LEASE) fill "$MEMKEYS" "LEASE mk:__i__ 10 3600000" ;;
      ZSET) fill "$MEMKEYS" "EVALSHA $ZACQ_SHA 1 mk:__i__ 10 3600000 __m__" ;;
    esac
    keys=$(cli DBSIZE)
    [ "$keys" = "$MEMKEYS" ] || die "$kind: $keys keys, not $MEMKEYS"
    printf '%s\t%s\t%s\t%s\n' "$kind" "$keys" "$(awk -v d="$DELTA" -v k="$keys" 'BEGIN { printf "%.1f", d / k }')" \
      "$(cli MEMORY USAGE mk:000000000000 SAMPLES 0)" >>"$KEYS_TSV"
    log "memory, $MEMKEYS keys: $kind $(tail -1 "$KEYS_TSV" | cut -f3) B/key"
  done
  cli FLUSHALL >/dev/null
  meta load_memory_end "$(uptime)"
fi

# ---- waiters ------------------------------------------------------------------------
WAIT=$tmp/waiters.tsv # round mode p50 p90 p99 max mean total enqueue load cpu first_tenth last_tenth
: >"$WAIT"
if has_part waiters; then
  meta load_waiters_start "$(uptime)"
  for round in $(seq 1 "$WAIT_ROUNDS"); do
    for mode in lease list; do
      load=$(load1)
      out=$("${CPIN[@]}" "$LEASEWAIT" --port "$PORT" --waiters "$WAITERS" --mode "$mode" --key "w:$mode") ||
        die "leasewait --mode $mode failed: $out"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$(field "$out" p50_ms)" \
        "$(field "$out" p90_ms)" "$(field "$out" p99_ms)" "$(field "$out" max_ms)" "$(field "$out" mean_ms)" \
        "$(field "$out" total_ms)" "$(field "$out" enqueue_ms)" "$load" "$(field "$out" server_cpu_ms)" \
        "$(field "$out" first_tenth_mean_ms)" "$(field "$out" last_tenth_mean_ms)" >>"$WAIT"
      log "waiters round $round $mode: $out"
    done
  done
  meta load_waiters_end "$(uptime)"
fi
meta load_end "$(uptime)"

# ---- report -------------------------------------------------------------------------
python3 - "$META" "$PAIRS" "$MEM" "$KEYS_TSV" "$WAIT" <<'PY'
import statistics as st
import sys

meta_f, pairs_f, mem_f, keys_f, wait_f = sys.argv[1:6]
meta = {}
for line in open(meta_f):
    k, v = line.rstrip("\n").split("\t", 1)
    meta[k] = v
rows = lambda f: [l.rstrip("\n").split("\t") for l in open(f) if l.strip()]
med = st.median
n0 = lambda x: f"{x:,.0f}"

print("# Leases: LEASE beside INCR and a sorted-set semaphore")
print()
print(f"`scripts/bench/leases.sh`, {meta['started']}.")
print()
for k in ("server", "module", "machine", "pinning", "setup"):
    print(f"- {k}: {meta[k]}")
print(f"- load at the start: `{meta['load_start'].strip()}`")
print(f"- load at the end: `{meta['load_end'].strip()}`")

pairs = rows(pairs_f)
if pairs:
    print()
    print("## Acquire + release pairs")
    print()
    print(f"Random keys: {meta['setup'].split('KEYSPACE=')[1].split()[0]} keys; hot key: one key, on which up to clients × pipeline leases (or members) are live at once. Pairs per second, medians over rounds; × INCR+DECR: the ratio to the INCR+DECR run just before, on the same server (median, range over rounds; best/best: the best run over the best INCR+DECR run of the group). Server CPU per pair from `INFO cpu`; CPU × INCR+DECR: INCR+DECR's CPU per pair ÷ this one's (median). Load: the 1-minute load average at the runs ({meta['load_pairs_start'].strip()} at the start of the part).")
    print()
    print("| keys | pipeline | pair | pairs/s | × INCR+DECR | range | best/best | CPU µs/pair | CPU × INCR+DECR | granted | load |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    label = {"INCR": "INCR + DECR", "LEASE": "LEASE + LEASE.RELEASE", "ZSET": "ZSET semaphore (2 EVALSHA)"}
    groups = []
    for r in pairs:
        g = (r[2], int(r[1]))
        if g not in groups:
            groups.append(g)
    for keys, pl in groups:
        rs = [r for r in pairs if r[2] == keys and int(r[1]) == pl]
        incr = [r for r in rs if r[3] == "INCR"]
        best_incr = max(float(r[4]) for r in incr)
        for kind in ("INCR", "LEASE", "ZSET"):
            k = [r for r in rs if r[3] == kind]
            if not k:
                continue
            pps = [float(r[4]) for r in k]
            ratio = [float(r[4]) / float(r[10]) for r in k]
            cpu = [float(r[8]) for r in k]
            cpur = [float(r[11]) / float(r[8]) for r in k]
            granted = sum(int(r[5]) for r in k) / max(1, sum(int(r[5]) + int(r[6]) for r in k))
            loads = [float(r[9]) for r in k]
            if kind == "INCR":
                rr, rng, bb, cr = "1.00", "", "1.00", "1.00"
            else:
                rr = f"{med(ratio):.2f}"
                rng = f"{min(ratio):.2f}–{max(ratio):.2f}"
                bb = f"{max(pps) / best_incr:.2f}"
                cr = f"{med(cpur):.2f}"
            print(f"| {keys} | {pl} | {label[kind]} | {n0(med(pps))} | {rr} | {rng} | {bb} | {med(cpu):.2f} | {cr} | {100 * granted:.0f}% | {min(loads):.1f}–{max(loads):.1f} |")

mem = rows(mem_f)
if mem:
    print()
    print("## Bytes per lease, one key")
    print()
    print("`used_memory` after − before filling one key with that many live leases (LEASE: `LEASE ml:000000000000 10000 3600000`; ZSET: the acquire script with 16-digit members), divided by the leases; the first row includes the key itself. Marginal: (bytes at n − bytes at 1) ÷ (n − 1). MEMORY USAGE: `MEMORY USAGE key SAMPLES 0`. RDB: the length of `DUMP key` (the RDB encoding, with its 10-byte trailer) ÷ leases.")
    print()
    print("| leases on the key | LEASE bytes | per lease | marginal | ZSET bytes | per lease | marginal | LEASE ÷ ZSET | MEMORY USAGE LEASE / ZSET | RDB bytes/lease LEASE / ZSET |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    by = {(r[0], int(r[1])): r for r in mem}
    ns = sorted({int(r[1]) for r in mem})
    one = {k: int(by[(k, ns[0])][2]) for k in ("LEASE", "ZSET") if (k, ns[0]) in by}
    for n in ns:
        l, z = by.get(("LEASE", n)), by.get(("ZSET", n))
        if not l or not z:
            continue
        ld, zd = int(l[2]), int(z[2])
        marg = lambda d, k: f"{(d - one[k]) / (n - 1):.1f}" if n > 1 and ns[0] == 1 else ""
        print(f"| {n:,} | {ld:,} | {ld / n:.1f} | {marg(ld, 'LEASE')} | {zd:,} | {zd / n:.1f} | {marg(zd, 'ZSET')} | {ld / zd:.2f} | {int(l[3]):,} / {int(z[3]):,} | {int(l[4]) / n:.1f} / {int(z[4]) / n:.1f} |")

keys = rows(keys_f)
if keys:
    print()
    print(f"## Bytes per key, {int(keys[0][1]):,} keys with one lease each")
    print()
    print("`used_memory` after − before ÷ keys; keys of 15 bytes (`mk:` and 12 digits).")
    print()
    print("| value | bytes/key | MEMORY USAGE of one |")
    print("|---|---:|---:|")
    label = {"INCR": "INCR + PEXPIRE (a string with a TTL)", "LEASE": "LEASE (`rl-leases`, one lease)", "ZSET": "ZSET semaphore (one member, TTL)"}
    for r in keys:
        print(f"| {label[r[0]]} | {float(r[2]):.1f} | {r[3]} |")

wait = rows(wait_f)
if wait:
    print()
    print("## Release-to-admit, waiters held on the server")
    print()
    print(f"`leasewait`: per admission, the time from sending the release to the next waiter's reply (ms, at the client); mean of the first and of the last tenth of the admissions (the first with nearly all the waiters still queued behind, the last with few); total: first release to last admission; server CPU: `INFO cpu` over the chain (ms); enqueue: queueing the waiters one by one, each seen waiting before the next. Medians over {len(wait) // 2} round(s), then each round. Load: {meta['load_waiters_start'].strip()} at the start of the part.")
    print()
    print("| chain | round | p50 ms | p90 ms | p99 ms | max ms | mean ms | first tenth ms | last tenth ms | total ms | server CPU ms | enqueue ms | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    label = {"lease": "LEASE … BLOCK, LEASE.RELEASE", "list": "BLPOP, LPUSH (Redis's own blocking)"}
    cols = [2, 3, 4, 5, 6, 11, 12, 7, 10, 8]
    for mode in ("lease", "list"):
        ws = [r for r in wait if r[1] == mode]
        if not ws:
            continue
        m = [f"{med([float(r[i]) for r in ws]):.3f}" if i not in (7, 8, 10) else f"{med([float(r[i]) for r in ws]):.1f}" for i in cols]
        print(f"| {label[mode]} | **median** | " + " | ".join(m) + " | |")
        for r in ws:
            print(f"| {label[mode]} | {r[0]} | " + " | ".join(r[i] for i in cols) + f" | {r[9]} |")

if pairs:
    print()
    print("## Every pairs run")
    print()
    print("| round | pipeline | keys | pair | pairs/s | granted | denied | released (1) | CPU µs/pair | load | INCR+DECR pairs/s before |")
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in pairs:
        released = "n/a" if r[3] == "INCR" else r[7]
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {n0(float(r[4]))} | {r[5]} | {r[6]} | {released} | {r[8]} | {r[9]} | {n0(float(r[10]))} |")
PY
