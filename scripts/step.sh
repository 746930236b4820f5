#!/usr/bin/env bash
# One step of scripts/test.sh (the recipes of scripts/test.mk call it):
#
#   scripts/step.sh COLUMN NAME 'SHELL COMMAND'
#
# Runs the command (bash -c, at most STEP_TIMEOUT seconds, default 900) with
# its output in target/test-logs/COLUMN.NAME.log, prints one line, appends
# its result to target/test-logs/results.tsv (column, suite, ok|FAIL,
# seconds, tests passed, tests failed, log) and its CPU seconds to cpu.tsv
# (column, name, seconds, CPU seconds of the processes it waited for: a
# daemonized server's are not). COLUMN is a server name, or "-"
# for a step run once. Exits 0 (the result is in results.tsv), or with the
# command's status when STEP_BLOCKS=1 (a set-up step: make then skips what
# needs it).
#
# A cargo nextest command writes JUnit where $STEP_NEXTEST says (pass
# `--tool-config-file test-sh:$STEP_NEXTEST`): each test binary then gets a
# row of its own, with its tests counted. Otherwise the tests are counted from
# the log's closing lines: "N passed, M failed" (optionally after a word and a
# colon), pytest's "N passed, M failed in Ts", cargo test's "test result:".
set -uo pipefail
[ $# = 3 ] || { echo "usage: $0 COLUMN NAME 'COMMAND'" >&2; exit 2; }
column=$1 name=$2 command=$3
root=$(cd "$(dirname "$0")/.." && pwd)
logs=$root/target/test-logs
id=$(printf '%s.%s' "$column" "$name" | tr -c 'A-Za-z0-9._-' '-')
log=$logs/$id.log
export STEP_JUNIT=$logs/$id.junit.xml STEP_NEXTEST=$logs/$id.nextest.toml
printf '[profile.ci.junit]\npath = "%s"\n' "$STEP_JUNIT" >"$STEP_NEXTEST"
rm -f "$STEP_JUNIT"
unset MAKEFLAGS MFLAGS MAKELEVEL # not make's children: their own jobs
t0=$SECONDS
cd "$root" && timeout --kill-after=10 "${STEP_TIMEOUT:-900}" bash -c "$command" >"$log" 2>&1 </dev/null
status=$?
[ "$status" = 124 ] && echo "step: timed out after ${STEP_TIMEOUT:-900} s" >>"$log"
secs=$((SECONDS - t0))
# CPU seconds of the step's processes (those it waited for), for cpu.tsv
times >"$log.times" # (in this shell: a subshell would count only its own)
cpu=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, "m"); c += t[1] * 60 + t[2] } printf "%d", c + 0.5 }' "$log.times")
rm -f "$log.times"
printf '%s\t%s\t%s\t%s\n' "$column" "$name" "$secs" "$cpu" >>"$logs/cpu.tsv"

rows() { # the result rows, without the log column
  if [ -s "$STEP_JUNIT" ]; then # a row per test binary; seconds: its tests' time, added
    awk -v col="$column" -v status="$status" -v name="$name" -v secs="$secs" '
      function attr(a,  m) { return match($0, a "=\"[^\"]*\"") ? substr($0, RSTART + length(a) + 2, RLENGTH - length(a) - 3) : "" }
      /<testsuite / { suite = attr("name"); n = attr("tests"); bad = attr("failures") + attr("errors"); skip = attr("skipped"); t = 0 }
      /<testcase / { t += attr("time") }
      /<\/testsuite>/ { printf "%s\t%s\t%s\t%d\t%d\t%d\n", col, suite, bad ? "FAIL" : "ok", t + 0.5, n - bad - skip, bad; fails += bad; rows++ }
      END { if (status != 0 && !fails) printf "%s\t%s\t%s\t%d\t0\t1\n", col, name, "FAIL", secs }' "$STEP_JUNIT"
  else
    awk -v col="$column" -v status="$status" -v name="$name" -v secs="$secs" '
      /^([A-Za-z0-9_.-]+: )?[0-9]+ passed, [0-9]+ failed/ { sub(/^[A-Za-z0-9_.-]+: /, ""); p += $1; f += $3; n++ }
      /^=* ?[0-9]+ (passed|failed|errors?)(, [0-9]+ [a-z]+)* in [0-9.]+s/ && name !~ /without/ {
        for (i = 1; i < NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; else if ($(i + 1) ~ /^(failed|error)/) f += $i }; n++ }
      /^test result: / { gsub(/;/, ""); p += $4; f += $6; n++ }
      END { if (status != 0 && !f) f = 1
        printf "%s\t%s\t%s\t%d\t%d\t%d\n", col, name, status ? "FAIL" : "ok", secs, p, f }' "$log"
  fi
}
rows | while IFS=$'\t' read -r c s st sec p f; do
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$s" "$st" "$sec" "$p" "$f" "$log" >>"$logs/results.tsv"
done
if [ "$status" = 0 ]; then
  printf '  %-13s %-24s ok    %4d s\n' "$column" "$name" "$secs"
else
  printf '  %-13s %-24s FAIL  %4d s  (%s)\n' "$column" "$name" "$secs" "${log#"$root"/}"
fi
[ "${STEP_BLOCKS:-0}" = 1 ] && exit "$status"
exit 0
