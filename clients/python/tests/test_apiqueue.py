"""redis_throttle.apiqueue.ApiQueue: ApiQueue's interface on PERMIT ... BLOCK.

Order and spacing are checked on the server's slots (each released
caller's ``permit.valid_at_ms``), never on the client's clock. ApiQueue's
own unit tests run unchanged but for their import in scripts/seeds.sh.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import redis
import redis.asyncio

from redis_throttle import Pacer
from redis_throttle.apiqueue import DEFAULT_URL, ApiQueue

pytestmark = pytest.mark.needs("permit-unbounded", "permit-settings")


def server_ms(r) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def spaced(slots, rate_ms):
    """Consecutive slots at least rate_ms apart, to the ms: a caller released
    at once has the server's ms rounded down, a held one rounded up."""
    slots = sorted(slots)
    return all(b - a >= rate_ms - 1 for a, b in zip(slots, slots[1:]))


def wait_all(waiters, timeout=30):
    for w in waiters:
        assert w.wait(timeout), w
    return [w.permit.valid_at_ms for w in waiters]


def test_callers_are_released_in_order_one_rate_apart(r):
    q = ApiQueue(30, client=r)
    q.debug = True
    q.start()
    try:
        waiters = [q.enqueue() for _ in range(8)]
        assert all(isinstance(w.timeout, float) and w.timeout > q.now() for w in waiters)
        slots = wait_all(waiters)
        assert all(not w.waiting and w.registered for w in waiters)
        assert slots == sorted(slots) and spaced(slots, 30), slots  # in enqueue order, one rate apart
        assert q.steps == sorted(slots) and q.queue.empty() and q.queue.qsize() == 0
        assert waiters[0].permit.time_to_wait_ms == 0
    finally:
        q.stop(True)


def test_polling_waiting_as_apiqueue_users_do(r):
    q = ApiQueue(20, client=r)
    q.start()
    ends = []

    def join_queue():
        waiter = q.enqueue()
        while waiter.waiting is True:
            pass
        ends.append(waiter.permit.valid_at_ms)

    threads = [threading.Thread(target=join_queue) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    q.stop(True)
    ends.sort()
    assert len(ends) == 5 and spaced(ends, 20), ends
    assert q.queue.empty()


def test_the_queue_lives_in_redis_under_its_name(r, server):
    """Two processes that name the queue share it (the child is a real process)."""
    name = "shared-queue"
    q = ApiQueue(50, name=name, client=r)
    q.start()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from redis_throttle.apiqueue import ApiQueue\n"
            "q = ApiQueue(50, name=sys.argv[1])\n"
            "q.start()\n"
            "ws = [q.enqueue() for _ in range(5)]\n"
            "print('enqueued', flush=True)\n"
            "[w.wait(30) for w in ws]\n"
            "q.stop(True)\n"
            "print(json.dumps([w.permit.valid_at_ms for w in ws]))\n",
            name,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"REDIS_URL": server.url, "PATH": ""},
    )
    try:
        assert child.stdout.readline() == "enqueued\n"
        mine = wait_all([q.enqueue() for _ in range(5)])
        theirs = json.loads(child.stdout.readline())
        assert child.wait(30) == 0
    finally:
        child.kill()
        q.stop(True)
    slots = sorted(mine + theirs)
    assert len(slots) == 10 and spaced(slots, 50), slots
    assert max(theirs) < min(mine)  # the child's five were queued first
    assert Pacer(r, name).get().has_settings  # a named queue keeps its rate at stop
    assert Pacer(r, name).get().interval_ms == 50


def test_instances_without_a_name_have_queues_of_their_own(r):
    a, b = ApiQueue(1000, client=r), ApiQueue(1000, client=r)
    assert a.key != b.key
    a.start()
    b.start()
    try:
        first_a, first_b = a.enqueue(), b.enqueue()
        slots = wait_all([first_a, first_b], timeout=5)
        # a shared queue would hold the second one for 1000 ms
        assert first_a.permit.time_to_wait_ms == 0 and first_b.permit.time_to_wait_ms == 0
        assert abs(slots[0] - slots[1]) < 1000
    finally:
        a.stop(True)
        b.stop(True)
    for key in (a.key, b.key):  # a queue of its own drops its rate at stop
        state = Pacer(r, key).get()
        assert state is None or not state.has_settings


def test_reset_rate_respaces_50_held_callers_within_one_new_interval(r):
    q = ApiQueue(500, client=r)
    q.start()
    try:
        waiters = [q.enqueue() for _ in range(51)]
        assert waiters[0].wait(5)  # the first slot is now; the next 500 ms later
        # Every caller still waiting is held on the server before the reset
        # (a loaded machine may take a while to send them all).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            held = sum(w.waiting for w in waiters)
            if int(r.info("throttle")["throttle_blocked_clients"]) >= held:
                break
            time.sleep(0.01)
        late_before = int(r.info("throttle")["throttle_blocked_late"])
        before = server_ms(r)
        q.reset_rate(20)
        after = server_ms(r)
        assert q.rate_millis == 20
        slots = wait_all(waiters)
        late = int(r.info("throttle")["throttle_blocked_late"]) - late_before
    finally:
        q.stop(True)
    # 50 unless the machine took 500 ms to hold them all (then some went at
    # the old rate; the checks below count with what was held)
    assert held >= 10, held
    assert slots == sorted(slots)  # FIFO: released in the order they enqueued
    old = [s for s in slots if s <= before]
    respaced = [s for s in slots if s > after]
    assert len(respaced) >= held - 1 and len(old) + len(respaced) >= 50, (len(old), len(respaced))
    assert all(b - a >= 500 for a, b in zip(old, old[1:])), old
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    assert all(g >= 20 for g in gaps), gaps  # the minimum spacing holds across the change
    if late == 0:
        # The server released every caller on time: each re-spaced caller
        # within one new interval of its place, the k-th by after + (k+1) x 20.
        behind = [(k, s - after) for k, s in enumerate(respaced) if s > after + (k + 1) * 20 + 1]
        assert behind == [], behind
    else:
        # A saturated server released some late (INFO throttle_blocked_late)
        # and re-slotted them (and those behind): still re-spaced, far sooner
        # than the old rate, within a generous bound.
        assert respaced[-1] - after <= max(2000, len(respaced) * 500 // 2), (late, after, respaced)


def test_stop_parks_new_callers_until_start(r):
    q = ApiQueue(20, client=r)
    q.start()
    q.stop()
    parked = q.enqueue()
    time.sleep(0.2)
    assert parked.waiting and q.queue.qsize() == 1
    assert not [c for c in r.client_list() if "b" in c["flags"]]  # never sent: nobody held
    q.start()
    assert parked.wait(5) and not parked.waiting
    q.stop(True)


def test_reset_rate_starts_a_stopped_queue_like_apiqueue(r):
    q = ApiQueue(1000, client=r)
    q.reset_rate(10)
    assert q.process_q is True
    assert Pacer(r, q.key).get().interval_ms == 10
    w = q.enqueue()
    assert w.wait(5)
    q.stop(True)


def test_bad_rates_and_clients(r, monkeypatch, server):
    with pytest.raises(ValueError, match="must be > 0"):
        ApiQueue(0, client=r).start()
    with pytest.raises(ValueError, match="must be > 0"):
        ApiQueue(100, client=r).reset_rate(-1)
    with pytest.raises(TypeError):
        ApiQueue(True, client=r)
    r.set("taken", "a string")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        ApiQueue(100, name="taken", client=r).start()
    with pytest.raises(TypeError, match="not both"):
        ApiQueue(100, client=r, url=server.url)
    with pytest.raises(TypeError, match="sync client"):
        ApiQueue(100, client=redis.asyncio.Redis(port=server.port))
    assert DEFAULT_URL == "redis://localhost:6379"
    monkeypatch.setenv("REDIS_URL", server.url)
    q = ApiQueue(10)  # no client: $REDIS_URL
    assert q.client.connection_pool.connection_kwargs["port"] == server.port
    q.start()
    assert q.enqueue().wait(5)
    q.stop(True)
    q.client.close()


def test_a_killed_connection_asks_again(r):
    q = ApiQueue(1000, client=r)
    q.start()
    try:
        first, held = q.enqueue(), q.enqueue()
        assert first.wait(5)
        blocked = [c for c in r.client_list() if "b" in c["flags"] and "PERMIT" in c.get("cmd", "").upper()]
        assert len(blocked) == 1
        r.client_kill_filter(_id=blocked[0]["id"])
        assert held.wait(10) and isinstance(held.error, redis.ConnectionError)
        assert held.permit.valid_at_ms >= first.permit.valid_at_ms + 1000
    finally:
        q.stop(True)


def test_a_cluster_queue(rc):
    q = ApiQueue(25, name="{cluster}:queue", client=rc)
    q.start()
    try:
        slots = wait_all([q.enqueue() for _ in range(4)])
        assert spaced(slots, 25), slots
    finally:
        q.stop(True)
