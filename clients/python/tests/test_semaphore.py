"""Semaphore and AsyncSemaphore: concurrency limits on LEASE, LEASE.RELEASE,
LEASE.RENEW and LEASE.PEEK, against real servers (standalone and cluster).

Concurrency is counted by the bodies themselves (under a lock), so "never
above the limit" is checked where it matters. Times are asserted only as
generous bounds: a lease's ttl here is at least 0.6 s with renewals every
ttl/3, so a renewal must be late by 0.4 s or more before a test that needs
the lease kept could fail.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from redis_throttle import (
    AsyncLease,
    AsyncSemaphore,
    Lease,
    LeaseLost,
    LeaseRefused,
    LeaseState,
    Limiter,
    Semaphore,
)

RENEWER = "redis-throttle lease"


def server_ms(r) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def wait_until(what, predicate, timeout=10.0):
    """Polls ``predicate`` until it holds (generous bound: the machine may be busy)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def renewers():
    return [t for t in threading.enumerate() if t.name.startswith(RENEWER)]


def lease_calls(r) -> dict:
    stats = r.info("commandstats")
    return {k: v["calls"] for k, v in stats.items() if k.startswith("cmdstat_lease")}


# -- the plain calls -----------------------------------------------------------


def test_acquire_release_renew_and_peek(r):
    sem = Semaphore(r, "api", limit=2, ttl=60)
    assert sem.ttl == 60 and repr(sem) == "Semaphore('api', limit=2, ttl_ms=60000)"
    before = server_ms(r)
    a, b = sem.acquire(), sem.acquire()
    after = server_ms(r)
    assert isinstance(a, Lease) and isinstance(b, Lease)
    assert sem.acquire() is None  # both places taken; timeout=0 does not wait
    assert (a.in_use, a.limit, b.in_use, b.limit) == (1, 2, 2, 2)
    assert b.id > a.id >= before * 1000  # fencing ids: increasing, at least the issue time in µs
    assert before + 60_000 <= a.expires_at_ms <= after + 60_000
    assert a.expires_at.timestamp() * 1000 == pytest.approx(a.expires_at_ms, abs=1)
    state = sem.peek()
    assert isinstance(state, LeaseState)
    assert (state.in_use, state.limit, state.waiting, state.available) == (2, 2, 0, 0)
    assert state.next_expiry_ms == a.expires_at_ms and state.next_expiry == a.expires_at
    time.sleep(0.002)
    renewed = b.renew(timedelta(seconds=120))
    assert renewed == b.expires_at_ms and renewed >= server_ms(r) + 119_000
    assert b.renewals == 1 and b.ttl_ms == 120_000
    assert a.release() is True and a.released and not a.lost
    assert a.release() is False  # released already: nothing sent
    with pytest.raises(LeaseLost, match="its holder released it"):
        a.renew()
    c = sem.acquire()
    assert c is not None and c.id > b.id and c.in_use == 2
    assert b.release() and c.release()
    assert sem.peek() == LeaseState(0, 0, 0, -1)  # the key went with its last lease
    assert r.exists("api") == 0


def test_cost_takes_several_places(r):
    heavy = Semaphore(r, "pool", limit=10, ttl=60, cost=7)
    light = Semaphore(r, "pool", limit=10, ttl=60, cost=3)
    assert "cost=7" in repr(heavy)
    first = heavy.acquire()
    assert first.in_use == 7
    assert heavy.acquire() is None
    assert light.acquire().in_use == 10
    assert Semaphore(r, "pool", limit=10, ttl=60).acquire() is None
    assert first.release()
    assert heavy.peek().in_use == 3


def test_a_lease_released_elsewhere_or_expired_is_lost(r):
    sem = Semaphore(r, "lost", limit=1, ttl=60)
    lease = sem.acquire()
    assert r.execute_command("LEASE.RELEASE", "lost", lease.id) == 1  # another client
    assert not lease.lost  # nobody told it yet
    with pytest.raises(LeaseLost) as e:
        lease.renew()
    assert lease.lost and e.value.lease_id == lease.id and e.value.key == "lost"
    assert "another client released it" in str(e.value)
    with pytest.raises(LeaseLost):
        lease.check()
    assert lease.release() is False
    calls = lease_calls(r)
    with pytest.raises(LeaseLost):
        lease.renew()  # known lost: raised without asking the server again
    assert lease_calls(r) == calls

    short = Semaphore(r, "short", limit=1, ttl=0.6).acquire()
    assert not short.lost
    wait_until("the lease to expire on the server", lambda: Semaphore(r, "short", 1).peek().in_use == 0)
    # its ttl passed since the last confirmed renewal (the reply + ttl, locally)
    wait_until("the lease to count as lost", lambda: short.lost)
    with pytest.raises(LeaseLost, match="ttl passed"):
        short.check()
    with pytest.raises(LeaseLost, match="no longer has it"):
        short.renew()  # sent: the server says it is gone
    assert short.release() is False


# -- never above the limit, FIFO, expiry ----------------------------------------


def test_never_above_the_limit_with_many_threads(r):
    limit = 3
    sem = Semaphore(r, "partner", limit=limit, ttl=2)
    lock = threading.Lock()
    inside, peak, done, errors = [0], [0], [0], []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(4):
                with sem.hold(timeout=60):
                    with lock:
                        inside[0] += 1
                        peak[0] = max(peak[0], inside[0])
                    time.sleep(rng.uniform(0.05, 0.15))
                    with lock:
                        inside[0] -= 1
                        done[0] += 1
        except Exception as e:  # asserted in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert done[0] == 48
    assert peak[0] <= limit
    assert peak[0] == limit  # the limit was reached: it limits, it does not serialise
    assert sem.peek().in_use == 0 and renewers() == []


def test_limit_holders_at_once_and_not_one_more(r):
    limit = 4
    sem = Semaphore(r, "exact", limit=limit, ttl=5)
    barrier = threading.Barrier(limit + 1, timeout=30)  # the holders and the main thread
    out = threading.Event()
    errors = []

    def holder():
        try:
            with sem.hold(timeout=0):
                barrier.wait()  # all `limit` inside at once
                out.wait(30)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=holder) for _ in range(limit)]
    for t in threads:
        t.start()
    barrier.wait()
    try:
        assert sem.acquire() is None
        with pytest.raises(LeaseRefused) as e:
            with sem.hold(timeout=0):
                pass
        assert e.value.key == "exact" and e.value.timeout == 0 and "now" in str(e.value)
        assert sem.peek().in_use == limit
    finally:
        out.set()
        for t in threads:
            t.join(30)
    assert errors == []


def test_waiters_are_admitted_first_come_first_served(r):
    sem = Semaphore(r, "fifo", limit=1, ttl=5)
    # 30 s: it stands while the waiters line up, however slow the machine;
    # their turns by expiry (30, 35, ... 50 s) fall within their 60 s.
    first = Semaphore(r, "fifo", limit=1, ttl=30).acquire()
    order, ids, errors = [], [], []

    def waiter(i):
        try:
            with sem.hold(timeout=60) as lease:
                order.append(i)
                ids.append(lease.id)
                time.sleep(0.02)
        except Exception as e:
            errors.append(e)

    threads = []
    for i in range(5):  # each held on the server before the next one asks
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        wait_until(f"waiter {i} to be held", lambda: sem.peek().waiting == i + 1)
    assert order == []  # nobody got in while the first lease stands
    assert first.release()
    for t in threads:
        t.join(60)
    assert errors == []
    assert order == [0, 1, 2, 3, 4]
    assert ids == sorted(ids) and first.id < ids[0]


HOLDER = """
import sys, time, redis
from redis_throttle import Semaphore
r = redis.Redis(port=int(sys.argv[1]))
with Semaphore(r, "crash", limit=1, ttl=2).hold(timeout=0) as lease:
    print("held", lease.id, flush=True)
    time.sleep(600)
"""


def test_a_holder_that_dies_frees_its_place_within_ttl(r, server):
    sem = Semaphore(r, "crash", limit=1, ttl=2)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(server.port)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "held", line
        held_id = int(line[1])
        # Renewed in the background by the other process: still held past its ttl.
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            assert sem.acquire() is None
            time.sleep(0.1)
        assert r.execute_command("LEASE.RENEW", "crash", held_id, 1000) is not None
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding it: no release
        proc.wait(10)
        proc.stdout.close()
    lease = sem.acquire(timeout=30)  # queued: admitted when the dead holder's lease expires
    assert lease is not None and lease.id > held_id
    assert r.execute_command("LEASE.RENEW", "crash", held_id, 1000) is None  # the dead one's is gone
    assert lease.release()


def test_expiry_admits_a_waiter_and_the_unrenewed_lease_is_lost(r):
    sem = Semaphore(r, "exp", limit=1, ttl=0.8)
    before = server_ms(r)
    stale = sem.acquire()  # never renewed
    waiter = sem.acquire(timeout=20)
    assert waiter is not None
    assert server_ms(r) >= before + 800 - 1  # not before the stale lease's ttl
    assert waiter.id > stale.id
    with pytest.raises(LeaseLost):
        stale.renew()
    assert waiter.release()


# -- background renewal and lost leases in hold() ------------------------------


def test_background_renewal_keeps_the_lease_past_several_ttl(r):
    sem = Semaphore(r, "long", limit=1, ttl=1.2)
    with sem.hold(timeout=0) as lease:
        first_expiry = lease.expires_at_ms
        start = server_ms(r)
        assert len(renewers()) == 1
        while server_ms(r) < start + 4000:  # more than three ttls
            assert sem.acquire() is None
            lease.check()
            time.sleep(0.2)
        assert lease.renewals >= 3 and lease.expires_at_ms > first_expiry + 2000
        assert not lease.lost
    assert lease.released and not lease.lost
    assert renewers() == []
    assert sem.peek().in_use == 0
    assert sem.acquire() is not None


def test_hold_raises_lease_lost_when_released_behind_its_back(r, server):
    sem = Semaphore(r, "behind", limit=1, ttl=0.6)
    other = server.client()
    ran_on = []
    with pytest.raises(LeaseLost) as e:
        with sem.hold(timeout=0) as lease:
            assert other.execute_command("LEASE.RELEASE", "behind", lease.id) == 1
            intruder = sem.acquire()  # the place is free for others now
            assert intruder is not None
            wait_until("a renewal to find the lease gone", lambda: lease.lost)
            with pytest.raises(LeaseLost):
                lease.check()
            ran_on.append("end of body")
    other.close()
    assert ran_on == ["end of body"]
    assert e.value.lease_id == lease.id and "another client released it" in e.value.reason
    assert renewers() == []
    assert intruder.release()


@pytest.mark.needs("clock")
def test_hold_raises_lease_lost_when_it_expired(r, clock):
    sem = Semaphore(r, "expired", limit=1, ttl=0.9)
    with pytest.raises(LeaseLost) as e:
        with sem.hold(timeout=0) as lease:
            clock.advance(1)  # the module's clock passes the expiry before a renewal
            wait_until("a renewal to find the lease expired", lambda: lease.lost)
    assert e.value.lease_id == lease.id
    assert renewers() == []
    assert sem.acquire() is not None  # the place was free


def test_a_lost_lease_found_only_at_release_raises_at_exit(r):
    sem = Semaphore(r, "atexit", limit=1, ttl=60)  # no renewal would come in time to see it
    with pytest.raises(LeaseLost):
        with sem.hold(timeout=0) as lease:
            r.execute_command("LEASE.RELEASE", "atexit", lease.id)
    assert lease.lost and lease.released


def test_the_renewer_stops_at_exit_and_never_renews_after_the_release(r, server):
    key = "order"
    sem = Semaphore(r, key, limit=2, ttl=0.6)  # renewals every 200 ms
    log = []
    ready = threading.Event()

    def monitor():
        with server.client().monitor() as m:
            ready.set()
            for cmd in m.listen():
                log.append(cmd["command"])
                if cmd["command"] == "ECHO monitor-done":
                    return

    watcher = threading.Thread(target=monitor)
    watcher.start()
    assert ready.wait(10)
    r.echo("monitor-start")
    rng = random.Random(7)
    lost = []

    def one(i):
        try:
            with sem.hold(timeout=30) as lease:
                time.sleep(rng.uniform(0.25, 0.65))
                if i % 3 == 0:
                    lease.release()  # the body's own release: the renewer must stop
                    time.sleep(0.3)
        except LeaseLost as e:  # a very late renewal on a loaded machine: not what this test is about
            lost.append(str(e.lease_id))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with pytest.raises(ValueError):
        with sem.hold(timeout=0):
            raise ValueError("the body's exception wins")
    assert renewers() == []
    calls = lease_calls(r)
    time.sleep(0.7)  # more than three renewal periods
    assert lease_calls(r) == calls  # nothing renews any more
    r.echo("monitor-done")
    watcher.join(10)
    assert log[0] == "ECHO monitor-start" and log[-1] == "ECHO monitor-done"
    leases = {}
    for n, line in enumerate(log):
        parts = [p.strip('"') for p in line.split()]
        if parts[0] in ("LEASE.RENEW", "LEASE.RELEASE"):
            leases.setdefault(parts[2], []).append((n, parts[0]))
    assert len(leases) == 13, log  # 12 holds and the one whose body raised
    renewed = 0
    for lease_id, calls in leases.items():
        kinds = [kind for _, kind in calls]
        # one release, nothing after it (a lease a renewal found gone is not released)
        releases = 0 if lease_id in lost else 1
        assert kinds.count("LEASE.RELEASE") == releases, (lease_id, kinds)
        assert "LEASE.RELEASE" not in kinds[:-1], (lease_id, kinds)
        renewed += kinds.count("LEASE.RENEW")
    assert renewed >= 4  # bodies of 250 ms and more, renewals every 200 ms: about 16 expected
    assert len(lost) <= 2 and sem.peek().in_use == 0


def test_hold_releases_when_the_body_raises(r):
    sem = Semaphore(r, "raises", limit=1, ttl=5)
    with pytest.raises(KeyError):
        with sem.hold() as lease:
            raise KeyError("boom")
    assert lease.released and renewers() == []
    assert sem.peek().in_use == 0


# -- decorator -----------------------------------------------------------------


def test_limited_decorator(r):
    sem = Semaphore(r, "deco", limit=1, ttl=5)
    seen = []

    @sem.limited(timeout=0)
    def call_partner(x):
        """Calls the partner."""
        seen.append(sem.peek().in_use)
        return x * 2

    assert call_partner(21) == 42 and seen == [1]
    assert call_partner.__name__ == "call_partner" and call_partner.__doc__ == "Calls the partner."
    taken = sem.acquire()
    with pytest.raises(LeaseRefused):
        call_partner(1)
    assert seen == [1]  # refused before the body
    taken.release()
    assert call_partner(2) == 4
    with pytest.raises(TypeError, match="AsyncSemaphore"):

        @sem.limited()
        async def not_for_sync():
            pass


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((0,), {}, ValueError, "limit must be an integer >= 1 and <= 1000000000000000"),
        ((10**15 + 1,), {}, ValueError, "limit must be an integer >= 1 and <= 1000000000000000"),
        ((2.0,), {}, TypeError, "limit must be an int"),
        ((True,), {}, TypeError, "limit must be an int"),
        ((2,), dict(ttl=0), ValueError, "ttl must be > 0 and <= 31622400 seconds (366 days)"),
        ((2,), dict(ttl=-1), ValueError, "ttl must be > 0"),
        ((2,), dict(ttl=31_622_401), ValueError, "ttl must be > 0"),
        ((2,), dict(ttl=float("nan")), ValueError, "ttl must be a finite number"),
        ((2,), dict(ttl="5"), TypeError, "ttl must be a number of seconds"),
        ((2,), dict(cost=0), ValueError, "cost must be an integer >= 1"),
        ((2,), dict(cost=3), ValueError, "cost 3 is above limit 2"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(r, args, kwargs, error, message):
    r.config_resetstat()
    with pytest.raises(error) as e:
        Semaphore(r, "bad", *args, **kwargs)
    assert str(e.value).startswith(message)
    assert lease_calls(r) == {}
    assert Semaphore(r, "bad", 2).acquire() is not None  # the server takes a good one


def test_bad_timeouts_and_ttls_are_refused_before_anything_is_sent(r):
    sem = Semaphore(r, "bad", limit=1, ttl=1)
    lease = sem.acquire()
    r.config_resetstat()
    for timeout in (-1, -0.001, 31_622_401, float("inf")):
        with pytest.raises(ValueError, match="timeout must be"):
            sem.acquire(timeout=timeout)
        with pytest.raises(ValueError, match="timeout must be"):
            with sem.hold(timeout=timeout):
                pass
    with pytest.raises(ValueError, match="ttl must be > 0"):
        lease.renew(ttl=0)
    with pytest.raises(TypeError, match="timeout must be a number"):
        sem.acquire(timeout="1")
    assert lease_calls(r) == {}
    assert lease.renew() > 0  # the lease is fine and kept its ttl
    assert lease.ttl_ms == 1000


def test_wrong_kind_of_client_and_wrongtype(r, server):
    async_client = redis.asyncio.Redis(port=server.port)
    with pytest.raises(TypeError, match="AsyncSemaphore"):
        Semaphore(async_client, "k", 1)
    with pytest.raises(TypeError, match="Semaphore"):
        AsyncSemaphore(r, "k", 1)
    Limiter(r, "bucket", rps=1).allow()
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE") as e:
        Semaphore(r, "bucket", 1).acquire()
    assert not isinstance(e.value, ValueError)
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        Semaphore(r, "bucket", 1).peek()


def test_a_renewal_that_finds_another_type_loses_the_lease(r):
    sem = Semaphore(r, "swapped", limit=1, ttl=0.6)
    with pytest.raises(LeaseLost, match="WRONGTYPE"):
        with sem.hold(timeout=0) as lease:
            r.set("swapped", "a string now")
            wait_until("a renewal to meet WRONGTYPE", lambda: lease.lost)
    assert renewers() == []


def test_a_wait_longer_than_the_socket_timeout_goes_on_its_own_connection(server):
    r = server.client(socket_timeout=1)
    r.flushall()
    sem = Semaphore(r, "slow", limit=1, ttl=2.5)
    first = sem.acquire()
    lease = sem.acquire(timeout=10)  # held about 2.5 s, past the client's 1 s
    assert lease is not None and lease.id > first.id
    with pytest.raises(LeaseLost):
        first.renew()
    r.close()


# -- asyncio -------------------------------------------------------------------


def run(server, body):
    async def main():
        a = redis.asyncio.Redis(port=server.port, socket_timeout=10)
        try:
            await a.flushall()
            return await body(a)
        finally:
            await a.aclose()

    return asyncio.run(main())


def test_async_acquire_release_renew_peek(server):
    async def body(a):
        sem = AsyncSemaphore(a, "a", limit=1, ttl=30)
        lease = await sem.acquire()
        assert isinstance(lease, AsyncLease) and lease.in_use == 1
        assert await sem.acquire() is None
        assert (await sem.peek()).in_use == 1
        assert await lease.renew(60) >= lease.expires_at_ms - 1 and lease.renewals == 1
        assert await a.execute_command("LEASE.RELEASE", "a", lease.id) == 1
        with pytest.raises(LeaseLost):
            await lease.renew()
        assert await lease.release() is False and lease.lost
        again = await sem.acquire()
        assert again.id > lease.id and await again.release() is True

    run(server, body)


def test_async_never_above_the_limit_and_renewal(server):
    async def body(a):
        limit = 3
        sem = AsyncSemaphore(a, "apartner", limit=limit, ttl=0.9)
        inside, peak = [0], [0]

        async def worker(seed):
            rng = random.Random(seed)
            for _ in range(3):
                async with sem.hold(timeout=60) as lease:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                    await asyncio.sleep(rng.uniform(0.05, 0.15))
                    lease.check()
                    inside[0] -= 1

        await asyncio.gather(*(worker(i) for i in range(10)))
        assert peak[0] <= limit
        assert peak[0] == limit
        one = AsyncSemaphore(a, "along", limit=1, ttl=0.9)
        async with one.hold(timeout=0) as lease:  # past three ttls, renewed by a task
            start = time.monotonic()
            while time.monotonic() - start < 3.0:
                assert await one.acquire() is None
                await asyncio.sleep(0.1)
            assert lease.renewals >= 3 and not lease.lost
        assert (await one.peek()).in_use == 0 and (await sem.peek()).in_use == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no renewer left

    run(server, body)


def test_async_lease_lost_when_the_body_blocks_the_loop(server):
    async def body(a):
        sem = AsyncSemaphore(a, "blocked", limit=1, ttl=0.6)
        with pytest.raises(LeaseLost) as e:
            async with sem.hold(timeout=0) as lease:
                time.sleep(1.5)  # blocks the event loop: the renewer cannot run
                assert lease.lost  # its ttl passed without a renewal
        assert "no longer has it" in e.value.reason  # the release found it gone
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(server, body)


def test_async_lease_lost_when_released_behind_its_back_and_body_errors(server):
    async def body(a):
        sem = AsyncSemaphore(a, "abehind", limit=1, ttl=0.6)
        with pytest.raises(LeaseLost):
            async with sem.hold() as lease:
                await a.execute_command("LEASE.RELEASE", "abehind", lease.id)
                for _ in range(500):
                    if lease.lost:
                        break
                    await asyncio.sleep(0.02)
                with pytest.raises(LeaseLost):
                    lease.check()
        with pytest.raises(KeyError):
            async with sem.hold() as lease:
                raise KeyError("boom")
        assert lease.released and (await sem.peek()).in_use == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(server, body)


def test_async_fifo_and_decorator(server):
    async def body(a):
        sem = AsyncSemaphore(a, "afifo", limit=1, ttl=5)
        first = await sem.acquire()
        order = []

        @sem.limited(timeout=60)
        async def call_partner(i):
            order.append(i)
            await asyncio.sleep(0.01)
            return i

        tasks = []
        for i in range(4):
            tasks.append(asyncio.ensure_future(call_partner(i)))
            for _ in range(1000):
                if (await sem.peek()).waiting == i + 1:
                    break
                await asyncio.sleep(0.01)
            assert (await sem.peek()).waiting == i + 1
        await first.release()
        assert await asyncio.gather(*tasks) == [0, 1, 2, 3]
        assert order == [0, 1, 2, 3]
        await sem.acquire()

        @sem.limited(timeout=0)
        async def refused():
            order.append("ran")

        with pytest.raises(LeaseRefused):
            await refused()
        assert "ran" not in order
        with pytest.raises(TypeError, match="use a Semaphore"):

            @sem.limited()
            def not_async():
                pass

    run(server, body)


# -- cluster -------------------------------------------------------------------


def test_semaphores_on_every_master(rc):
    keys = [f"sem:{i}" for i in range(9)]
    assert len({rc.get_node_from_key(k).name for k in keys}) == 3  # spread over the three masters
    held = {}
    for k in keys:
        sem = Semaphore(rc, k, limit=2, ttl=30)
        held[k] = [sem.acquire(), sem.acquire()]
        assert [x.in_use for x in held[k]] == [1, 2]
        assert sem.acquire() is None and sem.peek().in_use == 2
    for node in rc.get_primaries():
        assert rc.execute_command("DBSIZE", target_nodes=node) == sum(
            1 for k in keys if rc.get_node_from_key(k).name == node.name
        )
    for k in keys:
        assert all(x.release() for x in held[k])


def one_key_per_master(rc, prefix):
    keys = {}
    for i in range(100):
        keys.setdefault(rc.get_node_from_key(f"{prefix}{i}").name, f"{prefix}{i}")
    assert len(keys) == 3
    return list(keys.values())


def test_hold_and_wait_on_a_cluster(rc):
    keys = one_key_per_master(rc, "c:")
    for k in keys:
        sem = Semaphore(rc, k, limit=1, ttl=0.6)
        stale = sem.acquire()
        with sem.hold(timeout=None) as lease:  # BLOCK 0: on a connection of its own
            assert lease.id > stale.id
            time.sleep(0.5)  # a renewal or two on the key's master
            lease.check()
        assert sem.peek().in_use == 0
    assert renewers() == []


def test_async_cluster(rc, cluster):
    async def main():
        a = AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(h, p) for h, p in cluster.startup_nodes], socket_timeout=10
        )
        try:
            keys = one_key_per_master(rc, "ac:")
            for k in keys:
                sem = AsyncSemaphore(a, k, limit=1, ttl=0.6)
                stale = await sem.acquire()
                async with sem.hold(timeout=30) as lease:  # past the 10 s socket timeout: own connection
                    assert lease.id > stale.id
                    await asyncio.sleep(0.5)
                    lease.check()
                assert (await sem.peek()).in_use == 0
            return keys
        finally:
            await a.aclose()

    keys = asyncio.run(main())
    assert len({rc.get_node_from_key(k).name for k in keys}) == 3

