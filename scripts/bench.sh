#!/usr/bin/env bash
# Benchmarks THROTTLE, THROTTLE.PEEK and PERMIT against INCR, against
# redis-cell 0.5.0's CL.THROTTLE with the same limit, and against a Lua token
# bucket (scripts/bench/token_bucket.lua, through EVALSHA), with and without
# a replica attached, on every server in SERVERS, and prints a markdown
# report on stdout: one section per server, then a summary in the shape of
# issue 15's table.
#
#   scripts/bench.sh                                  # Redis 7.0, 7.4.1, Valkey 8.0.1: 5-7 min each
#   SERVERS=redis-7.0 scripts/bench.sh                # one server
#   QUICK=1 SERVERS=redis-7.0 scripts/bench.sh        # ~2-3 min: 2 rounds, fewer requests and keys
#   OUT=bench.md scripts/bench.sh                     # keep the report and the raw runs beside it
#   MODULE=/tmp/before.so scripts/bench.sh            # a prebuilt module (e.g. the "before" build)
#   REPORT_FROM=bench.runs.tsv scripts/bench.sh       # re-render a saved run, run nothing
#
# Servers (one process each, loopback, free ports, no persistence):
#   - the module's master, with libredis_throttle.so;
#   - redis-cell's master, with libredis_cell.so only (scripts/cell.sh builds
#     it once; the two modules are never loaded into one server, so both may
#     register CL.THROTTLE);
#   - with REPLICAS containing "yes": a replica of each (same binary, same
#     module, `--replicaof`), for runs where the master also feeds a replica.
#
# Speed is reported as ratios to INCR measured on the same server in the
# same round: each command's run is immediately preceded by an INCR run, and
# the table shows medians over rounds, because the machine may be busy with
# other work. THROTTLE ÷ CL.THROTTLE is the ratio of their medians × INCR.
#
# Environment (defaults in brackets; QUICK=1 lowers the starred ones):
#   SERVERS ["redis-7.0 redis-7.4.1 valkey-8.0.1"] names for scripts/servers.sh
#     (also redis-7.2.6, valkey-9) or paths of server binaries
#   REPLICAS ["no yes"] run without, and with, a replica attached
#   ROUNDS [5*]  REQUESTS [300000*] requests per run at pipeline > 1
#   REQUESTS_P1 [REQUESTS/10]  LUA_SHARE [4] the Lua runs do REQUESTS/LUA_SHARE
#   CLIENTS [50]  KEYSPACE [100000] (-r of redis-benchmark)  PIPELINES ["1 16"]
#   REPLICA_PIPELINES [the largest of PIPELINES] the pipelines run with a replica
#   MEMKEYS [1000000*] keys per kind for bytes/key
#   BLOCKERS [1000] clients held by PERMIT BLOCK  BLOCK_INTERVAL_MS [2]
#   PARTS ["throughput memory blocking"]  OUT [none]
#   MODULE [build with cargo] a prebuilt libredis_throttle.so
#   CELL [1] 0: no redis-cell  CELL_SO [scripts/cell.sh] a prebuilt libredis_cell.so
#   COMPARE_CMD [none] one more command timed on the module's server (with
#     __rand_int__ for the random-key run), e.g. 'HINCRBY h:__rand_int__ f 1';
#     COMPARE_HOT_CMD [COMPARE_CMD with __rand_int__ → hot], COMPARE_NAME
#     [its first word], COMPARE_SO [none] a module loaded for it
#   SERVER_CPU [0] CLIENT_CPU [1] REPLICA_CPU [CLIENT_CPU] (taskset, >= 2 cores)
#   NICE [unset] e.g. -5: run servers and clients at that priority (root)
#   REPORT_FROM [unset] a saved .runs.tsv (with its .memory.tsv and .meta.tsv)
#
# redis-benchmark and redis-cli are Debian's (7.0.15) for every server, so
# the client side is the same everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "${QUICK:-0}" = 1 ]; then
  def_rounds=2 def_requests=100000 def_memkeys=200000
else
  def_rounds=5 def_requests=300000 def_memkeys=1000000
fi
SERVERS=${SERVERS:-"redis-7.0 redis-7.4.1 valkey-8.0.1"}
REPLICAS=${REPLICAS:-"no yes"}
ROUNDS=${ROUNDS:-$def_rounds}
REQUESTS=${REQUESTS:-$def_requests}
REQUESTS_P1=${REQUESTS_P1:-$((REQUESTS / 10))}
LUA_SHARE=${LUA_SHARE:-4}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
PIPELINES=${PIPELINES:-"1 16"}
REPLICA_PIPELINES=${REPLICA_PIPELINES:-$(echo "$PIPELINES" | tr ' ' '\n' | sort -n | tail -1)}
MEMKEYS=${MEMKEYS:-$def_memkeys}
BLOCKERS=${BLOCKERS:-1000}
BLOCK_INTERVAL_MS=${BLOCK_INTERVAL_MS:-2}
PARTS=${PARTS:-"throughput memory blocking"}
OUT=${OUT:-}
# The report's folder exists before the run, not only when the run is over.
[ -z "$OUT" ] || mkdir -p "$(dirname "$OUT")"
MODULE=${MODULE:-}
CELL=${CELL:-1}
CELL_SO=${CELL_SO:-}
COMPARE_SO=${COMPARE_SO:-}
COMPARE_CMD=${COMPARE_CMD:-}
COMPARE_HOT_CMD=${COMPARE_HOT_CMD:-${COMPARE_CMD//__rand_int__/hot}}
COMPARE_NAME=${COMPARE_NAME:-${COMPARE_CMD%% *}}
REPORT_FROM=${REPORT_FROM:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REPLICA_CPU=${REPLICA_CPU:-$CLIENT_CPU}

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has_word() { case " $1 " in *" $2 "*) return 0 ;; *) return 1 ;; esac; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/throttle-bench.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# server replica round pipeline keys name ops/s p50 p99 allowed% incr_ops/s cpu_us/call incr_cpu_us/call
RESULTS=$tmp/runs.tsv
MEMRESULTS=$tmp/memory.tsv # server kind label keys bytes/key memory-usage-of-one-key
META=$tmp/meta.tsv      # server field value (server "-": the whole run)
: >"$RESULTS"
: >"$MEMRESULTS"
: >"$META"
meta() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$META"; }
meta_get() { awk -F'\t' -v s="$1" -v f="$2" '$1 == s && $2 == f { v = $3 } END { print v }' "$META"; }

# ---- what each workload runs --------------------------------------------------
# THROTTLE and CL.THROTTLE have the same limit, issue 15's: capacity 16 at
# 0.5 tokens/s. THROTTLE's capacity is ceil(rps × burst × window) =
# ceil(0.5 × 32 × 1) = 16; redis-cell's is max_burst + 1 = 16, and
# 30 per 60 s is one token per 2 s. Random keys: a run of 300k calls over
# 100,000 keys makes ~3 calls per key, so every call is allowed and writes;
# hot key: 16 allowed, then one every 2 s: nearly every call is denied.
# PEEK reads the keys THROTTLE just wrote. PERMIT (random keys): slots a
# minute apart with room for 1,000,000 waiting, so every call is granted as
# a reservation; hot key: a slot every 10 µs, at most 100 waiting.
LUA_SHA=$(printf '%s' "$(cat scripts/bench/token_bucket.lua)" | sha1sum | cut -c1-40)
names=(THROTTLE CL PEEK PERMIT LUA)
declare -A rand_cmd=(
  [INCR]="INCR bi:__rand_int__"
  [THROTTLE]="THROTTLE bt:__rand_int__ 0.5 32 1"
  [CL]="CL.THROTTLE bc:__rand_int__ 15 30 60 1"
  [PEEK]="THROTTLE.PEEK bt:__rand_int__ 0.5 32 1"
  [PERMIT]="PERMIT bp:__rand_int__ 60000 1000000"
  [LUA]="EVALSHA $LUA_SHA 1 bl:__rand_int__ 0.5 32 1"
)
# The hot key: the same commands on one key ("hot" for __rand_int__), but
# PERMIT's slots 10 µs apart with at most 100 waiting.
declare -A hot_cmd=()
for n in "${!rand_cmd[@]}"; do hot_cmd[$n]=${rand_cmd[$n]//__rand_int__/hot}; done
hot_cmd[PERMIT]="PERMIT bp:hot 0.01 100"
if [ -n "$COMPARE_CMD" ]; then
  names+=(CMP)
  rand_cmd[CMP]=$COMPARE_CMD
  hot_cmd[CMP]=$COMPARE_HOT_CMD
fi
[ "$CELL" = 1 ] || names=(THROTTLE PEEK PERMIT LUA ${COMPARE_CMD:+CMP})
label() {
  case $1 in
    LUA) echo "Lua EVALSHA" ;;
    PEEK) echo "THROTTLE.PEEK" ;;
    CL) echo "CL.THROTTLE (redis-cell)" ;;
    CINCR) echo "INCR (redis-cell's server)" ;;
    CMP) echo "$COMPARE_NAME" ;;
    *) echo "$1" ;;
  esac
}
# Memory: limits under which a key lives far longer than the fill takes
# (capacity 1000, one token per 1000 s: the same bucket for both modules).
declare -A mem_cmd=(
  [INCR]="INCR m:__i__;PEXPIRE m:__i__ 3600000"
  [LUA]="EVALSHA $LUA_SHA 1 m:__i__ 0.001 1000 1000 1"
  [THROTTLE]="THROTTLE m:__i__ 0.001 1000 1000 1"
  [PERMIT]="PERMIT m:__i__ 3600000 0"
  [CL]="CL.THROTTLE m:__i__ 999 1 1000 1"
)
declare -A mem_label=(
  [INCR]="INCR + PEXPIRE (string with TTL)"
  [LUA]="Lua bucket (hash of 2 fields, TTL)"
  [THROTTLE]="THROTTLE (rl-bucket, TTL)"
  [PERMIT]="PERMIT (rl-permit, TTL)"
  [CL]="CL.THROTTLE (redis-cell: string, TTL)"
)
mem_kinds=(INCR LUA THROTTLE PERMIT)
[ "$CELL" = 1 ] && mem_kinds+=(CL)

# ---- tools, module, peer, servers (everything built before anything is timed) --
ncpu=$(nproc 2>/dev/null || echo 1)
if [ -n "$REPORT_FROM" ]; then
  base=${REPORT_FROM%.runs.tsv}
  for f in runs memory meta; do
    [ -f "$base.$f.tsv" ] || die "no such file: $base.$f.tsv (REPORT_FROM wants a .runs.tsv saved with OUT)"
  done
  cp "$base.runs.tsv" "$RESULTS"
  cp "$base.memory.tsv" "$MEMRESULTS"
  cp "$base.meta.tsv" "$META"
  SERVERS=$(meta_get - servers)
  REPLICAS=$(meta_get - replicas)
  PIPELINES=$(meta_get - pipelines)
  PARTS=$(meta_get - parts)
  ROUNDS=$(meta_get - rounds)
  read -r -a names <<<"$(meta_get - names)"
  for n in INCR "${names[@]}"; do
    rand_cmd[$n]=$(meta_get - "random $n")
    hot_cmd[$n]=$(meta_get - "hot $n")
  done
  COMPARE_NAME=$(meta_get - compare_name)
  for v in KEYSPACE MEMKEYS BLOCKERS BLOCK_INTERVAL_MS; do
    printf -v "$v" '%s' "$(meta_get - "$v")"
  done
else
  for tool in redis-server redis-cli redis-benchmark awk; do
    command -v "$tool" >/dev/null 2>&1 || need_deps=1
  done
  if [ -z "$MODULE" ] || [ "${need_deps:-0}" = 1 ]; then
    # shellcheck source=scripts/deps.sh
    source scripts/deps.sh
  fi
  if [ -z "$MODULE" ]; then
    log "building the module and bench-tools (release)"
    cargo build --release -p redis-throttle -p bench-tools >&2
    MODULE=$ROOT/target/release/libredis_throttle.so
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
    git diff --quiet HEAD -- src core Cargo.toml Cargo.lock 2>/dev/null || commit="$commit with uncommitted changes"
    module_desc="target/release/libredis_throttle.so built from commit $commit"
  else
    [ -f "$MODULE" ] || die "module not found: $MODULE"
    MODULE=$(cd "$(dirname "$MODULE")" && pwd)/$(basename "$MODULE")
    module_desc="MODULE=$(basename "$MODULE") (given; sha1 $(sha1sum "$MODULE" | cut -c1-12))"
    if has_part blocking && [ ! -x "$ROOT/target/release/blockwait" ]; then
      cargo build --release -p bench-tools >&2
    fi
  fi
  BLOCKWAIT=$ROOT/target/release/blockwait
  if [ "$CELL" = 1 ]; then
    [ -n "$CELL_SO" ] || CELL_SO=$(scripts/cell.sh)
    [ -f "$CELL_SO" ] || die "redis-cell module not found: $CELL_SO"
  fi
  declare -A server_bin
  for s in $SERVERS; do
    case $s in
      */*) server_bin[$s]=$s ;;
      *) server_bin[$s]=$(scripts/servers.sh bin "$s") || die "no server $s (scripts/servers.sh list)" ;;
    esac
    "${server_bin[$s]}" --version >/dev/null 2>&1 || die "cannot run ${server_bin[$s]}"
    # A private copy: on a shared machine a package upgrade may replace the
    # original while the benchmark runs (Debian's redis-server is a link to
    # redis-check-rdb and picks its role from its name: keep the name).
    mkdir -p "$tmp/bin/$s"
    cp -L "${server_bin[$s]}" "$tmp/bin/$s/$(basename "${server_bin[$s]}")"
    server_bin[$s]=$tmp/bin/$s/$(basename "${server_bin[$s]}")
  done
  # The same for the client tools.
  cp -L "$(command -v redis-cli)" "$(command -v redis-benchmark)" "$tmp/bin/"
  PATH=$tmp/bin:$PATH
  if [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    pinning_ok=1
    pinning="servers on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU, replicas on CPU $REPLICA_CPU (taskset)"
  else
    pinning_ok=0
    pinning="none ($ncpu CPU(s) or no taskset)"
  fi
  [ -z "${NICE:-}" ] || pinning="$pinning; nice $NICE"
  meta - servers "$SERVERS"
  meta - replicas "$REPLICAS"
  meta - pipelines "$PIPELINES"
  meta - parts "$PARTS"
  meta - rounds "$ROUNDS"
  meta - names "${names[*]}"
  for n in INCR "${names[@]}"; do
    meta - "random $n" "${rand_cmd[$n]}"
    meta - "hot $n" "${hot_cmd[$n]}"
  done
  meta - compare_name "$COMPARE_NAME"
  for v in KEYSPACE MEMKEYS BLOCKERS BLOCK_INTERVAL_MS; do meta - "$v" "${!v}"; done
  meta - machine "$ncpu CPU(s), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo "?")"
  meta - module "$module_desc"
  meta - cell "$([ "$CELL" = 1 ] && echo "redis-cell 0.5.0, $(basename "$CELL_SO") (scripts/cell.sh)" || echo "not run (CELL=0)")"
  meta - pinning "$pinning"
  meta - client "redis-benchmark $(redis-benchmark --version | awk '{ print $2 }') (Debian's, for every server)"
  meta - setup "-c $CLIENTS, -n $REQUESTS at pipeline > 1 and $REQUESTS_P1 at pipeline 1 (Lua 1/$LUA_SHARE of that), -r $KEYSPACE, $MEMKEYS keys for memory; pipelines $PIPELINES without a replica, $REPLICA_PIPELINES with one"
  meta - started "$(date -u '+%Y-%m-%d %H:%M UTC')"
fi

# PIN: the prefix that runs a command on CPU $1 (and at priority NICE).
pin() {
  PIN=()
  [ -z "${NICE:-}" ] || PIN=(nice -n "$NICE")
  [ "${pinning_ok:-0}" = 1 ] && PIN+=(taskset -c "$1")
  return 0
}

# ---- servers ------------------------------------------------------------------
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME BIN CPU ARGS...: a server in $tmp/NAME; sets SPORT and SPID.
start_server() {
  local name=$1 bin=$2 cpu=$3 attempt
  shift 3
  mkdir -p "$tmp/$name"
  pin "$cpu"
  for attempt in 1 2 3 4 5; do
    SPORT=$((20000 + (RANDOM * 7 + attempt) % 12000))
    port_is_free "$SPORT" || continue
    "${PIN[@]}" "$bin" --port "$SPORT" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$tmp/$name" --daemonize no --protected-mode yes --logfile "$tmp/$name/server.log" "$@" &
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 1 100); do
      if ! kill -0 "$SPID" 2>/dev/null; then break; fi
      if [ "$(redis-cli -p "$SPORT" PING 2>/dev/null)" = PONG ]; then return 0; fi
      sleep 0.1
    done
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    log "$name did not start on port $SPORT (attempt $attempt):"
    tail -5 "$tmp/$name/server.log" >&2 || true
  done
  die "could not start $name ($bin)"
}
stop_server() { # PID
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
wait_replica() { # REPLICA_PORT
  for _ in $(seq 1 300); do
    redis-cli -p "$1" INFO replication | tr -d '\r' | grep -q '^master_link_status:up$' && return 0
    sleep 0.1
  done
  die "replica on port $1 did not sync"
}

# Two masters, each with an optional replica: T (this module) and C (redis-cell).
T_PORT="" C_PORT="" T_PID="" C_PID="" TR_PID="" CR_PID="" TR_PORT="" CR_PORT="" REPLICA=no
start_setup() { # SERVER REPLICA(no|yes)
  local s=$1 bin=${server_bin[$1]} targs=(--loadmodule "$MODULE") margs
  REPLICA=$2
  [ -z "$COMPARE_SO" ] || targs+=(--loadmodule "$COMPARE_SO")
  margs=(--repl-diskless-sync yes --repl-diskless-sync-delay 0)
  start_server "$s-throttle" "$bin" "$SERVER_CPU" "${targs[@]}" "${margs[@]}"
  T_PORT=$SPORT T_PID=$SPID
  [ "$(redis-cli -p "$T_PORT" SCRIPT LOAD "$(cat scripts/bench/token_bucket.lua)")" = "$LUA_SHA" ] ||
    die "SCRIPT LOAD of scripts/bench/token_bucket.lua failed"
  if [ "$CELL" = 1 ]; then
    start_server "$s-cell" "$bin" "$SERVER_CPU" --loadmodule "$CELL_SO" "${margs[@]}"
    C_PORT=$SPORT C_PID=$SPID
  fi
  if [ "$REPLICA" = yes ]; then
    start_server "$s-throttle-replica" "$bin" "$REPLICA_CPU" "${targs[@]}" --replicaof 127.0.0.1 "$T_PORT"
    TR_PORT=$SPORT TR_PID=$SPID
    wait_replica "$TR_PORT"
    if [ "$CELL" = 1 ]; then
      start_server "$s-cell-replica" "$bin" "$REPLICA_CPU" --loadmodule "$CELL_SO" --replicaof 127.0.0.1 "$C_PORT"
      CR_PORT=$SPORT CR_PID=$SPID
      wait_replica "$CR_PORT"
    fi
  fi
  log "$s, replica $REPLICA: module's master on port $T_PORT${TR_PORT:+ (replica $TR_PORT)}${C_PORT:+, redis-cell on $C_PORT}${CR_PORT:+ (replica $CR_PORT)}"
}
stop_setup() {
  local p
  for p in "$TR_PID" "$CR_PID" "$T_PID" "$C_PID"; do [ -z "$p" ] || stop_server "$p"; done
  T_PORT="" C_PORT="" T_PID="" C_PID="" TR_PID="" CR_PID="" TR_PORT="" CR_PORT=""
}
port_of() { if [ "$1" = CL ] || [ "$1" = CINCR ]; then echo "$C_PORT"; else echo "$T_PORT"; fi; }
# Before each timed run the replica has applied everything: runs do not pay
# for the previous run's backlog.
settle() { # PORT
  local acked
  [ "$REPLICA" = yes ] || return 0
  acked=$(redis-cli -p "$1" WAIT 1 30000)
  [ "$acked" = 1 ] || die "the replica of port $1 is gone or behind (WAIT: $acked); see $tmp/*/server.log"
}

# The server's CPU time so far (user + system, all its threads), in seconds.
cpu_now() { redis-cli -p "$1" INFO cpu | tr -d '\r' | awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" { t += $2 } END { printf "%.6f", t }'; }
info_field() { redis-cli -p "$1" INFO "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k { print $2 }'; }

# The two limits are one bucket: on a new key 17 calls in a row allow 16
# (the capacity) on both, and the first call's reset is 2 s (one token).
# Replies: THROTTLE [allowed, remaining, retry_ms, reset_ms, limit];
# CL.THROTTLE [limited, limit, remaining, retry_s, reset_s].
same_limit() {
  local t c
  t=$(for _ in $(seq 17); do echo "THROTTLE same:limit 0.5 32 1"; done | redis-cli -p "$T_PORT" |
    awk 'NR % 5 == 1 && $1 == 1 { a++ } NR == 4 { r = $1 } NR == 5 { l = $1 } END { print a + 0, l, r }')
  c=$(for _ in $(seq 17); do echo "CL.THROTTLE same:limit 15 30 60 1"; done | redis-cli -p "$C_PORT" |
    awk 'NR % 5 == 1 && $1 == 0 { a++ } NR == 2 { l = $1 } NR == 5 { r = $1 * 1000 } END { print a + 0, l, r }')
  redis-cli -p "$T_PORT" DEL same:limit >/dev/null
  redis-cli -p "$C_PORT" DEL same:limit >/dev/null
  if [ "$t" != "16 16 2000" ] || [ "$c" != "16 16 2000" ]; then
    die "THROTTLE and CL.THROTTLE are not the same bucket: allowed, limit, first reset_ms: $t against $c"
  fi
  log "same bucket: 16 of 17 allowed, limit 16, first reset 2000 ms on both"
}

# Every command must work before we time it.
check_cmd() { # PORT CMD
  local words out
  read -r -a words <<<"${2//__rand_int__/000000000000}"
  out=$(redis-cli -p "$1" "${words[@]}" 2>&1 | tr '\n' ' ')
  case $out in
    ERR* | WRONGTYPE* | NOSCRIPT* | *"Could not connect"* | *"unknown command"*) die "'$2' fails: $out" ;;
  esac
}

# Calls allowed (THROTTLE) or granted (PERMIT), from INFO throttle: "allowed total".
# Field names with and without the command's name (throttle_throttle_allowed
# or throttle_allowed), so the script reads both the old and the new module.
counters() { # NAME
  case $1 in
    THROTTLE) redis-cli -p "$T_PORT" INFO throttle | tr -d '\r' | awk -F: '
      $1 ~ /^throttle_(throttle_)?allowed$/ { a = $2 } $1 ~ /^throttle_(throttle_)?denied$/ { d = $2 }
      END { print a + 0, a + d }' ;;
    PERMIT) redis-cli -p "$T_PORT" INFO throttle | tr -d '\r' | awk -F: '
      $1 == "throttle_permit_immediate" || $1 == "throttle_permit_reserved" { a += $2 }
      $1 == "throttle_permit_refused" { r = $2 } END { print a + 0, a + r }' ;;
    *) echo "0 0" ;;
  esac
}

# bench_once PORT PIPELINE REQUESTS CMD: one redis-benchmark run; sets LINE to
# its CSV result: "test","rps","avg","min","p50","p95","p99","max".
bench_once() {
  local port=$1 pl=$2 n=$3 cmd=$4 words out
  read -r -a words <<<"$cmd"
  pin "$CLIENT_CPU"
  out=$("${PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" \
    -P "$pl" -r "$KEYSPACE" --csv "${words[@]}" 2>&1) || true
  LINE=$(printf '%s\n' "$out" | grep '^"' | grep -v '^"test"' | tail -1)
  if [ -z "$LINE" ] || printf '%s\n' "$out" | grep -q -i 'error'; then
    printf '%s\n' "$out" | tail -3 >&2
    die "redis-benchmark failed on: $cmd"
  fi
}

# run SERVER ROUND PIPELINE KEYS NAME BASE BASE_CPU: one timed run, one line
# in RESULTS; BASE and BASE_CPU are the ops/s and CPU µs per call of the INCR
# run just before it (empty for INCR itself); sets RPS and CPU.
run() {
  local s=$1 round=$2 pl=$3 keys=$4 name=$5 base=$6 base_cpu=$7 n cmd a0 t0 a1 t1 mix port cname c0 c1
  cname=$name
  [ "$name" = CINCR ] && cname=INCR
  if [ "$keys" = random ]; then cmd=${rand_cmd[$cname]}; else cmd=${hot_cmd[$cname]}; fi
  if [ "$pl" -gt 1 ]; then n=$REQUESTS; else n=$REQUESTS_P1; fi
  case $name in LUA) n=$((n / LUA_SHARE)) ;; esac
  port=$(port_of "$name")
  settle "$port"
  read -r a0 t0 < <(counters "$name")
  c0=$(cpu_now "$port")
  bench_once "$port" "$pl" "$n" "$cmd"
  c1=$(cpu_now "$port")
  read -r a1 t1 < <(counters "$name")
  CPU=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.3f", (b - a) * 1e6 / n }')
  if [ "$t1" -gt "$t0" ]; then
    mix=$(awk -v a=$((a1 - a0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", 100 * a / t }')
  else
    mix=-
  fi
  # Count CSV fields from the end: a custom command line may contain anything.
  RPS=$(printf '%s' "$LINE" | awk -F'"' '{ print $(NF-13) }')
  printf '%s\n' "$LINE" | awk -F'"' -v s="$s" -v rep="$REPLICA" -v r="$round" -v p="$pl" -v k="$keys" \
    -v n="$name" -v m="$mix" -v b="${base:-$RPS}" -v c="$CPU" -v bc="${base_cpu:-$CPU}" \
    '{ printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, rep, r, p, k, n, $(NF-13), $(NF-7), $(NF-3), m, b, c, bc }' \
    >>"$RESULTS"
  log "$s replica=$REPLICA round $round P$pl $keys $(label "$name"): $RPS ops/s, $CPU µs CPU per call$([ -z "$base" ] || awk -v a="$RPS" -v b="$base" -v c="$CPU" -v bc="$base_cpu" 'BEGIN { printf " = %.2f x INCR (CPU: %.2f)", a / b, bc / c }')$([ "$mix" = - ] || echo ", allowed $mix%")"
}

# One group (pipeline × keys) starts both masters empty with a warmed-up
# INCR keyspace; then every command runs right after an INCR run on its own
# server, and its ratio is to that INCR: the two are measured seconds apart,
# so a change in the machine's load shifts both. CL.THROTTLE runs right
# after THROTTLE, so the two are compared under the same load.
throughput() { # SERVER
  local s=$1 round pl keys name base pls=$PIPELINES
  [ "$REPLICA" = no ] || pls=$REPLICA_PIPELINES
  for round in $(seq 1 "$ROUNDS"); do
    for pl in $pls; do
      for keys in random hot; do
        for port in "$T_PORT" ${C_PORT:+"$C_PORT"}; do
          redis-cli -p "$port" FLUSHALL SYNC >/dev/null
          settle "$port"
          bench_once "$port" 16 $((KEYSPACE * 3)) "${rand_cmd[INCR]}"
        done
        for name in "${names[@]}"; do
          [ -n "$name" ] || continue
          base=INCR
          [ "$name" = CL ] && base=CINCR
          run "$s" "$round" "$pl" "$keys" "$base" "" ""
          run "$s" "$round" "$pl" "$keys" "$name" "$RPS" "$CPU"
        done
      done
    done
  done
}

# ---- memory: used_memory delta / keys at MEMKEYS keys --------------------------------
# resp_gen COUNT 'CMD args;CMD args': RESP for COUNT keys, __i__ → 12-digit index
# (the same key length as redis-benchmark's __rand_int__).
resp_gen() {
  awk -v n="$1" -v tpl="$2" 'BEGIN {
    nc = split(tpl, cmds, ";")
    for (c = 1; c <= nc; c++) {
      nw[c] = split(cmds[c], w, " ")
      for (j = 1; j <= nw[c]; j++) {
        p = index(w[j], "__i__")
        has[c, j] = p > 0
        pre[c, j] = p ? substr(w[j], 1, p - 1) : w[j]
        suf[c, j] = p ? substr(w[j], p + 5) : ""
      }
    }
    for (i = 0; i < n; i++) {
      k = sprintf("%012d", i)
      for (c = 1; c <= nc; c++) {
        out = "*" nw[c] "\r\n"
        for (j = 1; j <= nw[c]; j++) {
          a = has[c, j] ? pre[c, j] k suf[c, j] : pre[c, j]
          out = out "$" length(a) "\r\n" a "\r\n"
        }
        printf "%s", out
      }
    }
  }'
}
# Memory is measured without a replica (a replica's output buffer and the
# backlog would be counted in used_memory).
memory() { # SERVER
  local s=$1 kind port m0 m1 keys out usage
  for kind in "${mem_kinds[@]}"; do
    port=$(port_of "$kind")
    redis-cli -p "$port" FLUSHALL SYNC >/dev/null
    m0=$(info_field "$port" memory used_memory)
    out=$(resp_gen "$MEMKEYS" "${mem_cmd[$kind]}" | redis-cli -p "$port" --pipe 2>&1) || true
    case $out in *"errors: 0,"*) ;; *) die "filling '$kind' failed: $(printf '%s' "$out" | tail -2)" ;; esac
    keys=$(redis-cli -p "$port" DBSIZE)
    m1=$(info_field "$port" memory used_memory)
    [ "$keys" -gt 0 ] || die "no keys after filling '$kind'"
    usage=$(redis-cli -p "$port" MEMORY USAGE m:000000000000)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$kind" "${mem_label[$kind]}" "$keys" \
      "$(awk -v a="$m0" -v b="$m1" -v k="$keys" 'BEGIN { printf "%.1f", (b - a) / k }')" "$usage" >>"$MEMRESULTS"
    log "$s memory: $kind: $keys keys, $(tail -1 "$MEMRESULTS" | cut -f5) bytes/key, MEMORY USAGE $usage"
    redis-cli -p "$port" FLUSHALL SYNC >/dev/null
  done
}

# ---- blocked waiting: BLOCKERS clients held by PERMIT … BLOCK 0 -----------------------
blocking() { # SERVER
  local s=$1 line
  log "$s blocking: $BLOCKERS clients on PERMIT … $BLOCK_INTERVAL_MS ms apart"
  pin "$CLIENT_CPU"
  line=$(
    soft=$(ulimit -n)
    if [ "$soft" != unlimited ] && [ "$soft" -lt $((BLOCKERS + 64)) ]; then
      ulimit -n $((BLOCKERS + 64)) 2>/dev/null || log "cannot raise ulimit -n above $soft"
    fi
    "${PIN[@]}" "$BLOCKWAIT" --port "$T_PORT" --clients "$BLOCKERS" \
      --interval-ms "$BLOCK_INTERVAL_MS" --key "bw:$$"
  ) || log "blockwait reported a failure: $line"
  log "$s blocking: $line"
  meta "$s" blocking "$line"
}

# ---- the measurements ---------------------------------------------------------------
if [ -z "$REPORT_FROM" ]; then
  for s in $SERVERS; do
    t0=$SECONDS
    meta "$s" version "$("${server_bin[$s]}" --version | sed -n 's/^\([A-Za-z]*\) server v=\([^ ]*\).*malloc=\([^ ]*\).*/\1 \2 (\3)/p')"
    meta "$s" load_start "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")"
    for rep in $REPLICAS; do
      start_setup "$s" "$rep"
      for n in INCR "${names[@]}"; do
        [ -n "$n" ] || continue
        check_cmd "$(port_of "$n")" "${rand_cmd[$n]}"
        check_cmd "$(port_of "$n")" "${hot_cmd[$n]}"
      done
      [ "$CELL" = 0 ] || same_limit
      has_part throughput && throughput "$s"
      if [ "$rep" = no ]; then
        has_part memory && memory "$s"
        has_part blocking && blocking "$s"
      fi
      stop_setup
    done
    meta "$s" load_end "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")"
    meta "$s" seconds $((SECONDS - t0))
  done
fi

# ---- report ----------------------------------------------------------------------------
# stats SERVER REPLICA PIPELINE KEYS NAME →
#   "ratio lo hi best_best ops p50 p99 allowed cpu_us cpu_ratio" (medians over rounds;
#   ratio: ops/s ÷ the INCR run's just before; cpu_ratio: that INCR's CPU per call ÷ this one's)
stats() {
  local base=INCR
  [ "$5" = CL ] && base=CINCR
  awk -F'\t' -v s="$1" -v rep="$2" -v p="$3" -v k="$4" -v n="$5" -v bn="$base" '
    function med(a, c,   i, j, t) {
      if (c == 0) return ""
      for (i = 2; i <= c; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    $1 == s && $2 == rep && $4 == p && $5 == k {
      if ($6 == bn && $7 > best_base) best_base = $7
      if ($6 != n) next
      c++; r[c] = $7 / $11; o[c] = $7; l5[c] = $8; l9[c] = $9; cpu[c] = $12; cr[c] = ($12 > 0 ? $13 / $12 : 0)
      if ($7 > best) best = $7
      if (c == 1 || r[c] < lo) lo = r[c]
      if (c == 1 || r[c] > hi) hi = r[c]
      if ($10 != "-") { m++; al[m] = $10 }
    }
    END {
      if (c == 0) { print "-"; exit }
      printf "%.2f %.2f %.2f %.2f %.0f %.3f %.3f %s %.2f %.2f\n", med(r, c), lo, hi, (best_base > 0 ? best / best_base : 0),
        med(o, c), med(l5, c), med(l9, c), (m ? sprintf("%.0f%%", med(al, m)) : "n/a"), med(cpu, c), med(cr, c)
    }' "$RESULTS"
}
# paired SERVER REPLICA PIPELINE KEYS A B → "ops cpu": medians over rounds of
# A's ops/s ÷ B's, and of B's CPU per call ÷ A's, the two measured back to back.
paired() {
  awk -F'\t' -v s="$1" -v rep="$2" -v p="$3" -v k="$4" -v a="$5" -v b="$6" '
    function med(x, c,   i, j, t) {
      if (c == 0) return "-"
      for (i = 2; i <= c; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
      return sprintf("%.2f", (c % 2) ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2)
    }
    $1 == s && $2 == rep && $4 == p && $5 == k && $6 == a { ao[$3] = $7; ac[$3] = $12 }
    $1 == s && $2 == rep && $4 == p && $5 == k && $6 == b { bo[$3] = $7; bc[$3] = $12 }
    END {
      for (r in ao) if ((r in bo) && bo[r] > 0 && ac[r] > 0) { c++; o[c] = ao[r] / bo[r]; u[c] = bc[r] / ac[r] }
      print med(o, c), med(u, c)
    }' "$RESULTS"
}
big_pipeline() { echo "$PIPELINES" | tr ' ' '\n' | sort -n | tail -1; }
mem_of() { awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { v = $5 } END { print v }' "$MEMRESULTS"; }
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN { if (v == "" || v == "-") print "not measured"; else if ((dir == ">=" && v + 0 >= t) || (dir == "<=" && v + 0 <= t)) print "met"; else print "**not met**" }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
kv() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
short_version() { meta_get "$1" version | cut -d' ' -f1-2; }

server_section() { # SERVER
  local s=$1 rep keys pl n st bl
  echo "## $(meta_get "$s" version) (\`$s\`)"
  echo
  echo "Load average $(meta_get "$s" load_start) at the start, $(meta_get "$s" load_end) at the end; took $(meta_get "$s" seconds) s."
  echo
  if has_word "$PARTS" throughput; then
    for rep in $REPLICAS; do
      if [ "$rep" = yes ]; then
        echo "### Throughput, with a replica attached"
        echo
        echo "Each master feeds a replica (same server, same module, \`REPLICAOF\`); before every run the master"
        echo "waits (\`WAIT 1\`) until the replica has applied everything. CPU: the master's only."
      else
        echo "### Throughput, no replica"
      fi
      echo
      echo "| keys | pipeline | command | ops/s | × INCR | range | best/best | CPU µs/call | CPU × INCR | p50 ms | p99 ms | allowed |"
      echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for keys in random hot; do
        for pl in $PIPELINES; do
          for n in INCR "${names[@]}"; do
            st=$(stats "$s" "$rep" "$pl" "$keys" "$n")
            [ "$st" != - ] || continue
            # shellcheck disable=SC2086
            set -- $st
            echo "| $keys | $pl | $(label "$n") | $5 | $1 | $2–$3 | $4 | $9 | ${10} | $6 | $7 | $8 |"
          done
        done
      done
      echo
    done
  fi
  if has_word "$PARTS" memory; then
    echo "### Memory (used_memory delta / keys, keys of 14 bytes, no replica)"
    echo
    echo "| value | keys | bytes/key | MEMORY USAGE of one key |"
    echo "|---|---:|---:|---:|"
    awk -F'\t' -v s="$s" '$1 == s { printf "| %s | %s | %s | %s |\n", $3, $4, $5, $6 }' "$MEMRESULTS"
    echo
  fi
  if has_word "$PARTS" blocking; then
    bl=$(meta_get "$s" blocking)
    echo "### Blocked waiting ($BLOCKERS clients, PERMIT <key> $BLOCK_INTERVAL_MS $BLOCKERS BLOCK 0)"
    echo
    if [ -n "$bl" ]; then
      echo "Release time − valid_at, at the client: p50 $(kv "$bl" p50_ms) ms, p90 $(kv "$bl" p90_ms) ms, **p99 $(kv "$bl" p99_ms) ms**, max $(kv "$bl" max_ms) ms;"
      echo "$(kv "$bl" blocked) held, $(kv "$bl" peak_blocked) blocked at once, released in order: $(kv "$bl" fifo), spacing ≥ interval: $(kv "$bl" spacing_ok), nil $(kv "$bl" nil), errors $(kv "$bl" errors)."
    else
      echo "not measured (blockwait failed; see stderr)"
    fi
    echo
  fi
}

summary() {
  local s rep keys big t c tu cu po pc peek pu mt mc r
  big=$(big_pipeline)
  echo "## Summary (issue 15)"
  echo
  if has_word "$PARTS" throughput && has_word "${names[*]}" CL; then
    echo "Pipeline $big, the same limit for both modules (capacity 16 at 0.5 tokens/s: \`THROTTLE k 0.5 32 1\`,"
    echo "\`CL.THROTTLE k 15 30 60 1\`). × INCR: median over rounds of the ratio to the INCR run just before, on the"
    echo "same server (in brackets: the same for the server's CPU time per call). THROTTLE ÷ CL.THROTTLE: median over"
    echo "rounds of the ratio of the two runs, measured back to back: ops/s, and the inverse ratio of CPU per call."
    echo "CPU time counts only what the server itself ran, so it moves less with other work on the machine."
    echo
    echo "| server | replica | keys | THROTTLE × INCR | CL.THROTTLE × INCR | THROTTLE ÷ CL.THROTTLE, ops/s | by CPU per call | goal ≥ 2× (ops; CPU) |"
    echo "|---|---|---|---:|---:|---:|---:|---|"
    for s in $SERVERS; do
      for rep in $REPLICAS; do
        for keys in random hot; do
          read -r t _ _ _ _ _ _ _ _ tu < <(stats "$s" "$rep" "$big" "$keys" THROTTLE)
          read -r c _ _ _ _ _ _ _ _ cu < <(stats "$s" "$rep" "$big" "$keys" CL)
          read -r po pc < <(paired "$s" "$rep" "$big" "$keys" THROTTLE CL)
          echo "| $(short_version "$s") | $rep | $keys | $t (${tu:--}) | $c (${cu:--}) | **${po}×** | ${pc}× | $(verdict "$po" 2 ">="); $(verdict "$pc" 2 ">=") |"
        done
      done
    done
    echo
  fi
  if has_word "$PARTS" throughput; then
    echo "| server | replica | THROTTLE.PEEK × INCR, random keys (by CPU per call) | goal ≥ 0.8× (ops; CPU) |"
    echo "|---|---|---:|---|"
    for s in $SERVERS; do
      for rep in $REPLICAS; do
        read -r peek _ _ _ _ _ _ _ _ pu < <(stats "$s" "$rep" "$big" random PEEK)
        echo "| $(short_version "$s") | $rep | ${peek} (${pu:--}) | $(verdict "$peek" 0.8 ">="); $(verdict "${pu:--}" 0.8 ">=") |"
      done
    done
    echo
  fi
  if has_word "$PARTS" memory; then
    echo "Bytes per key at $MEMKEYS keys (used_memory delta / keys):"
    echo
    echo "| server | INCR + TTL | Lua bucket | PERMIT | THROTTLE | CL.THROTTLE (redis-cell) | THROTTLE ÷ CL.THROTTLE | goal ≤ 0.95× |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for s in $SERVERS; do
      mt=$(mem_of "$s" THROTTLE)
      mc=$(mem_of "$s" CL)
      r=$(div "$mt" "$mc")
      echo "| $(short_version "$s") | $(mem_of "$s" INCR) | $(mem_of "$s" LUA) | $(mem_of "$s" PERMIT) | $mt | ${mc:--} | $r | $(verdict "$r" 0.95 "<=") |"
    done
    echo
  fi
  echo "Instructions per call (goal: an allowed THROTTLE on random keys ≤ 9,500): \`scripts/bench/profile.sh\`."
}

report() {
  local n
  echo "# redis-throttle benchmark"
  echo
  if [ -n "$REPORT_FROM" ]; then
    echo "- rendered from the saved runs in $REPORT_FROM"
  fi
  echo "- started $(meta_get - started); $(meta_get - module)"
  echo "- peer: $(meta_get - cell)"
  echo "- machine: $(meta_get - machine); pinning: $(meta_get - pinning)"
  echo "- client: $(meta_get - client)"
  echo "- $ROUNDS round(s); per run $(meta_get - setup)"
  echo
  if has_word "$PARTS" throughput; then
    echo "Commands (random keys use \`-r $KEYSPACE\`; the Lua SHA is of scripts/bench/token_bucket.lua):"
    echo
    for n in INCR "${names[@]}"; do
      [ -n "$n" ] || continue
      echo "- $(label "$n"): \`${rand_cmd[$n]}\` / hot: \`${hot_cmd[$n]}\`"
    done
    echo
  fi
  if has_word "$PARTS" memory; then
    echo "Memory fills (\`__i__\` is a 12-digit index):"
    echo
    for n in "${mem_kinds[@]}"; do echo "- ${mem_label[$n]}: \`${mem_cmd[$n]}\`"; done
    echo
  fi
  for s in $SERVERS; do server_section "$s"; done
  summary
}

if [ -n "$OUT" ]; then
  if [ -z "$REPORT_FROM" ]; then
    cp "$RESULTS" "${OUT%.md}.runs.tsv"
    cp "$MEMRESULTS" "${OUT%.md}.memory.tsv"
    cp "$META" "${OUT%.md}.meta.tsv"
  fi
  report | tee "$OUT"
else
  report
fi
