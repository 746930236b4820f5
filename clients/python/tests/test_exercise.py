"""redis_throttle.exercise: the distributed throttle exercise's
``reserve_permit`` and ``redis_throttle`` decorator on PERMIT.

Spacing and the bound are checked on the server's slots (``valid_at``);
``expires_at`` is on this process's clock, as the exercise has it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from decimal import Decimal

import pytest

from redis_throttle import exercise
from redis_throttle.exercise import POSITIVE_HORIZON, Permit, local_time_ms, redis_throttle, reserve_permit


def server_ms(r) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def test_permits_are_the_exercises_integers_in_its_field_order(r):
    assert Permit._fields == ("time_to_wait_ms", "expires_at", "valid_at")
    assert POSITIVE_HORIZON == 2**63 - 1
    before = server_ms(r)
    now = reserve_permit(r, 1000, 2, key="k")
    assert now == (0, POSITIVE_HORIZON, now.valid_at)
    assert before <= now.valid_at <= server_ms(r)
    local_before = local_time_ms()
    reserved = reserve_permit(r, 1000, 2, 3, key="k")
    local_after = local_time_ms()
    time_to_wait_ms, expires_at, valid_at = reserved  # unpacks as the exercise's tuple
    assert all(type(x) is int for x in reserved)
    # the immediate slot is the server's ms rounded down, later ones rounded up;
    # the wait is the interval less the time between the calls (half a second
    # allowed: a saturated machine may stall this process between them)
    assert now.valid_at + 1000 <= valid_at <= now.valid_at + 1001 and 500 < time_to_wait_ms <= 1001
    # this process's clock: when the reply came + the wait + the grace (10%: 100 ms)
    assert local_before + time_to_wait_ms + 100 <= expires_at <= local_after + time_to_wait_ms + 100
    assert not local_time_ms() > reserved.expires_at  # the exercise's expiry check
    assert reserve_permit(r, 1000, 2, key="k").valid_at == valid_at + 1000
    assert reserve_permit(r, 1000, 2, key="k") is None  # two are waiting


def test_intervals_in_ms_as_the_exercise_computes_them(r):
    noisy = (0.1 + 0.2) * 1_000  # 300.00000000000006 ms: sent as 300 (to the µs)
    assert noisy != 300
    first = reserve_permit(r, noisy, 1, key="f")
    assert first.valid_at + 300 <= reserve_permit(r, noisy, 1, key="f").valid_at <= first.valid_at + 301
    half = reserve_permit(r, Decimal("12.5"), 3, key="h")
    slots = [reserve_permit(r, 12.5, 3, key="h").valid_at for _ in range(2)]
    assert half.valid_at + 12 <= slots[0] <= half.valid_at + 14 and half.valid_at + 25 <= slots[1] <= half.valid_at + 26
    grace = reserve_permit(r, 1000, 1, key="g", grace_ms=5)  # immediate: never expires
    assert grace.expires_at == POSITIVE_HORIZON
    later = reserve_permit(r, 1000, 1, key="g", grace_ms=5)
    assert later.expires_at - later.time_to_wait_ms - local_time_ms() <= 5


def test_bad_arguments(r):
    with pytest.raises(ValueError, match="^interval_ms must be > 0"):
        reserve_permit(r, 0, 1)
    with pytest.raises(ValueError, match="^max_waiting must be an integer >= 0"):
        reserve_permit(r, 10, -1)
    with pytest.raises(TypeError):
        reserve_permit(r, "10", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reserve_permit(r, 10, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        redis_throttle(r, min_interval="1")  # type: ignore[arg-type]
    assert reserve_permit(r, 10, 0) is not None


def test_the_decorator_runs_waits_and_refuses(r, caplog):
    caplog.set_level(logging.INFO, logger="redis_throttle.exercise")
    ran = []

    # a second's grace: a saturated machine may oversleep the default 5 ms
    # (expiry has a test of its own, below)
    @redis_throttle(r, min_interval=0.05, max_reserved_permits=1, key="d", grace=1)
    def fake_request(tid):
        ran.append((tid, server_ms(r)))
        return "foo"

    assert fake_request.__name__ == "fake_request"
    assert [fake_request(i) for i in range(3)] == ["foo"] * 3
    received = [rec for rec in caplog.records if rec.getMessage().startswith("Received permit: Permit(")]
    assert len(received) == 3 and received[0].levelno == logging.INFO
    slots = [rec.args[0].valid_at for rec in received]
    assert all(b - a >= 50 for a, b in zip(slots, slots[1:]))
    # each call ran at its slot or later (the immediate slot is rounded down, the others up: 1 ms)
    assert all(t >= slot - 1 for (_, t), slot in zip(ran, slots)), (ran, slots)

    @redis_throttle(r, min_interval=100, key="once")  # max_reserved_permits=0: no waiting
    def once():
        ran.append(("once", 0))
        return "ran"

    assert once() == "ran" and once() is None
    assert caplog.records[-1].getMessage() == "Received permit: None"


def test_a_permit_that_expired_while_sleeping_returns_none(r, caplog, monkeypatch):
    real_sleep = time.sleep
    monkeypatch.setattr(exercise.time, "sleep", lambda s: real_sleep(s + 0.05))  # the scheduler is late
    ran = []

    @redis_throttle(r, min_interval=0.02, max_reserved_permits=1, key="late", grace=0.001)
    def call():
        ran.append(1)
        return "ran"

    assert call() == "ran"  # immediate: never expires
    assert call() is None and ran == [1]  # slept 50 ms past a 1 ms grace
    assert caplog.records[-1].levelno == logging.WARNING
    assert caplog.records[-1].getMessage().startswith("Permit expired: Permit(")


def test_seven_workers_keep_the_spacing_and_the_bound(r):
    """The exercise's simulation, short: 7 workers, 100 ms, at most 2 waiting."""
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            # each permit once: a permit that expired while its thread slept
            # (a late wake-up on a busy machine) is logged a second time
            if record.args and record.getMessage().startswith("Received permit: "):
                seen.append(record.args[0])

    handler = Collect(level=logging.INFO)
    logger = logging.getLogger("redis_throttle.exercise")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    stop = time.monotonic() + 1.5

    @redis_throttle(r, min_interval=0.1, max_reserved_permits=2, key="sim")
    def fake_request(tid):
        return tid

    def process_task(tid):
        while time.monotonic() < stop:
            if fake_request(tid) is None:
                time.sleep(random.uniform(0, 0.1))

    try:
        threads = [threading.Thread(target=process_task, args=(n,)) for n in range(7)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    granted = sorted((p for p in seen if p is not None), key=lambda p: p.valid_at)
    assert len(granted) >= 5 and any(p is None for p in seen)
    # an immediate permit's valid_at is the server's ms rounded down, a reserved
    # one's rounded up: 1 ms less between a reserved slot and an immediate one
    assert all(b.valid_at - a.valid_at >= 100 - (b.time_to_wait_ms == 0) for a, b in zip(granted, granted[1:]))
    assert all(p.time_to_wait_ms <= 2 * 100 for p in granted)  # at most 2 waiting, this one included


def test_on_a_cluster(rc):
    first = reserve_permit(rc, 1000, 1, key="{x}:permits")
    second = reserve_permit(rc, 1000, 1, key="{x}:permits")
    assert first.time_to_wait_ms == 0 and first.valid_at + 1000 <= second.valid_at <= first.valid_at + 1001
    assert reserve_permit(rc, 1000, 1, key="{x}:permits") is None
