#!/usr/bin/env bash
# Benchmarks THROTTLE, THROTTLE.PEEK and PERMIT against INCR and a Lua token
# bucket (scripts/bench/token_bucket.lua, through EVALSHA), on a
# redis-server of its own (loopback, free port, no persistence), and prints
# a markdown report on stdout (also written to $OUT when set, with the raw
# runs in ${OUT%.md}.runs.tsv).
#
#   scripts/bench.sh                      # ~5-10 min: 5 rounds, 1M keys for memory
#   QUICK=1 scripts/bench.sh              # ~1-2 min: 2 rounds, fewer requests and keys
#   OUT=bench.md ROUNDS=5 scripts/bench.sh
#   COMPARE_SO=/path/libredis_cell.so \
#   COMPARE_CMD='CL.THROTTLE cl:__rand_int__ 15 30 60 1' scripts/bench.sh
#
# Speed is reported as ratios to INCR measured in the same round: rounds
# interleave every command (INCR first in each group), and the table shows
# medians over rounds, because the machine may be busy with other work.
#
# Environment (defaults in brackets; QUICK=1 lowers the starred ones):
#   ROUNDS [5*]  REQUESTS [300000*] requests per run at pipeline > 1
#   REQUESTS_P1 [REQUESTS/10]  LUA_SHARE [4] the Lua runs do REQUESTS/LUA_SHARE
#   CLIENTS [50]  KEYSPACE [100000] (-r of redis-benchmark)  PIPELINES ["1 16"]
#   MEMKEYS [1000000*] keys per kind for bytes/key
#   BLOCKERS [1000] clients held by PERMIT BLOCK  BLOCK_INTERVAL_MS [2]
#   PARTS ["throughput memory blocking"]  OUT [none]
#   MODULE [build with cargo] a prebuilt libredis_throttle.so
#   COMPARE_SO, COMPARE_CMD (with __rand_int__ for the random-key run),
#   COMPARE_HOT_CMD [COMPARE_CMD with __rand_int__ → hot], COMPARE_MEM_CMD
#   [COMPARE_CMD], COMPARE_NAME [first word of COMPARE_CMD]
#   SERVER_CPU [0] CLIENT_CPU [1] (pinning needs taskset and >= 2 cores)
#   NICE [unset] e.g. -5: run server and clients at that priority (root)
#   REPORT_FROM [unset] a saved .runs.tsv: print its throughput report, run nothing
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "${QUICK:-0}" = 1 ]; then
  def_rounds=2 def_requests=100000 def_memkeys=200000
else
  def_rounds=5 def_requests=300000 def_memkeys=1000000
fi
ROUNDS=${ROUNDS:-$def_rounds}
REQUESTS=${REQUESTS:-$def_requests}
REQUESTS_P1=${REQUESTS_P1:-$((REQUESTS / 10))}
LUA_SHARE=${LUA_SHARE:-4}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
PIPELINES=${PIPELINES:-"1 16"}
MEMKEYS=${MEMKEYS:-$def_memkeys}
BLOCKERS=${BLOCKERS:-1000}
BLOCK_INTERVAL_MS=${BLOCK_INTERVAL_MS:-2}
PARTS=${PARTS:-"throughput memory blocking"}
OUT=${OUT:-}
MODULE=${MODULE:-}
COMPARE_SO=${COMPARE_SO:-}
COMPARE_CMD=${COMPARE_CMD:-}
COMPARE_HOT_CMD=${COMPARE_HOT_CMD:-${COMPARE_CMD//__rand_int__/hot}}
COMPARE_MEM_CMD=${COMPARE_MEM_CMD:-$COMPARE_CMD}
COMPARE_NAME=${COMPARE_NAME:-${COMPARE_CMD%% *}}
REPORT_FROM=${REPORT_FROM:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

for tool in redis-server redis-cli redis-benchmark awk; do
  command -v "$tool" >/dev/null 2>&1 || need_deps=1
done
if [ -n "$REPORT_FROM" ]; then
  [ -f "$REPORT_FROM" ] || die "no such file: $REPORT_FROM"
  PARTS=throughput
  ROUNDS=$(cut -f1 "$REPORT_FROM" | sort -n | tail -1)
  MODULE=-
elif [ -z "$MODULE" ] || [ "${need_deps:-0}" = 1 ]; then
  # shellcheck source=scripts/deps.sh
  source scripts/deps.sh
fi
if [ -n "$COMPARE_SO" ] && [ -z "$COMPARE_CMD" ]; then
  die "COMPARE_SO needs COMPARE_CMD (e.g. 'CL.THROTTLE cl:__rand_int__ 15 30 60 1')"
fi

# ---- build (cargo skips what is up to date) ---------------------------------
if [ -z "$MODULE" ]; then
  log "building the module and bench-tools (release)"
  cargo build --release -p redis-throttle -p bench-tools >&2
  MODULE=$ROOT/target/release/libredis_throttle.so
elif has_part blocking && [ ! -x "$ROOT/target/release/blockwait" ]; then
  cargo build --release -p bench-tools >&2
fi
[ -f "$MODULE" ] || [ -n "$REPORT_FROM" ] || die "module not found: $MODULE"
BLOCKWAIT=$ROOT/target/release/blockwait

# ---- pinning -----------------------------------------------------------------
ncpu=$(nproc 2>/dev/null || echo 1)
server_pin=()
client_pin=()
if [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  server_pin=(taskset -c "$SERVER_CPU")
  client_pin=(taskset -c "$CLIENT_CPU")
  pinning="server on CPU $SERVER_CPU, redis-benchmark on CPU $CLIENT_CPU (taskset)"
else
  pinning="none ($ncpu CPU(s) or no taskset)"
fi
# Opt-in: NICE=-5 runs the server and the clients at a higher priority, to
# be less disturbed by other work on a shared machine (needs root).
if [ -n "${NICE:-}" ]; then
  server_pin=(nice -n "$NICE" "${server_pin[@]}")
  client_pin=(nice -n "$NICE" "${client_pin[@]}")
  pinning="$pinning; nice $NICE"
fi

# ---- our own server ------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/throttle-bench.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_server() {
  local attempt args
  args=(--bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --daemonize no
    --protected-mode yes --logfile "$tmp/server.log" --loadmodule "$MODULE")
  [ -n "$COMPARE_SO" ] && args+=(--loadmodule "$COMPARE_SO")
  for attempt in 1 2 3 4 5; do
    PORT=$((20000 + (RANDOM * 7 + attempt) % 12000))
    port_is_free "$PORT" || continue
    "${server_pin[@]}" redis-server --port "$PORT" "${args[@]}" &
    server_pid=$!
    for _ in $(seq 1 100); do
      if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
      if [ "$(redis-cli -p "$PORT" PING 2>/dev/null)" = PONG ]; then return 0; fi
      sleep 0.1
    done
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    log "server did not start on port $PORT (attempt $attempt):"
    tail -5 "$tmp/server.log" >&2 || true
  done
  die "could not start redis-server"
}

cli() { redis-cli -p "$PORT" "$@"; }
info_field() { cli INFO "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

if [ -z "$REPORT_FROM" ]; then
  start_server
  log "redis-server pid $server_pid on 127.0.0.1:$PORT; $pinning"
  LUA_SHA=$(cli SCRIPT LOAD "$(cat scripts/bench/token_bucket.lua)")
  [ ${#LUA_SHA} = 40 ] || die "SCRIPT LOAD failed: $LUA_SHA"
else
  # What SCRIPT LOAD answers: the SHA1 of the script's text.
  LUA_SHA=$(printf '%s' "$(cat scripts/bench/token_bucket.lua)" | sha1sum | cut -c1-40)
fi

# ---- the workloads ---------------------------------------------------------------
# Random keys: parameters that allow every call and keep each key alive for
# the whole run, so every call reads and updates a live key, as INCR does:
# THROTTLE refills one token per 100 s into a capacity of 1,000,000; PERMIT
# reserves slots one minute apart with room for 1,000,000 waiting (every
# call is granted, as a reservation). Hot key: a realistic mix
# (100,000 tokens/s, capacity 10,000; PERMIT: one slot per 10 µs, at most
# 100 waiting): once the burst is spent, calls beyond 100,000/s are denied
# and write nothing.
names=(INCR THROTTLE PEEK PERMIT LUA)
declare -A rand_cmd=(
  [INCR]="INCR bi:__rand_int__"
  [LUA]="EVALSHA $LUA_SHA 1 bl:__rand_int__ 0.01 1000 100000 1"
  [THROTTLE]="THROTTLE bt:__rand_int__ 0.01 1000 100000 1"
  [PEEK]="THROTTLE.PEEK bt:__rand_int__ 0.01 1000 100000 1"
  [PERMIT]="PERMIT bp:__rand_int__ 60000 1000000"
)
declare -A hot_cmd=(
  [INCR]="INCR bi:hot"
  [LUA]="EVALSHA $LUA_SHA 1 bl:hot 100000 0.1 1 1"
  [THROTTLE]="THROTTLE bt:hot 100000 0.1 1 1"
  [PEEK]="THROTTLE.PEEK bt:hot 100000 0.1 1 1"
  [PERMIT]="PERMIT bp:hot 0.01 100"
)
if [ -n "$COMPARE_CMD" ]; then
  names+=(CMP)
  rand_cmd[CMP]=$COMPARE_CMD
  hot_cmd[CMP]=$COMPARE_HOT_CMD
fi
label() {
  case $1 in
    LUA) echo "Lua EVALSHA" ;;
    PEEK) echo "THROTTLE.PEEK" ;;
    CMP) echo "$COMPARE_NAME" ;;
    *) echo "$1" ;;
  esac
}

# Every command must work before we time it.
check_cmd() {
  local words out
  read -r -a words <<<"${1//__rand_int__/000000000000}"
  out=$(cli "${words[@]}" 2>&1 | tr '\n' ' ')
  case $out in
    ERR* | WRONGTYPE* | NOSCRIPT* | *"Could not connect"*) die "'$1' fails: $out" ;;
  esac
}
if [ -z "$REPORT_FROM" ]; then
  for n in "${names[@]}"; do
    check_cmd "${rand_cmd[$n]}"
    check_cmd "${hot_cmd[$n]}"
  done
  cli FLUSHALL >/dev/null
fi

# Calls allowed (THROTTLE) or granted (PERMIT), from INFO throttle.
counters() {
  case $1 in
    THROTTLE) cli INFO throttle | tr -d '\r' | awk -F: '
      $1 == "throttle_throttle_allowed" { a = $2 } $1 == "throttle_throttle_denied" { d = $2 }
      END { print a + 0, a + d }' ;;
    PERMIT) cli INFO throttle | tr -d '\r' | awk -F: '
      $1 == "throttle_permit_immediate" || $1 == "throttle_permit_reserved" { a += $2 }
      $1 == "throttle_permit_refused" { r = $2 } END { print a + 0, a + r }' ;;
    *) echo "0 0" ;;
  esac
}

RESULTS=$tmp/results.tsv
if [ -n "$REPORT_FROM" ]; then cp "$REPORT_FROM" "$RESULTS"; else : >"$RESULTS"; fi

# bench_once PIPELINE REQUESTS CMD: one redis-benchmark run; sets LINE to its
# CSV result: "test","rps","avg","min","p50","p95","p99","max".
bench_once() {
  local pl=$1 n=$2 cmd=$3 words out
  read -r -a words <<<"$cmd"
  out=$("${client_pin[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$CLIENTS" -n "$n" \
    -P "$pl" -r "$KEYSPACE" --csv "${words[@]}" 2>&1) || true
  LINE=$(printf '%s\n' "$out" | grep '^"' | grep -v '^"test"' | tail -1)
  if [ -z "$LINE" ] || printf '%s\n' "$out" | grep -q -i 'error'; then
    printf '%s\n' "$out" | tail -3 >&2
    die "redis-benchmark failed on: $cmd"
  fi
}

# run ROUND PIPELINE KEYS NAME BASE: one timed run, one line in RESULTS:
#   round pipeline keys name ops/s p50_ms p99_ms allowed% incr_ops/s
# BASE is the INCR run just before it (empty for INCR itself); sets RPS.
run() {
  local round=$1 pl=$2 keys=$3 name=$4 base=$5 n cmd a0 t0 a1 t1 mix
  if [ "$keys" = random ]; then cmd=${rand_cmd[$name]}; else cmd=${hot_cmd[$name]}; fi
  if [ "$pl" -gt 1 ]; then n=$REQUESTS; else n=$REQUESTS_P1; fi
  case $name in LUA) n=$((n / LUA_SHARE)) ;; CMP) n=$((n / 2)) ;; esac
  read -r a0 t0 < <(counters "$name")
  bench_once "$pl" "$n" "$cmd"
  read -r a1 t1 < <(counters "$name")
  if [ "$t1" -gt "$t0" ]; then
    mix=$(awk -v a=$((a1 - a0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", 100 * a / t }')
  else
    mix=-
  fi
  # Count CSV fields from the end: a custom command line may contain anything.
  RPS=$(printf '%s' "$LINE" | awk -F'"' '{ print $(NF-13) }')
  printf '%s\n' "$LINE" | awk -F'"' -v r="$round" -v p="$pl" -v k="$keys" -v n="$name" \
    -v m="$mix" -v b="${base:-$RPS}" \
    '{ printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, p, k, n, $(NF-13), $(NF-7), $(NF-3), m, b }' \
    >>"$RESULTS"
  log "round $round  P$pl  $keys  $(label "$name"): $RPS ops/s$([ -z "$base" ] || awk -v a="$RPS" -v b="$base" 'BEGIN { printf " = %.2f x INCR", a / b }')$([ "$mix" = - ] || echo ", allowed $mix%")"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
t_start=$(date +%s)
# Each group (pipeline × keys) starts from an empty server and a warmed-up
# INCR keyspace; then every command runs right after an INCR run, and its
# ratio is to that INCR: the two are measured seconds apart, so a change in
# the machine's load shifts both. PEEK follows THROTTLE and reads its keys.
if has_part throughput && [ -z "$REPORT_FROM" ]; then
  for round in $(seq 1 "$ROUNDS"); do
    for pl in $PIPELINES; do
      for keys in random hot; do
        cli FLUSHALL >/dev/null
        bench_once 16 $((KEYSPACE * 3)) "${rand_cmd[INCR]}"
        for name in "${names[@]}"; do
          [ "$name" = INCR ] && continue
          run "$round" "$pl" "$keys" INCR ""
          run "$round" "$pl" "$keys" "$name" "$RPS"
        done
      done
    done
  done
fi

# ---- memory: used_memory delta / keys at MEMKEYS keys ------------------------------------
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
MEMRESULTS=$tmp/memory.tsv
: >"$MEMRESULTS"
mem_measure() {
  local label=$1 tpl=$2 m0 m1 keys out
  cli FLUSHALL >/dev/null
  m0=$(info_field memory used_memory)
  out=$(resp_gen "$MEMKEYS" "$tpl" | redis-cli -p "$PORT" --pipe 2>&1) || true
  case $out in *"errors: 0,"*) ;; *) die "filling '$label' failed: $(printf '%s' "$out" | tail -2)" ;; esac
  keys=$(cli DBSIZE)
  m1=$(info_field memory used_memory)
  [ "$keys" -gt 0 ] || die "no keys after filling '$label'"
  printf '%s\t%s\t%s\n' "$label" "$keys" "$(awk -v a="$m0" -v b="$m1" -v k="$keys" 'BEGIN { printf "%.1f", (b - a) / k }')" >>"$MEMRESULTS"
  log "memory: $label: $keys keys, $(tail -1 "$MEMRESULTS" | cut -f3) bytes/key"
}
if has_part memory; then
  mem_measure "INCR + PEXPIRE (string with TTL)" "INCR m:__i__;PEXPIRE m:__i__ 3600000"
  mem_measure "Lua bucket (hash of 2 fields, TTL)" "EVALSHA $LUA_SHA 1 m:__i__ 0.001 1000 1000 1"
  mem_measure "THROTTLE (rl-bucket, TTL)" "THROTTLE m:__i__ 0.001 1000 1000 1"
  mem_measure "PERMIT (rl-permit, TTL)" "PERMIT m:__i__ 3600000 0"
  if [ -n "$COMPARE_MEM_CMD" ]; then
    mem_measure "$COMPARE_NAME" "${COMPARE_MEM_CMD//__rand_int__/__i__}"
  fi
  cli FLUSHALL >/dev/null
fi

# ---- blocked waiting: BLOCKERS clients held by PERMIT … BLOCK 0 -------------------
block_line=""
if has_part blocking; then
  log "blocking: $BLOCKERS clients on PERMIT … $BLOCK_INTERVAL_MS ms apart"
  block_line=$(
    soft=$(ulimit -n)
    if [ "$soft" != unlimited ] && [ "$soft" -lt $((BLOCKERS + 64)) ]; then
      ulimit -n $((BLOCKERS + 64)) 2>/dev/null || log "cannot raise ulimit -n above $soft"
    fi
    "${client_pin[@]}" "$BLOCKWAIT" --port "$PORT" --clients "$BLOCKERS" \
      --interval-ms "$BLOCK_INTERVAL_MS" --key "bw:$$"
  ) || log "blockwait reported a failure: $block_line"
  log "blocking: $block_line"
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
t_total=$(($(date +%s) - t_start))

# ---- report ------------------------------------------------------------------------
kv() { printf '%s\n' "$block_line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
report() {
  local cpu server_ver commit
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo "?")
  server_ver=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
  git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
  echo "## redis-throttle benchmark"
  echo
  if [ -n "$REPORT_FROM" ]; then
    echo "- rendered from the saved runs in $REPORT_FROM (date, commit and load below are of the rendering)"
  fi
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); module commit $commit"
  echo "- machine: $ncpu CPU(s), $cpu; load average $load_start at start, $load_end at end"
  echo "- redis-server $server_ver, redis-benchmark $(redis-benchmark --version | awk '{ print $2 }'); pinning: $pinning"
  echo "- $ROUNDS round(s); per run: -c $CLIENTS, -n $REQUESTS at pipeline > 1 and $REQUESTS_P1 at pipeline 1 (Lua 1/$LUA_SHARE of that), -r $KEYSPACE; took ${t_total}s"
  echo
  if has_part throughput; then
    echo "### Throughput"
    echo
    echo "ops/s, p50 and p99: medians over rounds. × INCR: median over rounds of the ratio to the INCR run just"
    echo "before each run (range: lowest–highest). best/best: the best run of the command over the best INCR run"
    echo "in the same group; interference from other work only ever slows a run down, so on a shared machine this"
    echo "is the steadier estimate of what a quiet machine would show."
    echo
    echo "| keys | pipeline | command | ops/s | × INCR | range | best/best | p50 ms | p99 ms | allowed |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v names="${names[*]}" -v pls="$PIPELINES" -v cmpname="$COMPARE_NAME" '
      function med(s,   n, a, i, j, t) {
        n = split(s, a, " ")
        if (n == 0) return ""
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      function lo(s,   n, a, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
      function hi(s,   n, a, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
      function label(n) { return n == "LUA" ? "Lua EVALSHA" : n == "PEEK" ? "THROTTLE.PEEK" : n == "CMP" ? cmpname : n }
      { key = $2 SUBSEP $3 SUBSEP $4; rps[key] = rps[key] " " $5; p50[key] = p50[key] " " $6; p99[key] = p99[key] " " $7
        if ($8 != "-") mix[key] = mix[key] " " $8
        if ($9 > 0) ratio[key] = ratio[key] " " sprintf("%.3f", $5 / $9) }
      END {
        nn = split(names, nm, " "); np = split(pls, pl, " ")
        for (ki = 1; ki <= 2; ki++) { keys = ki == 1 ? "random" : "hot"
          for (pi = 1; pi <= np; pi++) for (ni = 1; ni <= nn; ni++) {
            key = pl[pi] SUBSEP keys SUBSEP nm[ni]
            if (!(key in rps)) continue
            m = (key in mix) ? sprintf("%.0f%%", med(mix[key])) : "n/a"
            best = hi(rps[pl[pi] SUBSEP keys SUBSEP "INCR"])
            printf "| %s | %s | %s | %.0f | %.2f | %.2f–%.2f | %.2f | %.3f | %.3f | %s |\n", keys, pl[pi], label(nm[ni]),
              med(rps[key]), med(ratio[key]), lo(ratio[key]), hi(ratio[key]), (best > 0 ? hi(rps[key]) / best : 0),
              med(p50[key]), med(p99[key]), m } } }
    ' "$RESULTS"
    echo
    echo "Commands (random keys use \`-r $KEYSPACE\`; the Lua SHA is of scripts/bench/token_bucket.lua):"
    echo
    for n in "${names[@]}"; do
      echo "- $(label "$n"): \`${rand_cmd[$n]}\` / hot: \`${hot_cmd[$n]}\`"
    done
    echo
  fi
  if has_part memory; then
    echo "### Memory (used_memory delta / keys, $MEMKEYS keys of 14 bytes each)"
    echo
    echo "| value | keys | bytes/key |"
    echo "|---|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$MEMRESULTS"
    echo
  fi
  if has_part blocking; then
    echo "### Blocked waiting ($BLOCKERS clients, PERMIT <key> $BLOCK_INTERVAL_MS $BLOCKERS BLOCK 0)"
    echo
    if [ -n "$block_line" ]; then
      echo "Release time − valid_at, at the client: p50 $(kv p50_ms) ms, p90 $(kv p90_ms) ms, **p99 $(kv p99_ms) ms**, max $(kv max_ms) ms;"
      echo "$(kv blocked) held, $(kv peak_blocked) blocked at once, released in order: $(kv fifo), spacing ≥ interval: $(kv spacing_ok), nil $(kv nil), errors $(kv errors)."
    else
      echo "not measured (blockwait failed; see stderr)"
    fi
    echo
  fi
  echo "### Targets (issue 5)"
  echo
  target_lines
}
best_ratio_of() { # PIPELINE KEYS NAME → best run / best INCR run
  awk -F'\t' -v p="$1" -v k="$2" -v n="$3" '
    $2 == p && $3 == k && $4 == "INCR" && $5 > b { b = $5 }
    $2 == p && $3 == k && $4 == n && $5 > v { v = $5 }
    END { if (b > 0 && v > 0) printf "%.2f", v / b }' "$RESULTS"
}
ratio_of() { # PIPELINE KEYS NAME → median ratio
  awk -F'\t' -v p="$1" -v k="$2" -v n="$3" '
    $2 == p && $3 == k && $4 == n && $9 > 0 { a[++c] = $5 / $9 }
    END {
      for (i = 2; i <= c; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      if (c) printf "%.2f", (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2 }' "$RESULTS"
}
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN { if (v == "") print "not measured"; else if ((dir == ">=" && v + 0 >= t) || (dir == "<=" && v + 0 <= t)) print "met"; else print "**not met**" }'; }
target_lines() {
  local keys n r b t big
  big=$(echo "$PIPELINES" | tr ' ' '\n' | sort -n | tail -1)
  if has_part throughput && [ "$big" -gt 1 ]; then
    for keys in random hot; do
      for n in THROTTLE PERMIT PEEK; do
        r=$(ratio_of "$big" "$keys" "$n")
        b=$(best_ratio_of "$big" "$keys" "$n")
        if [ "$n" = PEEK ]; then t=0.90; else t=0.80; fi
        echo "- $(label "$n") ≥ ${t}× INCR at pipeline $big, $keys keys: median $r×, best/best $b× — $(verdict "$r" "$t" ">=")"
      done
    done
  fi
  if has_part memory; then
    for n in THROTTLE PERMIT; do
      r=$(awk -F'\t' -v n="$n" 'index($1, n) == 1 { print $3 }' "$MEMRESULTS")
      echo "- ≤ 120 bytes per $n key: $r — $(verdict "$r" 120 "<=")"
    done
  fi
  if has_part blocking; then
    r=$(kv p99_ms)
    echo "- blocked release p99 ≤ 5 ms: $r ms — $(verdict "$r" 5 "<=")"
  fi
}

if [ -n "$OUT" ]; then
  # The raw runs too, for a second look: round pipeline keys name ops/s p50 p99 allowed% incr_ops/s
  [ -n "$REPORT_FROM" ] || cp "$RESULTS" "${OUT%.md}.runs.tsv"
  report | tee "$OUT"
else
  report
fi
