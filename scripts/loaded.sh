#!/usr/bin/env bash
# Runs scripts/test.sh N times in a row on a loaded machine: one CPU-bound
# process per core at normal priority (`stress-ng --cpu N` when installed,
# else `yes > /dev/null` per core) for the whole time. Prints `uptime`
# before and after, and each run's result and time; keeps each run's logs
# in target/loaded/run-K/ (target/test-logs is the last run's).
#
#   scripts/loaded.sh 5           # five runs; exit status 0 only if all pass
#
# Environment: LOAD_PROCS (CPU-bound processes, default: one per core);
# everything else goes to scripts/test.sh (TEST_SERVERS, TEST_JOBS...).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 N (runs of scripts/test.sh)" >&2; exit 2; }
procs=${LOAD_PROCS:-$(nproc)}
out=target/loaded
rm -rf "$out"
mkdir -p "$out"

load=()
stop_load() { [ ${#load[@]} -gt 0 ] && kill "${load[@]}" 2>/dev/null; wait "${load[@]}" 2>/dev/null || true; }
trap stop_load EXIT
if command -v stress-ng >/dev/null 2>&1; then
  how="stress-ng --cpu $procs"
  stress-ng --cpu "$procs" --timeout 0 --quiet >"$out/stress-ng.log" 2>&1 &
  load+=($!)
else
  how="$procs x 'yes > /dev/null'"
  for _ in $(seq "$procs"); do
    yes >/dev/null &
    load+=($!)
  done
fi
echo "loaded: $how at normal priority (pids ${load[*]}); $runs run(s) of scripts/test.sh"
echo "loaded: before: $(uptime)"

passed=0
results=()
for k in $(seq "$runs"); do
  t0=$SECONDS
  status=0
  bash scripts/test.sh >"$out/run-$k.log" 2>&1 || status=$?
  secs=$((SECONDS - t0))
  cp -r target/test-logs "$out/run-$k"
  summary=$(grep -E '^tests: ' "$out/run-$k.log" | tail -1)
  if [ "$status" = 0 ]; then
    passed=$((passed + 1))
    results+=("run $k: pass in $((secs / 60)) min $((secs % 60)) s ($summary)")
  else
    failing=$(awk -F'\t' '$3 != "ok" { printf "%s%s on %s", sep, $2, $1; sep = ", " }' "$out/run-$k/results.tsv")
    results+=("run $k: FAIL in $((secs / 60)) min $((secs % 60)) s ($summary; failed: ${failing:-see the log}; log: $out/run-$k.log)")
  fi
  echo "loaded: ${results[-1]} [$(uptime | sed 's/.*load average/load average/')]"
done
echo "loaded: after: $(uptime)"
stop_load
load=()
echo
printf '%s\n' "${results[@]}"
echo "loaded: $passed of $runs runs passed"
[ "$passed" = "$runs" ]
