"""redis_throttle.rush.Rusher: Rush's interface, rushing a THROTTLE limiter.

Every worker calls the module (so nothing here passes without it); the
outcomes are the limiter's answers.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest

from redis_throttle import Limiter
from redis_throttle.rush import NO_OUTCOME, Rusher


def capacity(server, key, tokens):
    """A limiter of `tokens` that refills one token per 1000 s."""
    return Limiter(server.client(), key, rps=Decimal("0.001"), burst=tokens * 1000, window=1)


def throttle_worker(server, key, tokens):
    def worker(index, thread_count):
        limiter = capacity(server, key, tokens)
        limiter.client.ping()  # connect while preparing
        yield
        yield "attempted" if limiter.allow() else "throttled"
        limiter.client.close()

    return worker


def test_rushing_a_limiter_counts_its_answers(r, server, capsys):
    rusher = Rusher(throttle_worker(server, "rushed", 5), 8)
    duration, results = rusher.rush_and_report()
    assert isinstance(duration, timedelta) and duration > timedelta(0)
    assert results == {"attempted": 5, "throttled": 3}
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("8 threads completed in ") and out[0].endswith(", results:")
    assert out[1:] == ["    attempted: 5", "    throttled: 3"]
    rusher.thread_count = 2
    _, again = rusher.rush()
    assert again == {"throttled": 2}
    with pytest.raises(ValueError):
        rusher.thread_count = 0
    with pytest.raises(TypeError):
        rusher.thread_count = "3"  # type: ignore[assignment]
    assert rusher.thread_count == 2 and "thread_count=2" in repr(rusher)
    with pytest.raises(TypeError):
        Rusher("not a worker", 2)  # type: ignore[arg-type]


def test_every_worker_is_ready_before_any_rushes(r, server):
    n = 12
    prepared, started, seen = [], [], []
    lock = threading.Lock()
    limiter = capacity(server, "barrier", 100)

    def worker(index, thread_count):
        time.sleep(0.01 * index)  # the last one is ready 110 ms after the first
        with lock:
            prepared.append(time.perf_counter())
            seen.append((index, thread_count))
        yield
        with lock:
            started.append(time.perf_counter())
        yield "attempted" if limiter.allow() else "throttled"

    _, results = Rusher(worker, n).rush()
    assert results == {"attempted": n}
    assert sorted(seen) == [(i, n) for i in range(n)]
    assert max(prepared) <= min(started)  # the barrier: nobody rushed before the last was ready


def test_errors_and_missing_outcomes_are_counted(r, server):
    limiter = capacity(server, "errors", 100)

    def worker(index, thread_count):
        if index == 0:
            raise ValueError("could not prepare")
        yield
        allowed = limiter.allow()
        if index == 1:
            raise KeyError("failed while rushing")
        if index == 2:
            return  # no outcome
        yield "attempted" if allowed else "throttled"

    _, results = Rusher(worker, 6).rush()
    assert results == {NO_OUTCOME: 1, "attempted": 3, "error: KeyError": 1, "error: ValueError": 1}
    assert limiter.get().tokens == 100 - 5  # the five that got past preparing called THROTTLE


def test_a_worker_over_the_timeout_is_counted_and_the_others_rush(r, server):
    limiter = capacity(server, "slow", 100)
    release = threading.Event()

    def worker(index, thread_count):
        if index == 0:
            release.wait(10)  # stuck while preparing
        yield
        yield "attempted" if limiter.allow() else "throttled"

    try:
        _, results = Rusher(worker, 4, timeout=2).rush()
    finally:
        release.set()
    assert results == {"attempted": 3, "error: timeout": 1}

