"""Client matrix, Python side: the module's commands through redis-py.

Drives THROTTLE, THROTTLE.PEEK, THROTTLE.GET, PERMIT ... BLOCK and
THROTTLE.ALL through redis-py's sync and asyncio clients, over RESP2 and
RESP3, standalone and through RedisCluster (sync and asyncio), and checks
that every reply arrives exactly: each integer below 9e15 in magnitude, so
that every client, JavaScript included, reads it without loss (ioredis and
node-redis misread odd integers within 48 of 2^53).

    REDIS_URL=redis://127.0.0.1:6379 CLUSTER_NODES=127.0.0.1:30001,127.0.0.1:30002 \
        python clients/matrix/matrix.py

clients/matrix/run.sh starts the servers and runs this with the redis-py
pinned in clients/matrix/requirements.txt. The last line is
"python: N passed, M failed"; the exit status is 1 when a case failed.
"""

import asyncio
import os
import sys
import time
import traceback

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster

# Every integer the module replies is below 9e15 in magnitude: under 2^53 - 48,
# the largest integer ioredis and node-redis decode exactly (matrix.mjs).
BOUND = 9 * 10**15
# PERMIT's "never expires" for an immediate permit: 9999-12-31T23:59:59.999Z.
NEVER = 253402300799999
BLOCK_TIMEOUT_S = 10  # client timeout; every wait below is < 1 s


def check_ints(reply, path="reply"):
    """Every integer in the reply is one a JavaScript number holds exactly."""
    if isinstance(reply, bool):
        return
    if isinstance(reply, int):
        assert -BOUND < reply < BOUND, (
            f"{path} = {reply} is not below 9e15 in magnitude: JavaScript clients may read it inexactly"
        )
    elif isinstance(reply, (list, tuple)):
        for i, v in enumerate(reply):
            check_ints(v, f"{path}[{i}]")
    elif isinstance(reply, dict):
        for k, v in reply.items():
            check_ints(k, f"{path} key")
            check_ints(v, f"{path}[{k!r}]")


def as_map(reply):
    """THROTTLE.GET: a dict in RESP3, a flat field/value list in RESP2."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list) and len(reply) % 2 == 0, f"GET reply {reply!r}"
    return dict(zip(reply[0::2], reply[1::2]))


class Steps:
    """The commands of one scenario, written once for sync and async clients:
    each step sends a command and checks its reply."""

    def __init__(self, ns, protocol):
        self.ns = ns
        self.protocol = protocol

    def commands(self):
        """(name, command, check) in order; check(reply) raises on a mismatch."""
        ns = self.ns
        bucket, permit = f"{ns}:bucket", f"{ns}:permit"
        sec, minute = f"{{{ns}}}:sec", f"{{{ns}}}:min"
        out = []

        def step(name, cmd, check):
            out.append((name, cmd, check))

        def throttle_first(r):
            assert r == [1, 79, 0, 200, 80], r

        step("THROTTLE", ["THROTTLE", bucket, 5, 2, 8], throttle_first)

        def peek(r):
            # What THROTTLE would answer now: one more token taken from ~79.
            assert r[0] == 1 and r[1] in (78, 79) and r[2] == 0 and r[4] == 80, r

        step("THROTTLE.PEEK", ["THROTTLE.PEEK", bucket, 5, 2, 8], peek)

        def get_last_call(r):
            if self.protocol == 3:
                assert isinstance(r, dict), f"RESP3 THROTTLE.GET is a map, got {r!r}"
            m = as_map(r)
            assert m["limit"] == 80 and m["rps"] == "5", m
            assert m["tokens"] in (79, 80), m
            assert m["source"] == "last-call", m
            # Only rps and limit are kept for a last call.
            assert m["burst"] is None and m["window"] is None, m
            assert m["knobs_ttl_ms"] == -1, m
            assert 0 <= m["reset_after_ms"] <= 200, m

        step("THROTTLE.GET (last call)", ["THROTTLE.GET", bucket], get_last_call)

        def set_ok(r):
            assert r in ("OK", True), r

        step("THROTTLE.SET", ["THROTTLE.SET", bucket, "RPS", 10, "BURST", 1, "WINDOW", 8], set_ok)

        def get_knobs(r):
            m = as_map(r)
            assert m["source"] == "knobs", m
            assert (m["rps"], m["burst"], m["window"], m["limit"]) == ("10", "1", "8", 80), m
            assert 0 < m["knobs_ttl_ms"] <= 604800 * 1000, m

        step("THROTTLE.GET (knobs)", ["THROTTLE.GET", bucket], get_knobs)
        step("THROTTLE.GET (missing key)", ["THROTTLE.GET", f"{ns}:none"], lambda r: _is(r, None))

        state = {}

        def permit_now(r):
            assert isinstance(r, list) and len(r) == 3, r
            state["first"] = r[1]
            assert r[0] == 0 and r[2] == NEVER, f"immediate permit {r}: expected [0, now_ms, {NEVER}]"

        # a minute's interval: the key lives a minute, however slow the machine
        step("PERMIT (immediate)", ["PERMIT", permit, 60000, 5], permit_now)
        step("PERMIT (queue full: nil)", ["PERMIT", permit, 60000, 0], lambda r: _is(r, None))

        def permit_blocked(r):
            assert isinstance(r, list) and len(r) == 3 and r[0] == 0, r
            assert r[1] >= state["first"] + 300, (r, state)
            # valid_at + GRACE; or, when the machine took over 300 ms to get
            # here, an immediate permit
            assert r[2] in (r[1] + 5000, NEVER), r

        # GRACE: a loaded machine may release the client a little late,
        # and a permit released after it expired answers nil.
        step("PERMIT ... BLOCK", ["PERMIT", permit, 300, 5, "GRACE", 5000, "BLOCK", 5000], permit_blocked)

        # sec: 5 tokens, one back every 20 s (rps 0.05 over a 100 s window),
        # so the denied call stays denied however long the machine takes
        # between the two steps (at rps 5 it was 200 ms)
        step(
            "THROTTLE.ALL (allowed)",
            ["THROTTLE.ALL", 1, sec, "0.05", 1, 100, minute, 1, 100, 1],
            lambda r: _eq(r, [1, 0, 0, [4, 99]]),
        )

        def all_denied(r):
            assert r[0] == 0 and r[1] == 1 and r[2] > 0 and r[3] == [4, 99], r

        step("THROTTLE.ALL (denied)", ["THROTTLE.ALL", 5, sec, "0.05", 1, 100, minute, 1, 100, 1], all_denied)
        return out


def _is(r, want):
    assert r is want, f"{r!r} is not {want!r}"


def _eq(r, want):
    assert r == want, f"{r!r} != {want!r}"


def verify(name, reply, check, errors):
    """Checks one reply; a mismatch is recorded and the scenario goes on,
    so that one run shows every step that fails."""
    for f in (check, check_ints):
        try:
            f(reply)
        except (AssertionError, KeyError, TypeError, IndexError) as e:
            errors.append(f"{name}: {type(e).__name__} {e}")


def run_sync(client, ns, protocol):
    errors = []
    for name, cmd, check in Steps(ns, protocol).commands():
        verify(name, client.execute_command(*cmd), check, errors)
    assert not errors, "\n    ".join([""] + errors)


async def run_async(client, ns, protocol):
    errors = []
    for name, cmd, check in Steps(ns, protocol).commands():
        verify(name, await client.execute_command(*cmd), check, errors)
    assert not errors, "\n    ".join([""] + errors)


def moved_total(nodes):
    """MOVED redirects the cluster's nodes have answered so far."""
    total = 0
    for host, port in nodes:
        info = redis.Redis(host=host, port=port, decode_responses=True).info("errorstats")
        total += info.get("errorstat_MOVED", {}).get("count", 0)
    return total


def spread_keys(ns):
    """Keys on every master (slots differ), for routing checks."""
    return [f"{ns}:spread:{i}" for i in range(12)]


def both(*parts):
    """Runs every part, then fails with all their assertion messages."""
    errors = []
    for part in parts:
        try:
            part()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n    ".join(errors)


def no_moved_since(nodes, before):
    moved = moved_total(nodes) - before
    assert moved == 0, f"{moved} MOVED redirects: the client did not route by key"


def cluster_routing_sync(rc, ns):
    for k in spread_keys(ns):
        reply = rc.execute_command("THROTTLE", k, 1, 1, 1)
        assert reply == [1, 0, 0, 1000, 1], (k, reply)
        reply = rc.execute_command("THROTTLE.PEEK", k, 1, 1, 1)
        assert reply[0] == 0, (k, reply)
    cross = None
    try:
        rc.execute_command("THROTTLE.ALL", 1, f"{ns}:a", 1, 1, 1, f"{ns}:b", 1, 1, 1)
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        cross = e
    assert cross is not None, "THROTTLE.ALL across slots was not refused"


async def cluster_routing_async(rc, ns):
    for k in spread_keys(ns):
        reply = await rc.execute_command("THROTTLE", k, 1, 1, 1)
        assert reply == [1, 0, 0, 1000, 1], (k, reply)
    cross = None
    try:
        await rc.execute_command("THROTTLE.ALL", 1, f"{ns}:a", 1, 1, 1, f"{ns}:b", 1, 1, 1)
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        cross = e
    assert cross is not None, "THROTTLE.ALL across slots was not refused"


def short_timeout(url, ns):
    """A client timeout shorter than the wait: the client gives up, the slot
    it reserved stays taken (a gap in the stream), and the next caller
    queues behind it. Blocking calls need a timeout longer than the wait."""
    r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=0.1)
    key = f"{ns}:short"
    first = r.execute_command("PERMIT", key, 500, 5)
    assert first[0] == 0, first
    try:
        r.execute_command("PERMIT", key, 500, 5, "BLOCK", 5000)
    except redis.TimeoutError:
        pass
    else:
        raise AssertionError("a 0.1 s socket timeout did not interrupt a 0.5 s wait")
    r2 = redis.Redis.from_url(url, decode_responses=True, socket_timeout=BLOCK_TIMEOUT_S)
    third = r2.execute_command("PERMIT", key, 500, 5)
    # The abandoned slot (first + 500) is not handed out again.
    assert third[0] > 0 and third[1] >= first[1] + 1000, (first, third)


def main():
    url = os.environ["REDIS_URL"]
    nodes = []
    for a in filter(None, os.environ.get("CLUSTER_NODES", "").split(",")):
        host, port = a.rsplit(":", 1)
        nodes.append((host, int(port)))
    run_id = os.environ.get("MATRIX_RUN", str(int(time.time() * 1000)))
    cases = []

    for protocol in (2, 3):
        ns = f"py:{run_id}:sync{protocol}"

        def sync_case(protocol=protocol, ns=ns):
            r = redis.Redis.from_url(url, protocol=protocol, decode_responses=True, socket_timeout=BLOCK_TIMEOUT_S)
            run_sync(r, ns, protocol)

        cases.append((f"redis-py {redis.__version__} sync RESP{protocol}", sync_case))

        ns = f"py:{run_id}:async{protocol}"

        def async_case(protocol=protocol, ns=ns):
            async def go():
                r = redis.asyncio.Redis.from_url(
                    url, protocol=protocol, decode_responses=True, socket_timeout=BLOCK_TIMEOUT_S
                )
                try:
                    await run_async(r, ns, protocol)
                finally:
                    await r.aclose()

            asyncio.run(go())

        cases.append((f"redis-py {redis.__version__} asyncio RESP{protocol}", async_case))

    cases.append(("redis-py sync: a socket timeout shorter than the BLOCK wait", lambda: short_timeout(url, f"py:{run_id}")))

    if nodes:
        startup = [ClusterNode(h, p) for h, p in nodes]
        for protocol in (2, 3):
            ns = f"pyc:{run_id}:sync{protocol}"

            def cluster_case(protocol=protocol, ns=ns):
                rc = RedisCluster(
                    startup_nodes=startup, protocol=protocol, decode_responses=True, socket_timeout=BLOCK_TIMEOUT_S
                )
                try:
                    before = moved_total(nodes)
                    both(
                        lambda: run_sync(rc, ns, protocol),
                        lambda: cluster_routing_sync(rc, ns),
                        lambda: no_moved_since(nodes, before),
                    )
                finally:
                    rc.close()

            cases.append((f"redis-py {redis.__version__} RedisCluster RESP{protocol}", cluster_case))

            ns = f"pyc:{run_id}:async{protocol}"

            def async_cluster_case(protocol=protocol, ns=ns):
                async def go():
                    rc = AsyncRedisCluster(
                        startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in nodes],
                        protocol=protocol,
                        decode_responses=True,
                        socket_timeout=BLOCK_TIMEOUT_S,
                    )
                    try:
                        # Without it the first command goes out before the
                        # slot map is loaded and costs a MOVED redirect.
                        await rc.initialize()
                        before = moved_total(nodes)
                        errors = []
                        for part in (run_async(rc, ns, protocol), cluster_routing_async(rc, ns)):
                            try:
                                await part
                            except AssertionError as e:
                                errors.append(str(e))
                        try:
                            no_moved_since(nodes, before)
                        except AssertionError as e:
                            errors.append(str(e))
                        assert not errors, "\n    ".join(errors)
                    finally:
                        await rc.aclose()

                asyncio.run(go())

            cases.append((f"redis-py {redis.__version__} asyncio RedisCluster RESP{protocol}", async_cluster_case))

    passed = failed = 0
    for name, case in cases:
        t0 = time.monotonic()
        try:
            case()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            print(f"FAIL {name}: {detail}")
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.2f} s)")
    print(f"python: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
