#!/usr/bin/env bash
# Memory of a held client, beside a BLPOP client: N connections each held
# by `PERMIT key 60000 N BLOCK 0` (a minute apart: none is released during
# the run), then N held by `BLPOP list 0`, on a fresh server each; used_memory
# before the connections and while they are held, per client (the
# connection included; an idle connection's own cost is shown apart); then
# the connections close and the script times how long the server takes to
# give 90% of that memory back.
#
#   scripts/bench/held-memory.sh                       # Debian's redis-server, 2,000 clients
#   SERVERS="redis-7.0 redis-7.2.6 valkey-9" N=1000 scripts/bench/held-memory.sh
#
# SERVERS: names for scripts/servers.sh or server binaries' paths (default
# redis-server); N [2000]; MODULE [scripts/build.sh]. Prints a markdown table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
N=${N:-2000}
MODULE=${MODULE:-$(scripts/build.sh)}
ulimit -n $((N * 2 + 100)) 2>/dev/null || true

bin_of() {
  case $1 in
    */*) echo "$1" ;;
    redis-server) command -v redis-server ;;
    *) scripts/servers.sh bin "$1" ;;
  esac
}

echo "| server | PERMIT … BLOCK: bytes per held client | BLPOP: bytes per blocked client | an idle connection | PERMIT ÷ BLPOP | 90% back after close (s) |"
echo "|---|---:|---:|---:|---:|---:|"
for name in ${SERVERS:-redis-server}; do
  bin=$(bin_of "$name")
  python3 - "$bin" "$MODULE" "$N" <<'EOF'
import os, socket, subprocess, sys, tempfile, time

binary, module, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port)); self.f = self.s.makefile("rb")
    def call(self, *args):
        self.s.sendall(resp(*args)); return self.read()
    def read(self):
        line = self.f.readline()
        if line[:1] == b"$":
            size = int(line[1:]); return None if size < 0 else self.f.read(size + 2)[:-2]
        if line[:1] == b"*":
            return [self.read() for _ in range(int(line[1:]))]
        return line[1:-2]

def used(c):
    info = c.call("INFO", "memory").decode()
    return int(next(l.split(":")[1] for l in info.split("\r\n") if l.startswith("used_memory:")))

def measure(command):
    port = free_port()
    d = tempfile.mkdtemp()
    srv = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d,
                            "--maxclients", str(n + 100), "--loadmodule", module],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = Conn(port); c.call("PING"); break
            except OSError:
                time.sleep(0.1)
        if command == "permit":
            c.call("PERMIT", "held", 60000, n)  # the first slot is now: every later caller waits
        time.sleep(0.2)
        base = used(c)  # before the connections
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        time.sleep(0.5)
        connected = used(c)
        for s in idle:
            s.sendall(resp("PERMIT", "held", 60000, n, "BLOCK", 0) if command == "permit" else resp("BLPOP", "list", 0))
        for _ in range(200):
            clients = c.call("INFO", "clients").decode()
            blocked = int(next(l.split(":")[1] for l in clients.split("\r\n") if l.startswith("blocked_clients:")))
            if blocked >= n:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        held = used(c)
        start = used(c)
        for s in idle:
            s.close()
        t0 = time.monotonic()
        back = None
        while time.monotonic() - t0 < 60:
            if used(c) <= base + (held - base) * 0.1:  # 90% of it given back
                back = time.monotonic() - t0
                break
            time.sleep(0.1)
        return (held - base) / n, (connected - base) / n, back
    finally:
        srv.kill(); srv.wait()

version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[2].replace("v=", "")
kind = "Valkey" if "valkey" in os.path.basename(binary) else "Redis"
p, idle, back = measure("permit")
b, _, _ = measure("blpop")
print(f"| {kind} {version} | {p:,.0f} | {b:,.0f} | {idle:,.0f} | {p / b:.2f} | {'%.1f' % back if back is not None else '> 60'} |")
EOF
done
