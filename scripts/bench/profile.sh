#!/usr/bin/env bash
# Instruction counts per call (valgrind --tool=callgrind), which do not
# depend on how busy the machine is: redis-server runs under callgrind with
# the module loaded; for each workload the counters are zeroed after a
# warm-up (so random keys mostly exist, as in a long run), redis-benchmark
# drives N calls at pipeline 16, and the counters are dumped.
#
#   scripts/bench/profile.sh                 # all workloads, ~3-5 min
#   N=50000 WORKLOADS="incr throttle" scripts/bench/profile.sh
#
# Prints a markdown table (Ir per call, × INCR) and leaves the dumps and
# `callgrind_annotate --inclusive=yes` reports in $DIR (target/profile):
#   callgrind_annotate --inclusive=yes target/profile/cg.out.<n> | less
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-100000}
WARMUP=${WARMUP:-300000}
KEYSPACE=${KEYSPACE:-100000}
CLIENTS=${CLIENTS:-50}
DIR=${DIR:-$ROOT/target/profile}
MODULE=${MODULE:-}
WORKLOADS=${WORKLOADS:-"incr throttle peek throttle_hot permit permit_hot"}

command -v valgrind >/dev/null 2>&1 || { echo "profile: valgrind is required (apt-get install valgrind)" >&2; exit 1; }
if [ -z "$MODULE" ]; then
  cargo build --release -p redis-throttle >&2
  MODULE=$ROOT/target/release/libredis_throttle.so
fi
mkdir -p "$DIR"
rm -f "$DIR"/cg.out*

declare -A cmd=(
  [incr]="INCR bi:__rand_int__"
  [throttle]="THROTTLE bt:__rand_int__ 0.01 1000 100000 1"
  [throttle_hot]="THROTTLE bh:hot 100000 0.1 1 1"
  [peek]="THROTTLE.PEEK bt:__rand_int__ 0.01 1000 100000 1"
  [permit]="PERMIT bp:__rand_int__ 60000 1000000"
  [permit_hot]="PERMIT ph:hot 0.01 100"
)

port=""
for attempt in 1 2 3 4 5; do
  p=$((20000 + (RANDOM * 7 + attempt) % 12000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "profile: no free port" >&2; exit 1; }

valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$DIR/cg.out" \
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$DIR" --loadmodule "$MODULE" >"$DIR/server.log" 2>&1 &
vg_pid=$!
cleanup() {
  if kill -0 "$vg_pid" 2>/dev/null; then
    redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || kill "$vg_pid" 2>/dev/null || true
    wait "$vg_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
  kill -0 "$vg_pid" 2>/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
  sleep 0.2
done

bench() { # requests words...
  local n=$1
  shift
  redis-benchmark -p "$port" -c "$CLIENTS" -P 16 -r "$KEYSPACE" -n "$n" --csv "$@" >/dev/null
}

declare -A ir
for w in $WORKLOADS; do
  read -r -a words <<<"${cmd[$w]}"
  # PEEK reads what THROTTLE wrote; the others start from an empty server.
  [ "$w" = peek ] || redis-cli -p "$port" FLUSHALL >/dev/null
  [ "$w" = peek ] || bench "$WARMUP" "${words[@]}"
  callgrind_control -z "$vg_pid" >/dev/null
  bench "$N" "${words[@]}"
  callgrind_control -d "$w" "$vg_pid" >/dev/null
  f=$(grep -l "^desc: Trigger: dump $w\$" "$DIR"/cg.out.* | tail -1)
  total=$(awk '/^summary:/ { print $2; exit }' "$f")
  ir[$w]=$((total / N))
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null >"$DIR/$w.inclusive.txt" || true
  callgrind_annotate "$f" 2>/dev/null >"$DIR/$w.self.txt" || true
  echo "profile: $w: ${ir[$w]} Ir per call ($f)" >&2
done

echo "| workload | command | Ir per call | × INCR (Ir ratio, inverted) |"
echo "|---|---|---:|---:|"
for w in $WORKLOADS; do
  if [ -n "${ir[incr]:-}" ]; then
    r=$(awk -v a="${ir[incr]}" -v b="${ir[$w]}" 'BEGIN { printf "%.2f", a / b }')
  else
    r="-"
  fi
  echo "| $w | \`${cmd[$w]}\` | ${ir[$w]} | $r |"
done
echo
echo "Reports: $DIR/<workload>.inclusive.txt and .self.txt (callgrind_annotate)."
