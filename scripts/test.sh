#!/usr/bin/env bash
# Runs every test, from a fresh clone (what CI runs, through .ci/run):
#   - installs what is missing (scripts/deps.sh: redis-server, libclang);
#   - then scripts/test.mk's steps, through make -k -j (a step starts as soon
#     as what it needs is ready; set-up builds run niced beside the tests):
#       set-up: the servers (scripts/servers.sh, SERVER_BUILD=test: built
#         once into ~/.cache/redis-throttle), the workspace in the `ci`
#         profile (no LTO: Cargo.toml), the release build (fat LTO), the
#         fault-injection build, redis-cell (scripts/cell.sh), the client
#         matrix's clients;
#       once: cargo fmt, clippy, unit and property tests (cargo nextest),
#         doc tests, scripts/tests/deps.sh, scripts/tests/profiles.sh (the
#         ci and release builds answer the same), tests/crossversion.rs
#         with every server, rush's tests, README snippets, the Python
#         package with and without the module;
#       on each server (Debian's Redis 7.0.15, Redis 7.2.6, 7.4.1, 8.2.3,
#         Valkey 8.0.1, Valkey 9): the integration suites (tests/*.rs), the
#         cluster suite, the client matrix;
#   - a summary: suite x server, ok/FAIL and seconds, and the tests counted.
# Logs, JUnit reports and results.tsv are in target/test-logs/; a failing
# step's log is printed. To add a step: scripts/test.mk says how.
#
# Environment: TEST_SERVERS (default: the six above, by scripts/servers.sh
# name), TEST_JOBS (steps at once, default 6), TEST_THREADS (tests at once
# within a Rust step, default 2), STEP_TIMEOUT (seconds, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$SECONDS
servers=(${TEST_SERVERS:-redis-7.0 redis-7.2.6 redis-7.4.1 valkey-8.0.1 valkey-9 redis-8.2.3})
logs=target/test-logs
source scripts/deps.sh
if ! cargo nextest --version >/dev/null 2>&1; then # brand-new machines have it: rarely needed
  echo "== installing cargo-nextest (cargo install --locked: a few minutes)"
  cargo install --locked cargo-nextest
fi
rm -rf "$logs"
mkdir -p "$logs/bin"
: >"$logs/results.tsv"
export SERVER_BUILD=test STEP_TIMEOUT=${STEP_TIMEOUT:-900}

# Clusters on a block of 1,400 ports of this run's own, below the ephemeral
# range, away from the defaults of cluster.sh (30001), the client matrix
# (21001) and the snippets (22001): another clone's run rarely draws the same.
blocks=(10000 11400 12800 14200 15600 17000 18400 23000 24400 25800 27200 28600)
ports=${blocks[RANDOM % ${#blocks[@]}]}

echo "== ${TEST_JOBS:-6} steps at a time; servers: ${servers[*]}; ports from $ports (logs in $logs)"
status=0
make -f scripts/test.mk -k -j "${TEST_JOBS:-6}" --no-print-directory \
  SERVERS="${servers[*]}" THREADS="${TEST_THREADS:-2}" PORTS="$ports" all || status=$?

# ------------------------------------------------------------ failures
while IFS=$'\t' read -r column suite result _ _ _ log; do
  [ "$result" = ok ] && continue
  status=1
  echo
  echo "===== FAILED: $suite on $column: $log (last 150 lines)"
  tail -n 150 "$log"
done < <(awk -F'\t' '$3 != "ok" && !seen[$7]++' "$logs/results.tsv")

# ------------------------------------------------------------- summary
echo
echo "== servers"
for s in "${servers[@]}"; do
  if [ -s "$logs/bin/$s" ]; then
    printf '  %-13s %s (%s)\n' "$s" "$("$(cat "$logs/bin/$s")" --version | cut -d' ' -f1-3)" "$(cat "$logs/bin/$s")"
  else
    printf '  %-13s not set up\n' "$s"; status=1
  fi
done
echo
echo "== summary: suite x server (ok/FAIL, seconds; - = once)"
awk -F'\t' -v servers="${servers[*]}" -v total=$((SECONDS - t_start)) '
  BEGIN { nc = split(servers " -", cols, " ") }
  { s = $2; sub(/^redis-throttle::/, "", s); if (!(s in cell)) order[++nr] = s
    cell[s]; c[s, $1] = sprintf("%-4s %4ds", $3, $4); if ($1 != "-") per[s] = 1
    passed += $5; failed += $6; steps++; if ($3 != "ok") bad++
    if (length(s) > w) w = length(s) }
  END {
    for (i = 1; i <= nr; i++) key[i] = (per[order[i]] ? (order[i] == "server" ? 0 : 1) : 2) sprintf("%04d", per[order[i]] ? 0 : i) order[i]
    for (i = 1; i <= nr; i++) for (j = i + 1; j <= nr; j++) if (key[j] < key[i]) { t = key[i]; key[i] = key[j]; key[j] = t }
    printf "%-*s", w + 2, ""; for (j = 1; j <= nc; j++) printf "%-14s", cols[j]; print ""
    for (i = 1; i <= nr; i++) { s = substr(key[i], 6); line = sprintf("%-*s", w + 2, s)
      for (j = 1; j <= nc; j++) { v = ((s, cols[j]) in c) ? c[s, cols[j]] : (per[s] && cols[j] != "-" ? "not run" : "")
        line = line sprintf("%-14s", v) }
      sub(/ +$/, "", line); print line }
    printf "\n%d of %d results ok; the whole run took %d min %d s\n", steps - bad, steps, total / 60, total % 60
    printf "tests: %d passed, %d failed\n", passed, failed }' "$logs/results.tsv"
exit "$status"
