#!/usr/bin/env bash
# Runs each seed's own tests and examples, with one import line changed,
# against a fresh server with the module:
#
#   - ApiQueue (api-rate-limiter 0.1.1): its unit tests
#     (apiqueue/tests/test_rate_mgr.py, 4 tests), unpacked from
#     $PEERS_SRC/api-rate-limiter-a98c31d.tar.gz at run time, with only
#     `from apiqueue import ApiQueue` -> `from redis_throttle.apiqueue import
#     ApiQueue` (checked: one line differs); and its README example. (Its
#     other test file, test_rate_mgr_integration.py, calls AWS with real
#     credentials: not run.)
#   - Rush: the seed's example ($SEEDS_SRC/000_*.txt), with only the import
#     and the endpoint's URL changed, against examples/python/rush_http.py
#     --serve (an XML-RPC endpoint limited by THROTTLE); it must print 9
#     attempted, then 1 attempted and 1 throttled.
#   - The distributed throttle exercise (no licence: not copied here):
#     examples/python/exercise_simulation.py, the same simulation as its
#     main.py on redis_throttle.exercise, checked on the server's slots.
#   - examples/python/{apiqueue_queue,rush_http}.py.
#
# Nothing of the peers' code is committed: the tarball and the seed are read
# where they are. PEERS_SRC / SEEDS_SRC default to ../shared/{peers,seeds}
# beside the clone; THROTTLE_MODULE picks the module (default:
# scripts/build.sh's), REDIS_SERVER the server binary. Prints one line per
# part and "seeds: N passed, M failed" last; exits non-zero if one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
peers=${PEERS_SRC:-$root/../shared/peers}
seeds=${SEEDS_SRC:-$root/../shared/seeds}
THROTTLE_MODULE=${THROTTLE_MODULE:-$(scripts/build.sh)}
export THROTTLE_MODULE
server=${REDIS_SERVER:-redis-server}
py=$(scripts/python.sh --venv)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port pid
  for _ in $(seq 300); do
    "$py" -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

port=$(free_port)
mkdir -p "$work/server"
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/server" \
  --loadmodule "$THROTTLE_MODULE" >"$work/server/log" 2>&1 &
pids+=($!)
wait_port "$port" "${pids[-1]}" || { cat "$work/server/log" >&2; exit 1; }
export REDIS_URL="redis://127.0.0.1:$port"

passed=0 failed=0
part() { # name, then the command; its output is shown, indented
  local name=$1 t0=$SECONDS
  shift
  if "$@" >"$work/part.out" 2>&1; then
    passed=$((passed + 1))
    sed 's/^/    /' "$work/part.out" | tail -40
    echo "PASS $name ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1))
    sed 's/^/    /' "$work/part.out" | tail -80
    echo "FAIL $name ($((SECONDS - t0)) s)"
  fi
}

# --- ApiQueue -----------------------------------------------------------------
apiqueue_tests() {
  local src=$work/api-rate-limiter
  mkdir -p "$src" "$work/aq"
  tar xzf "$peers/api-rate-limiter-a98c31d.tar.gz" -C "$work" || return 1
  local orig=$src/apiqueue/tests/test_rate_mgr.py
  sed 's/^from apiqueue import ApiQueue$/from redis_throttle.apiqueue import ApiQueue/' "$orig" >"$work/aq/test_rate_mgr.py"
  local changed
  changed=$(diff "$orig" "$work/aq/test_rate_mgr.py" | grep -c '^>' || true)
  [ "$changed" = 1 ] || { echo "expected exactly one changed line (the import), got $changed"; return 1; }
  diff "$orig" "$work/aq/test_rate_mgr.py" || true
  # as the seed's Makefile runs it: python apiqueue/tests/test_rate_mgr.py
  (cd "$work/aq" && timeout 600 "$py" test_rate_mgr.py -v 2>&1 | grep -v '^ERROR: ThreadID' | tee "$work/aq/out")
  grep -q '^Ran 4 tests' "$work/aq/out" && tail -1 "$work/aq/out" | grep -q '^OK'
}

apiqueue_readme() {
  # The README's "Example - 1 call every 100ms" is a sketch: it has no
  # import, `def some_method()` lacks its colon, `client` is the caller's
  # AWS client and nothing calls some_method. Added here, and nothing else:
  # the import, the colon, a client that records its calls, and five
  # threads calling some_method where the sketch has its second `...`.
  "$py" - "$work/api-rate-limiter/README.md" <<'EOF'
import re, sys, textwrap, threading, time
readme = open(sys.argv[1]).read()
block = re.search(r"#### Example - 1 call every 100ms\n```\n(.*?)```", readme, re.S).group(1)
code = textwrap.dedent(block)
print(code)
assert code.count("def some_method()\n") == 1 and code.count("...") == 2
code = code.replace("def some_method()\n", "def some_method():\n")
first, second = code.index("..."), code.index("...", code.index("...") + 3)
calls = """threads = [threading.Thread(target=some_method) for _ in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()"""
code = code[:second] + calls + code[second + 3:]
code = "from redis_throttle.apiqueue import ApiQueue\n" + code


class Client:
    def __init__(self):
        self.calls = []

    def describe_instances(self):
        self.calls.append(time.monotonic())


client = Client()
t0 = time.monotonic()
exec(compile(code, "apiqueue-readme-example", "exec"), {"client": client, "threading": threading})
assert len(client.calls) == 5, client.calls
# released one slot (100 ms of the server's clock) apart: the fifth call
# cannot come before four slots after the first enqueue
assert client.calls[-1] - t0 >= 0.4 - 0.002, client.calls
print(f"5 calls, the last {client.calls[-1] - t0:.3f} s after the queue started")
EOF
}

# --- Rush -----------------------------------------------------------------------
rush_seed() {
  local api_port seed
  api_port=$(free_port)
  "$py" examples/python/rush_http.py --serve "$api_port" &
  pids+=($!)
  wait_port "$api_port" "${pids[-1]}" || return 1
  seed=$(ls "$seeds"/000_*.txt)
  "$py" - "$seed" "$api_port" "$work/rush_seed.py" <<'EOF' || return 1
import difflib, re, sys, textwrap
text = open(sys.argv[1]).read()
block = re.search(r"\.\. code:: python\n\n(.*?)\nThis will produce output", text, re.S).group(1)
seed = textwrap.dedent(block)
url = "https://badname:supersecretpassword@api.memset.com/v1/xmlrpc/"
assert seed.count("from rush import Rusher") == 1 and seed.count(url) == 1
code = seed.replace("from rush import Rusher", "from redis_throttle.rush import Rusher")
code = code.replace(url, f"http://badname:supersecretpassword@127.0.0.1:{sys.argv[2]}/v1/xmlrpc/")
changed = [l for l in difflib.unified_diff(seed.splitlines(), code.splitlines(), lineterm="", n=0)
           if l[:1] in "+-" and l[:3] not in ("+++", "---")]
print("\n".join(changed))
assert len(changed) == 4, changed  # two lines out, two in: the import and the URL
open(sys.argv[3], "w").write(code)
EOF
  timeout 60 "$py" "$work/rush_seed.py" >"$work/rush.out" || { cat "$work/rush.out"; return 1; }
  cat "$work/rush.out"
  "$py" - "$work/rush.out" <<'EOF'
import re, sys
out = open(sys.argv[1]).read()
runs = re.findall(r"^(\d+) threads completed in [\d.]+, results:\n((?:    .*\n?)*)", out, re.M)
got = [(int(n), dict(re.findall(r"    (\S.*): (\d+)", body))) for n, body in runs]
want = [(9, {"attempted": "9"}), (2, {"attempted": "1", "throttled": "1"})]
assert got == want, got
print("as the seed shows: 9 attempted, then 1 attempted and 1 throttled")
EOF
}

part "ApiQueue: its unit tests (test_rate_mgr.py), import changed" apiqueue_tests
part "ApiQueue: its README example" apiqueue_readme
part "Rush: the seed's example against a THROTTLE-limited XML-RPC endpoint" rush_seed
part "exercise: the main.py simulation (examples/python/exercise_simulation.py)" \
  timeout 120 "$py" examples/python/exercise_simulation.py
for ex in apiqueue_queue rush_http; do
  part "examples/python/$ex.py" timeout 120 "$py" "examples/python/$ex.py"
done

echo "seeds: $passed passed, $failed failed"
[ "$failed" = 0 ]
