"""Fixtures: a real server (and a 3-master cluster) with the module, a
clean database per test, and feature probes.

Tests that need a module feature still landing on the module's main branch
carry ``@pytest.mark.needs("feature")``: against a module without it they
are skipped with the reason "waits for module feature ..."; with
``REDIS_THROTTLE_REQUIRE_FEATURES=1`` they run (and fail) instead. Without
the module at all nothing is skipped: every test must fail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
import redis
from redis.cluster import RedisCluster

sys.path.insert(0, str(Path(__file__).parent))
import servers  # noqa: E402

from redis_throttle import NEVER_MS, ThrottleClock  # noqa: E402
from redis_throttle._core import pairs  # noqa: E402

pytest_plugins = ["pytester"]

REQUIRE_FEATURES = os.environ.get("REDIS_THROTTLE_REQUIRE_FEATURES") == "1"

FEATURES = {
    "clock": "THROTTLE.CLOCK and the test-clock load option",
    "never53": "PERMIT's 'never expires' as 253402300799999",
    "short-forms": "THROTTLE key [tokens] and THROTTLE.PEEK key [tokens] using the key's knobs",
    "get-last-call": "THROTTLE.GET: burst and window nil for a last call",
    "permit-unbounded": "PERMIT key interval_ms without max_waiting (no bound)",
    "permit-settings": "PERMIT.SET / PERMIT.GET / PERMIT.RESET, PERMIT without an interval, held callers re-spaced",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(feature): needs a module feature that is landing on main")


def _probe(server: servers.Server) -> Dict[str, bool]:
    """Which of FEATURES the loaded module has."""
    c = server.client()
    found = {name: False for name in FEATURES}
    try:
        try:
            c.execute_command("THROTTLE.CLOCK", "GET")
            found["clock"] = True
        except redis.ResponseError:
            pass
        permit = c.execute_command("PERMIT", "probe:permit", 1000, 1)
        found["never53"] = permit[2] == NEVER_MS
        c.execute_command("THROTTLE.SET", "probe:knobs", "RPS", 1, "BURST", 1, "WINDOW", 1)
        try:
            found["short-forms"] = isinstance(c.execute_command("THROTTLE", "probe:knobs"), list)
        except redis.ResponseError:
            pass
        c.execute_command("THROTTLE", "probe:last", 1, 1, 1)
        state = c.execute_command("THROTTLE.GET", "probe:last")
        found["get-last-call"] = pairs(state).get("burst", b"") is None
        for feature, command in (
            ("permit-unbounded", ("PERMIT", "probe:unbounded", 1000)),
            ("permit-settings", ("PERMIT.SET", "probe:settings", "INTERVAL", 1000)),
        ):
            try:
                c.execute_command(*command)
                found[feature] = True
            except redis.ResponseError:
                pass
        c.flushall()
    except redis.ResponseError:
        if not servers.WITHOUT_MODULE:
            raise
    finally:
        c.close()
    return found


@pytest.fixture(scope="session")
def server() -> Iterator[servers.Server]:
    s = servers.start_module_server("--enable-debug-command", "local")
    s.features = _probe(s)  # type: ignore[attr-defined]
    yield s
    s.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[servers.Cluster]:
    c = servers.Cluster()
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _needs(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs")
    if marker is None or servers.WITHOUT_MODULE or REQUIRE_FEATURES:
        return
    features = request.getfixturevalue("server").features
    missing = [f for f in marker.args if not features.get(f)]
    if missing:
        pytest.skip("waits for module feature: " + "; ".join(FEATURES[f] for f in missing))


def _real_clock(client: redis.Redis) -> None:
    try:
        client.execute_command("THROTTLE.CLOCK", "REAL")
    except redis.ResponseError:
        pass


@pytest.fixture
def r(server: servers.Server) -> Iterator[redis.Redis]:
    """A sync client on a flushed server with the real clock."""
    client = server.client(socket_timeout=10)
    client.flushall()
    _real_clock(client)
    yield client
    _real_clock(client)
    client.close()


@pytest.fixture
def rc(cluster: servers.Cluster) -> Iterator[RedisCluster]:
    """A sync cluster client on a flushed cluster with the real clock."""
    from redis.cluster import ClusterNode

    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes], socket_timeout=10
    )
    for node in cluster.nodes:
        with node.client() as c:
            c.flushall()
            _real_clock(c)
    yield client
    client.close()


@pytest.fixture
def clock(r: redis.Redis, server: servers.Server) -> Iterator[ThrottleClock]:
    """The module's test clock, frozen at the server's time, back to real after."""
    if not servers.WITHOUT_MODULE and not REQUIRE_FEATURES and not server.features["clock"]:
        pytest.skip("waits for module feature: " + FEATURES["clock"])
    with ThrottleClock(r) as c:
        yield c


@pytest.fixture
def throttle_redis(r: redis.Redis) -> redis.Redis:
    """Points the package's pytest plugin (throttle_clock) at the test server."""
    return r
