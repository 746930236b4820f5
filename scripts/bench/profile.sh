#!/usr/bin/env bash
# Instruction counts per call (valgrind --tool=callgrind), which do not
# depend on how busy the machine is: the master runs under callgrind with
# one module loaded (this module, or redis-cell for the CL.THROTTLE
# workloads: never both in one server); for each workload the counters are
# zeroed after a warm-up (so random keys mostly exist, as in a long run),
# redis-benchmark drives N calls at pipeline 16, and the counters are
# dumped. With REPLICAS containing "yes" it is all done again with a replica
# attached (a plain server with the same module, `--replicaof`; only the
# master runs under callgrind), so the master's cost of feeding it counts.
#
#   scripts/bench/profile.sh                       # everything, ~11 min on 2 busy cores
#   REPLICAS=no WORKLOADS="incr throttle" N=50000 scripts/bench/profile.sh
#   MODULE=/tmp/before.so scripts/bench/profile.sh # a prebuilt module
#   BEFORE=benchmarks/before-issue-15/profile.tsv scripts/bench/profile.sh  # before/after table
#   BEFORE=old.tsv AFTER=new.tsv scripts/bench/profile.sh   # the table of two saved runs, runs nothing
#
# Prints a markdown table on stdout (Ir per call without and with a
# replica, and INCR's Ir ÷ this); with BEFORE (a profile.tsv of an earlier
# run) the table is "before / after / change". Leaves in $DIR
# (target/profile): profile.tsv (workload, replica, Ir per call, command),
# the dumps, and callgrind_annotate reports per workload:
#   less target/profile/throttle.no.inclusive.txt
#
# Each row also gives a "steady" count: the same without the parts of Redis
# whose cost depends on the hash seed each server start draws (the
# command table's lookups) or on how long the run takes (expiry): two
# runs of one module differ by up to ±150 Ir in the total, by a few dozen
# in the steady count. Compare builds on it.
#
# Environment: N [100000] calls measured per workload; WARMUP [300000];
# KEYSPACE [100000]; CLIENTS [50]; REPLICAS ["no yes"]; WORKLOADS [all
# below]; SERVER [redis-7.0] a name for scripts/servers.sh or a binary's
# path; MODULE [build with cargo]; CELL_SO [scripts/cell.sh]; DIR; BEFORE;
# AFTER (a saved profile.tsv: render BEFORE against it, run nothing);
# DUMP_INSTR [no] yes: the dumps count each instruction too, for
# `callgrind_annotate --auto=yes` by source line, or against `objdump -d`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-100000}
WARMUP=${WARMUP:-300000}
KEYSPACE=${KEYSPACE:-100000}
CLIENTS=${CLIENTS:-50}
DIR=${DIR:-$ROOT/target/profile}
MODULE=${MODULE:-}
CELL_SO=${CELL_SO:-}
SERVER=${SERVER:-redis-7.0}
REPLICAS=${REPLICAS:-"no yes"}
BEFORE=${BEFORE:-}
AFTER=${AFTER:-}
# Redis's functions left out of the "steady" count (inclusive costs):
# lookupCommandLogic (both command-table lookups: the command's, and
# RM_Replicate's of THROTTLE.APPLY), activeExpireCycle, expireIfNeeded.
NOISY=${NOISY:-"lookupCommandLogic|activeExpireCycle|expireIfNeeded"}
ALL="incr throttle throttle_hot peek permit permit_hot throttle_cl cell throttle_cl_hot cell_hot cl cl_hot"
WORKLOADS=${WORKLOADS:-$ALL}

log() { echo "profile: $*" >&2; }
die() { log "$*"; exit 1; }

# Allowed THROTTLE, random keys (the issue-15 goal, ≤ 9,500): a capacity of
# 1,000,000 refilled one token per 100 s, so every call is allowed and
# writes. The hot keys are denied unless the server is slow: under callgrind
# THROTTLE's hot key (100,000 tokens/s) allows every call. throttle_cl and
# cell: the same limit for both modules (capacity 16 at 0.5 tokens/s, as in
# scripts/bench.sh): on random keys every call is allowed (4 calls per key
# at most, counting the warm-up); on the hot key nearly every call is denied.
# Each workload: "what the table calls it|the command".
declare -A workload=(
  [incr]="INCR, random keys|INCR bi:__rand_int__"
  [throttle]="THROTTLE allowed, random keys|THROTTLE bt:__rand_int__ 0.01 1000 100000 1"
  [throttle_hot]="THROTTLE, hot key (all allowed under callgrind)|THROTTLE bh:hot 100000 0.1 1 1"
  [peek]="THROTTLE.PEEK, random keys|THROTTLE.PEEK bt:__rand_int__ 0.01 1000 100000 1"
  [permit]="PERMIT, random keys|PERMIT bp:__rand_int__ 60000 1000000"
  [permit_hot]="PERMIT, hot key|PERMIT ph:hot 0.01 100"
  [throttle_cl]="THROTTLE, redis-cell's limit, random keys|THROTTLE bs:__rand_int__ 0.5 32 1"
  [cell]="CL.THROTTLE (redis-cell), random keys|CL.THROTTLE bc:__rand_int__ 15 30 60 1"
  [throttle_cl_hot]="THROTTLE, redis-cell's limit, hot key (denied)|THROTTLE bs:hot 0.5 32 1"
  [cell_hot]="CL.THROTTLE (redis-cell), hot key (denied)|CL.THROTTLE bc:hot 15 30 60 1"
  [cl]="CL.THROTTLE (this module), random keys|CL.THROTTLE bm:__rand_int__ 15 30 60 1"
  [cl_hot]="CL.THROTTLE (this module), hot key (denied)|CL.THROTTLE bm:hot 15 30 60 1"
)
declare -A what=() cmd=()
for w in "${!workload[@]}"; do
  what[$w]=${workload[$w]%%|*}
  cmd[$w]=${workload[$w]#*|}
done
for w in $WORKLOADS; do [ -n "${cmd[$w]:-}" ] || die "unknown workload $w (known: $ALL)"; done
is_cell() { case $1 in cell | cell_hot) return 0 ;; *) return 1 ;; esac; }

# ---- the table -------------------------------------------------------------------------
ir() { awk -F'\t' -v w="$2" -v r="$3" '$1 == w && $2 == r { v = $3 } END { print v }' "$1"; }
steady() { awk -F'\t' -v w="$2" -v r="$3" '$1 == w && $2 == r { v = $5 } END { print v }' "$1"; }
fmt() { # 13192 → 13,192
  [ -n "$1" ] || { echo "—"; return; }
  awk -v n="$1" 'BEGIN { s = sprintf("%d", n); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'
}
change() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == 0) print "—"; else printf "%+.1f%%", 100 * (b - a) / a }'; }
about() { sed -n 's/^# //p' "$1" | head -1; }
render() {
  local head rule rep suffix w line a b r base first
  echo "Instructions per call (Ir, callgrind, master only, pipeline 16):"
  echo
  if [ -n "$BEFORE" ]; then
    [ -f "$BEFORE" ] || die "no such file: $BEFORE"
    echo "- before: $(about "$BEFORE")"
    echo "- after: $(about "$TSV")"
    if [ "$(about "$BEFORE" | sed 's/; module.*//')" != "$(about "$TSV" | sed 's/; module.*//')" ]; then
      echo "- **not comparable**: the two runs differ in server, N, warm-up, keys or clients"
    fi
    echo
    head="| workload |"
    rule="|---|"
    for rep in $REPLICAS; do
      suffix=""
      [ "$rep" = yes ] && suffix=", replica"
      head="$head before$suffix | after$suffix | change |"
      rule="$rule---:|---:|---:|"
    done
    local count
    for count in ir steady; do
      if [ "$count" = steady ]; then
        echo
        echo "Steady (without the command-table lookups and expiry, whose cost varies from one server start to the next; see the script):"
        echo
      fi
      echo "$head"
      echo "$rule"
      for w in $WORKLOADS; do
        line="| ${what[$w]} |"
        for rep in $REPLICAS; do
          b=$($count "$BEFORE" "$w" "$rep")
          a=$($count "$TSV" "$w" "$rep")
          line="$line $(fmt "$b") | $(fmt "$a") | $(change "$b" "$a") |"
        done
        echo "$line"
      done
    done
  else
    about "$TSV"
    echo
    head="| workload | command |"
    rule="|---|---|"
    for rep in $REPLICAS; do
      if [ "$rep" = yes ]; then head="$head Ir per call, replica | steady, replica |"; else head="$head Ir per call | steady |"; fi
      rule="$rule---:|---:|"
    done
    echo "$head INCR's Ir ÷ this |"
    echo "$rule---:|"
    first=${REPLICAS%% *}
    for w in $WORKLOADS; do
      line="| ${what[$w]} | \`${cmd[$w]}\` |"
      for rep in $REPLICAS; do line="$line $(fmt "$(ir "$TSV" "$w" "$rep")") | $(fmt "$(steady "$TSV" "$w" "$rep")") |"; done
      base=$(ir "$TSV" incr "$first")
      r=$(awk -v a="$base" -v b="$(ir "$TSV" "$w" "$first")" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f", a / b }')
      echo "$line $r |"
    done
  fi
  echo
  for rep in $REPLICAS; do
    for w in throttle_cl throttle_cl_hot; do
      a=$(ir "$TSV" "$w" "$rep")
      b=$(ir "$TSV" "cell${w#throttle_cl}" "$rep")
      if [ -z "$a" ] || [ -z "$b" ]; then continue; fi
      echo "CL.THROTTLE's Ir ÷ THROTTLE's, the same limit, $([ "$w" = throttle_cl ] && echo random keys || echo hot key)$([ "$rep" = no ] || echo ", replica"): $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')× (goal ≥ 2× in speed)."
    done
  done
  a=$(ir "$TSV" throttle "${REPLICAS%% *}")
  [ -z "$a" ] || echo "Goal (issue 15): an allowed THROTTLE on random keys ≤ 9,500 Ir: $(fmt "$a") — $([ "$a" -le 9500 ] && echo met || echo "**not met**")."
  [ -n "$AFTER" ] || printf '\nRaw: %s; reports: %s/<workload>.<replica>.inclusive.txt and .self.txt (callgrind_annotate).\n' \
    "${TSV#"$ROOT"/}" "${DIR#"$ROOT"/}"
}

if [ -n "$AFTER" ]; then
  [ -n "$BEFORE" ] || die "AFTER needs BEFORE"
  [ -f "$AFTER" ] || die "no such file: $AFTER"
  TSV=$AFTER
  render
  exit 0
fi
if ! command -v valgrind >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "valgrind is required (apt-get install valgrind)"
  log "installing valgrind"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
command -v redis-benchmark >/dev/null 2>&1 || source scripts/deps.sh
case $SERVER in
  */*) server_bin=$SERVER ;;
  *) server_bin=$(scripts/servers.sh bin "$SERVER") ;;
esac
if [ -z "$MODULE" ]; then
  cargo build --release -p redis-throttle >&2
  MODULE=$ROOT/target/release/libredis_throttle.so
fi
[ -f "$MODULE" ] || die "module not found: $MODULE"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
MODULE=$(abs "$MODULE")
need_cell=0
for w in $WORKLOADS; do is_cell "$w" && need_cell=1; done
if [ "$need_cell" = 1 ]; then
  [ -n "$CELL_SO" ] || CELL_SO=$(scripts/cell.sh)
  [ -f "$CELL_SO" ] || die "redis-cell module not found: $CELL_SO"
  CELL_SO=$(abs "$CELL_SO")
fi
mkdir -p "$DIR"
rm -f "$DIR"/cg.out* "$DIR"/*.inclusive.txt "$DIR"/*.self.txt
TSV=$DIR/profile.tsv
printf '# %s, N=%s after %s warm-up calls, -r %s, -c %s; module sha1 %s%s\n' \
  "$("$server_bin" --version | sed -n 's/^\([A-Za-z]*\) server v=\([^ ]*\).*/\1 \2/p')" "$N" "$WARMUP" "$KEYSPACE" "$CLIENTS" \
  "$(sha1sum "$MODULE" | cut -c1-12)" "$([ -z "$CELL_SO" ] || echo ", redis-cell sha1 $(sha1sum "$CELL_SO" | cut -c1-12)")" >"$TSV"

free_port() {
  local attempt p
  for attempt in 1 2 3 4 5 6 7 8; do
    p=$((20000 + (RANDOM * 7 + attempt) % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port"
}
vg_pid="" rep_pid="" port=""
stop_servers() {
  if [ -n "$rep_pid" ] && kill -0 "$rep_pid" 2>/dev/null; then
    kill "$rep_pid" 2>/dev/null || true
    wait "$rep_pid" 2>/dev/null || true
  fi
  if [ -n "$vg_pid" ] && kill -0 "$vg_pid" 2>/dev/null; then
    redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || kill "$vg_pid" 2>/dev/null || true
    wait "$vg_pid" 2>/dev/null || true
  fi
  vg_pid="" rep_pid=""
}
trap stop_servers EXIT

# start MODULE_SO REPLICA(no|yes): the master under callgrind (+ a replica).
start() {
  local so=$1 rep=$2 rport
  port=$(free_port)
  mkdir -p "$DIR/master" "$DIR/replica"
  valgrind --tool=callgrind --dump-instr=${DUMP_INSTR:-no} --callgrind-out-file="$DIR/cg.out.%p" \
    "$server_bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR/master" \
    --repl-diskless-sync yes --repl-diskless-sync-delay 0 --loadmodule "$so" >"$DIR/server.log" 2>&1 &
  vg_pid=$!
  for _ in $(seq 1 300); do
    [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
    kill -0 "$vg_pid" 2>/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
    sleep 0.2
  done
  if [ "$rep" = yes ]; then
    rport=$(free_port)
    "$server_bin" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR/replica" \
      --loadmodule "$so" --replicaof 127.0.0.1 "$port" >"$DIR/replica.log" 2>&1 &
    rep_pid=$!
    for _ in $(seq 1 300); do
      redis-cli -p "$rport" INFO replication 2>/dev/null | tr -d '\r' | grep -q '^master_link_status:up$' && return 0
      kill -0 "$rep_pid" 2>/dev/null || { cat "$DIR/replica.log" >&2; exit 1; }
      sleep 0.2
    done
    die "the replica did not sync"
  fi
}

bench() { # requests words...
  local n=$1
  shift
  redis-benchmark -p "$port" -c "$CLIENTS" -P 16 -r "$KEYSPACE" -n "$n" --csv "$@" >/dev/null
}
# The replica has applied everything: the next measurement starts clean.
settle() { [ -z "$rep_pid" ] || [ "$(redis-cli -p "$port" WAIT 1 60000)" = 1 ] || die "the replica fell behind"; }

measure() { # WORKLOAD REPLICA
  local w=$1 rep=$2 words f total
  read -r -a words <<<"${cmd[$w]}"
  # PEEK reads what THROTTLE wrote; the others start from an empty server.
  if [ "$w" != peek ]; then
    redis-cli -p "$port" FLUSHALL >/dev/null
    bench "$WARMUP" "${words[@]}"
  fi
  settle
  callgrind_control -z "$vg_pid" >/dev/null
  bench "$N" "${words[@]}"
  settle
  callgrind_control -d "$w.$rep" "$vg_pid" >/dev/null
  f=$(grep -l "^desc: Trigger: dump $w.$rep\$" "$DIR"/cg.out.* | tail -1)
  total=$(awk '/^summary:/ { print $2; exit }' "$f")
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null >"$DIR/$w.$rep.inclusive.txt" || true
  callgrind_annotate "$f" 2>/dev/null >"$DIR/$w.$rep.self.txt" || true
  # "Steady": without the parts of Redis whose cost depends on the random
  # hash seed each server start picks (the command table's lookups: a name
  # that shares a bucket costs 100-150 Ir more) or on how long the run
  # takes (expiry, active and lazy). See NOISY.
  noisy=$(callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
    awk -v re="[?]+:($NOISY) " '$0 ~ re { gsub(",", "", $1); s += $1 } END { print s + 0 }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$w" "$rep" $((total / N)) "${cmd[$w]}" $(((total - noisy) / N)) >>"$TSV"
  log "$w, replica $rep: $((total / N)) Ir per call, $(((total - noisy) / N)) steady ($f)"
}

own=() peer=()
for w in $WORKLOADS; do
  # PEEK needs THROTTLE's keys: measure it right after THROTTLE.
  if is_cell "$w"; then peer+=("$w"); elif [ "$w" != peek ]; then own+=("$w"); fi
  if [ "$w" = throttle ] && [[ " $WORKLOADS " == *" peek "* ]]; then own+=(peek); fi
done
[[ " $WORKLOADS " != *" peek "* ]] || [[ " $WORKLOADS " == *" throttle "* ]] || own+=(peek)
t0=$SECONDS
for rep in $REPLICAS; do
  if [ ${#own[@]} -gt 0 ]; then
    start "$MODULE" "$rep"
    for w in "${own[@]}"; do measure "$w" "$rep"; done
    stop_servers
  fi
  if [ ${#peer[@]} -gt 0 ]; then
    start "$CELL_SO" "$rep"
    for w in "${peer[@]}"; do measure "$w" "$rep"; done
    stop_servers
  fi
done
log "took $((SECONDS - t0)) s"
render
