#!/usr/bin/env python3
"""Runs every ```python and ```js (```javascript) block of Markdown files:
README.md and docs/*.md unless files are named.

Each block runs on its own against a fresh server with the module loaded
(`--loadmodule <so> test-clock yes`), with REDIS_URL in its environment,
and must exit 0 within its time limit. Blocks that are not meant to run
must use another tag (```text). Blocks that mention CLUSTER_NODES also get
a 3 + 3 cluster (scripts/cluster.sh), as CLUSTER_NODES=host:port,...

    scripts/snippets.sh            # sets up the interpreters, then runs this
    scripts/snippets.py --python target/snippets-venv/bin/python   # README.md and docs/*.md
    scripts/snippets.py docs/examples.md --python ...                 # one page

Prints one line per block and "snippets: N passed, M failed" last.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
LANGS = {"python": "python", "py": "python", "js": "js", "javascript": "js"}


def pages() -> list[Path]:
    """The documents checked by default: README.md, then docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path):
    """(line, lang, code) for each runnable fenced block."""
    lines = Path(path).read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        tag, start, body = m.group(1).lower(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if tag in LANGS:
            out.append((start, LANGS[tag], "\n".join(body) + "\n"))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A fresh server with the module and its test clock."""

    def __init__(self, binary, module, module_args, work):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="server-", dir=work))
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "server.log"),
             "--loadmodule", module, *module_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not answer PING within 10 s")
            time.sleep(0.02)

    def log(self):
        try:
            return "\n".join((self.dir / "server.log").read_text().splitlines()[-10:])
        except OSError:
            return ""

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    # A SIGTERM (a timeout) still stops the servers and the cluster below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("markdown", nargs="*", help="Markdown files (default: README.md and docs/*.md)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for python blocks")
    ap.add_argument("--node-modules", default=str(ROOT / "clients/matrix/node_modules"))
    ap.add_argument("--server", default=os.environ.get("REDIS_SERVER", "redis-server"))
    ap.add_argument("--module", default=os.environ.get("THROTTLE_MODULE", str(ROOT / "target/release/libredis_throttle.so")))
    ap.add_argument("--module-args", default="test-clock yes", help="arguments after the module path")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per block")
    ap.add_argument("--only", choices=["python", "js"], help="run only blocks of this language")
    args = ap.parse_args()

    work = ROOT / "target" / "snippets"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # ES modules resolve packages from node_modules beside or above the file.
    (work / "node_modules").symlink_to(Path(args.node_modules).resolve())

    todo = []
    for md in args.markdown or pages():
        md = Path(md).resolve()
        name = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
        for line, lang, code in blocks(md):
            if args.only in (None, lang):
                todo.append((f"{name}:{line}", lang, code))
    env_cluster = {}
    if any("CLUSTER_NODES" in code for _, _, code in todo):
        base = int(os.environ.get("SNIPPETS_CLUSTER_PORT", "22001"))
        env = dict(os.environ, CLUSTER_PORT=str(base), REDIS_SERVER=args.server, THROTTLE_MODULE=args.module)
        subprocess.run(["scripts/cluster.sh", "start"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        env_cluster = {"CLUSTER_NODES": ",".join(f"127.0.0.1:{base + i}" for i in range(6))}

    passed = failed = 0
    try:
        for n, (where, lang, code) in enumerate(todo):
            ext = ".py" if lang == "python" else (".cjs" if "require(" in code and "import " not in code else ".mjs")
            src = work / f"block{n}-{where.split(':')[-1]}{ext}"
            src.write_text(code)
            cmd = [args.python, str(src)] if lang == "python" else ["node", str(src)]
            t0 = time.monotonic()
            server = None
            try:
                server = Server(args.server, args.module, args.module_args.split(), work)
                env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{server.port}", **env_cluster)
                r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=args.timeout)
                ok, detail = r.returncode == 0, (r.stdout + r.stderr).strip()
                if not ok:
                    detail = f"exit status {r.returncode}\n{detail}"
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"") + (e.stderr or b"")
                ok = False
                detail = f"still running after {args.timeout:.0f} s\n{out.decode(errors='replace') if isinstance(out, bytes) else out}"
            except RuntimeError as e:
                ok, detail = False, str(e)
            finally:
                if server:
                    server.stop()
            took = time.monotonic() - t0
            if ok:
                passed += 1
                print(f"ok   {where} ({lang}, {took:.1f} s)")
            else:
                failed += 1
                print(f"FAIL {where} ({lang}, {took:.1f} s):")
                print("     " + detail.replace("\n", "\n     ")[-3000:])
    finally:
        if env_cluster:
            env = dict(os.environ, CLUSTER_PORT=os.environ.get("SNIPPETS_CLUSTER_PORT", "22001"))
            subprocess.run(["scripts/cluster.sh", "stop"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    if not todo:
        print("snippets: no python or js block found")
        return 1
    print(f"snippets: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
