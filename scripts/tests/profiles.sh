#!/usr/bin/env bash
# The module built with the `ci` profile (what scripts/test.sh tests: no LTO,
# opt-level 0) and with the `release` profile (fat LTO, one codegen unit:
# what users, scripts/serve.sh and the benchmarks run) load and answer the
# same. One server each, the module loaded with `test-clock yes`; the same
# fixed script of commands on a frozen clock (replies, errors, DUMP payloads,
# INFO throttle's counters) through redis-cli; the transcripts must be equal
# byte for byte, and must hold the replies this script knows.
#
#   scripts/tests/profiles.sh target/ci/libredis_throttle.so target/release/libredis_throttle.so
#
# REDIS_SERVER picks the server (default redis-server).
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 CI_SO RELEASE_SO" >&2; exit 2; }
server=${REDIS_SERVER:-redis-server}
work=$(mktemp -d)
trap 'for p in "$work"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$work"' EXIT

# The script: every command, accepted and refused input, the clock moved.
cat >"$work/script" <<'EOF'
THROTTLE.CLOCK FREEZE 1700000000000000
THROTTLE user:1 5 2 8
THROTTLE user:1 5 2 8 100
THROTTLE user:1 5 2 8 80
THROTTLE user:1 5 2 8 0
THROTTLE user:1 0.001 10 1000 3
THROTTLE user:2 1000000000 1 1 7
THROTTLE sw 0 1 1
THROTTLE sw -1 1 1
THROTTLE.PEEK user:1 5 2 8
THROTTLE.CLOCK FREEZE 1700000000123456
THROTTLE user:1 5 2 8
THROTTLE.GET user:1
THROTTLE.SET knobs RPS 0.25 BURST 10 WINDOW 60
THROTTLE knobs 1 1 1 2
THROTTLE.GET knobs
THROTTLE.REFUND user:1 3
THROTTLE.GET user:1
THROTTLE.ALL 1 {a}:s 5 1 1 {a}:m 1 100 1
THROTTLE.ALL 1 {a}:s 5 1 1 {a}:m 1 100 1
THROTTLE.RESET user:1
THROTTLE.GET user:1
PERMIT q 100 3
PERMIT q 100 3
PERMIT q 100 3 GRACE 7
PERMIT q 100 3
PERMIT q 100 3
PERMIT q 0.5 0
THROTTLE.CLOCK FREEZE 1700000000623456
PERMIT q 100 3
CL.THROTTLE c 15 30 60 1
CL.THROTTLE c 15 30 60 0
CL.THROTTLE c 15 30 60 16
CL.THROTTLE c 0 7 3
THROTTLE.GET c
DUMP user:2
DUMP knobs
DUMP q
DUMP c
DUMP {a}:s
THROTTLE
THROTTLE k x 1 1
THROTTLE k 1 1 1 -1
THROTTLE k 1e10 1 1
THROTTLE k 1 1 1 1 WAIT
PERMIT q 0 1
PERMIT q 100 1 BLOCK -1
CL.THROTTLE c 1 1 0
THROTTLE.SET knobs RPS
THROTTLE.ALL 0 a 1 1 1
THROTTLE.CLOCK NOW
SET str 42
THROTTLE str 1 1 1
THROTTLE.GET nosuchkey
THROTTLE.CLOCK FREEZE 1800000000000000
THROTTLE user:2 1000000000 1 1 7
THROTTLE knobs 1 1 1
PERMIT q 100 3
THROTTLE.CLOCK GET
INFO throttle
EOF

start() { # start NAME SO: a server on a free port; prints the port
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --dbfilename "$1.rdb" --logfile "$work/$1.log" --daemonize yes --pidfile "$work/$1.pid" \
    --loadmodule "$2" test-clock yes >/dev/null 2>&1 </dev/null
  for _ in $(seq 200); do
    [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && { echo "$port"; return; }
    sleep 0.05
  done
  echo "profiles: $1 did not start:" >&2
  cat "$work/$1.log" >&2
  exit 1
}

for so in "$1" "$2"; do [ -f "$so" ] || { echo "profiles: no module $so" >&2; exit 1; }; done
# Absolute: the server changes to its --dir before it loads modules.
ci=$(start ci "$(realpath "$1")")
release=$(start release "$(realpath "$2")")
redis-cli -p "$ci" <"$work/script" >"$work/ci.out" 2>&1
redis-cli -p "$release" <"$work/script" >"$work/release.out" 2>&1

fail=0
if cmp -s "$work/ci.out" "$work/release.out"; then
  echo "ok: the ci and release builds answer the same ($(wc -l <"$work/script") commands)"
else
  echo "FAIL: the ci and release builds answer differently:"
  diff -a "$work/ci.out" "$work/release.out" || true
  fail=1
fi
# The transcript holds what it must (not two empty or equally broken ones).
for want in "^1$" "^throttle_calls:" "^throttle_permit_calls:" "^ERR " "^WRONGTYPE" "^1800000000000000$"; do
  grep -aq "$want" "$work/ci.out" || { echo "FAIL: no line matching '$want' in the transcript"; fail=1; }
done
[ "$(head -2 "$work/ci.out" | tr '\n' ' ')" = "OK 1 " ] || { echo "FAIL: the script did not start as known:"; head -8 "$work/ci.out"; fail=1; }
echo "profiles: $((1 - fail)) passed, $fail failed"
exit "$fail"
