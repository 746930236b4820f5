"""Real redis-server processes for the suite: one server, or a 3-master
cluster, on free loopback ports, with the module loaded (``test-clock yes``).

- ``$REDIS_SERVER`` picks the server binary (default: redis-server on PATH).
- ``$THROTTLE_MODULE`` picks the module (default:
  ``target/release/libredis_throttle.so`` of this repository).
- ``REDIS_THROTTLE_WITHOUT_MODULE=1`` starts plain servers without the
  module: every test must then fail (scripts/python.sh --without-module).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REPO = Path(__file__).resolve().parents[3]
WITHOUT_MODULE = os.environ.get("REDIS_THROTTLE_WITHOUT_MODULE") == "1"


def server_binary() -> str:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        raise RuntimeError("no redis-server: install it or set REDIS_SERVER")
    return binary


def module_path() -> str:
    path = Path(os.environ.get("THROTTLE_MODULE") or REPO / "target/release/libredis_throttle.so")
    if not path.exists():
        raise RuntimeError(f"no module at {path}: cargo build --release -p redis-throttle, or set THROTTLE_MODULE")
    return str(path)


def free_port(cluster: bool = False) -> int:
    """A free loopback port (and, for a cluster node, its bus port +10000)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not cluster:
            return port
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class Server:
    """One redis-server on a free port; ``stop()`` ends it."""

    def __init__(self, *extra: str, module_args: Optional[List[str]] = None):
        module = [] if WITHOUT_MODULE else ["--loadmodule", module_path(), *(module_args or [])]
        for attempt in range(3):  # the free port may be taken before the server binds it
            self.dir = tempfile.mkdtemp(prefix="redis-throttle-py-")
            self.port = free_port(cluster="--cluster-enabled" in extra)
            args = [
                server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--logfile", "server.log",
                *extra,
                *module,
            ]
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            try:
                self._wait_ready()
                return
            except RuntimeError:
                busy = "Address already in use" in self.log()
                self.stop()
                if not busy or attempt == 2:
                    raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return (Path(self.dir) / "server.log").read_text()[-2000:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        client = redis.Redis(port=self.port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{self.log()}")
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.02)
            raise RuntimeError(f"redis-server did not answer within 10 s:\n{self.log()}")
        finally:
            client.close()

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(port=self.port, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_module_server(*extra: str) -> Server:
    """A server with the module and its test clock. A module built before
    the test clock existed refuses the ``test-clock`` load argument: then
    the server runs without it and the clock tests are skipped as waiting
    for that feature."""
    try:
        return Server(*extra, module_args=["test-clock", "yes"])
    except RuntimeError as e:
        if WITHOUT_MODULE or "unknown module argument 'test-clock'" not in str(e):
            raise
        return Server(*extra)


SLOTS = 16384


class Cluster:
    """Three masters, no replicas; slots split evenly, formed with
    CLUSTER ADDSLOTSRANGE and CLUSTER MEET (no redis-cli needed)."""

    def __init__(self) -> None:
        self.nodes: List[Server] = []
        try:
            for _ in range(3):
                self.nodes.append(
                    start_module_server(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000",
                    )
                )
            self._form()
        except BaseException:
            self.stop()
            raise

    def _form(self) -> None:
        clients = [n.client(socket_timeout=5) for n in self.nodes]
        try:
            step = SLOTS // len(clients)
            for i, c in enumerate(clients):
                last = SLOTS - 1 if i == len(clients) - 1 else (i + 1) * step - 1
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
            for n in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", n.port)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                infos = [self._info(c) for c in clients]
                if all(i.get("cluster_state") == "ok" and i.get("cluster_known_nodes") == "3" for i in infos):
                    if all(self._sees_all_slots(c) for c in clients):
                        return
                time.sleep(0.05)
            raise RuntimeError(f"cluster did not form: {infos}")
        finally:
            for c in clients:
                c.close()

    @staticmethod
    def _info(c: redis.Redis) -> Dict[str, str]:
        text = c.execute_command("CLUSTER", "INFO")
        if isinstance(text, bytes):
            text = text.decode()
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    @staticmethod
    def _sees_all_slots(c: redis.Redis) -> bool:
        covered = sum(int(s[1]) - int(s[0]) + 1 for s in c.execute_command("CLUSTER", "SLOTS"))
        return covered == SLOTS

    @property
    def startup_nodes(self) -> List[tuple]:
        return [("127.0.0.1", n.port) for n in self.nodes]

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def slot_moves(nodes: List[Server]) -> int:
    """Events on these servers that put a paced slot elsewhere than exactly
    one interval after the previous one (INFO): held clients released late
    (``throttle_blocked_late``: past their slot and its allowance, on a
    saturated machine) and permits granted at once (``throttle_permit_immediate``:
    the caller came after the slot was due, so it got the moment it came)."""
    total = 0
    for node in nodes:
        with node.client() as c:
            info = c.info("throttle")
            total += int(info.get("throttle_blocked_late", 0)) + int(info.get("throttle_permit_immediate", 0))
    return total


def assert_next_slot(slot_ms: int, previous_ms: int, interval_ms: int, moved: int) -> None:
    """A paced slot is at least one interval after the previous one: to the
    ms, exactly that when nothing moved a slot meanwhile (``moved``: the
    change of :func:`slot_moves` less the test's own immediate permits).
    Otherwise the slot is later (a late release moves it to the moment of
    release, docs/guarantees.md), or it is an immediate one; then 1 ms may
    be missing, as replies round an immediate slot down and a reserved one
    up."""
    assert moved >= 0, f"{moved}: the test counted more immediate permits of its own than the servers did"
    if moved == 0:
        assert previous_ms + interval_ms <= slot_ms <= previous_ms + interval_ms + 1, (slot_ms, previous_ms, interval_ms)
    else:
        assert slot_ms >= previous_ms + interval_ms - 1, (slot_ms, previous_ms, interval_ms, moved)
