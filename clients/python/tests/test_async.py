"""AsyncLimiter, allow_all_async and AsyncPacer on redis.asyncio.Redis.

Each test runs its own event loop (asyncio.run), so the suite needs no
pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import math
import time
from decimal import Decimal
from fractions import Fraction

import pytest
import redis
import redis.asyncio

import servers
from redis_throttle import (
    AsyncLimiter,
    AsyncPacer,
    Pacer,
    PermitRefused,
    RateLimited,
    allow_all,
    allow_all_async,
)


def run(server, body, **client_kwargs):
    async def main():
        a = redis.asyncio.Redis(port=server.port, socket_timeout=10, **client_kwargs)
        try:
            await a.flushall()
            return await body(a)
        finally:
            await a.aclose()

    return asyncio.run(main())


def slow(a, key="k", capacity=10):
    return AsyncLimiter(a, key, rps=Decimal("0.001"), burst=capacity * 1000, window=1)


def test_allow_peek_refund(server):
    async def body(a):
        lim = slow(a)
        assert (await lim.peek()).remaining == 9 and await a.exists("k") == 0
        results = [await lim.allow() for _ in range(11)]
        assert [x.remaining for x in results] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
        assert [x.allowed for x in results] == [True] * 10 + [False]
        assert 990_000 < results[-1].retry_after_ms <= 1_000_000
        assert (await lim.allow(11)).retry_after == math.inf
        assert await lim.refund(3) == 3
        assert await slow(a, "missing").refund(1) is None

    run(server, body)


def test_wait_holds_the_call(server):
    async def body(a):
        lim = AsyncLimiter(a, "w", rps=20, burst=1, window=Decimal("0.05"))
        start = time.monotonic()
        assert (await lim.allow()).allowed
        held = await lim.wait(timeout=2)
        assert held.allowed and time.monotonic() - start >= 0.05
        never = slow(a, "n", capacity=1)
        await never.allow()
        assert not (await never.wait(timeout=0.05)).allowed
        short = redis.asyncio.Redis(port=server.port, socket_timeout=1)
        paced = AsyncLimiter(short, "w2", rps=1)  # one token, one a second
        assert (await paced.allow()).allowed
        start = time.monotonic()
        assert (await paced.wait(timeout=5)).allowed  # held past the socket timeout, on its own connection
        assert time.monotonic() - start >= 0.9
        await short.aclose()

    run(server, body)


def test_concurrent_waiters_are_all_served(server):
    async def body(a):
        lim = AsyncLimiter(a, "q", rps=50, burst=1, window=Decimal("0.02"))  # one every 20 ms
        start = time.monotonic()
        assert await lim.allow()
        results = await asyncio.gather(*(lim.wait(timeout=3) for _ in range(5)))
        assert all(x.allowed for x in results) and len(results) == 5
        assert time.monotonic() - start >= 5 * 0.02

    run(server, body)


def test_knobs_get_reset_delete(server):
    async def body(a):
        lim = slow(a)
        assert await lim.get() is None
        await lim.allow()
        await lim.set_knobs(rps=1, burst=1, window=5, ttl=100)
        state = await lim.get()
        assert (state.source, state.rps, state.limit, state.tokens) == ("knobs", Fraction(1), 5, 5)
        assert 99 < state.knobs_ttl <= 100
        assert await lim.reset_knobs() is True and await lim.reset_knobs() is False
        assert (await lim.get()).source == "last-call"
        assert await lim.delete() is True and await lim.get() is None
        with pytest.raises(ValueError, match="first THROTTLE.SET"):
            await lim.set_knobs(rps=1)

    run(server, body)


def test_errors(server):
    async def body(a):
        with pytest.raises(ValueError) as e:
            await AsyncLimiter(a, "bad", rps=-5).allow()
        assert str(e.value) == "rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)"
        with pytest.raises(ValueError) as e:
            await AsyncPacer(a, "bad", interval=0, max_waiting=1).permit()
        assert str(e.value) == "interval_ms must be > 0 and <= 1e12 ms"
        await a.set("s", "x")
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE") as e:
            await slow(a, "s").allow()
        assert not isinstance(e.value, ValueError)
        with pytest.raises(TypeError, match="Limiter"):
            AsyncLimiter(redis.Redis(port=server.port), "k", rps=1)
        with pytest.raises(TypeError, match="AsyncPacer"):
            Pacer(a, "k", interval=1, max_waiting=1)
        assert (await slow(a, "fine").allow()).remaining == 9

    run(server, body)


def test_decorators(server):
    async def body(a):
        lim = slow(a, "d", capacity=2)
        calls = []

        @lim.throttled()
        async def work(x):
            calls.append(x)
            return x + 1

        assert [await work(1), await work(2)] == [2, 3]
        with pytest.raises(RateLimited) as e:
            await work(3)
        assert calls == [1, 2] and 990 < e.value.retry_after <= 1000
        waiting = AsyncLimiter(a, "dw", rps=20, burst=1, window=Decimal("0.05"))

        @waiting.throttled(wait=2)
        async def paced(x):
            calls.append(x)

        start = time.monotonic()
        await paced("a")
        await paced("b")
        assert calls[-2:] == ["a", "b"] and time.monotonic() - start >= 0.05
        with pytest.raises(TypeError):
            lim.throttled()(lambda: None)

    run(server, body)


def test_allow_all_async(server):
    async def body(a):
        sec, day = slow(a, "{u}:sec", 2), slow(a, "{u}:day", 3)
        assert (await allow_all_async([sec, day])).remaining == (1, 2)
        assert (await allow_all_async([sec, day])).remaining == (0, 1)
        denied = await allow_all_async([sec, day])
        assert (denied.allowed, denied.denied_by, denied.remaining) == (False, 0, (0, 1))
        with pytest.raises(TypeError):
            allow_all([sec, day])
        with pytest.raises(ValueError, match="same key twice"):
            await allow_all_async([sec, slow(a, "{u}:sec")])

    run(server, body)


def test_pacer_permit_block_slot_paced(server):
    async def body(a):
        pacer = AsyncPacer(a, "p", interval=0.05, max_waiting=10)
        now = await pacer.permit()
        assert now.time_to_wait_ms == 0 and now.never_expires
        later = await pacer.permit()
        assert now.valid_at_ms + 50 <= later.valid_at_ms <= now.valid_at_ms + 51
        await later.sleep_async()
        assert time.monotonic() - later.received >= later.time_to_wait
        moves = servers.slot_moves([server])
        held = await pacer.block(timeout=2)
        assert held.time_to_wait_ms == 0
        servers.assert_next_slot(held.valid_at_ms, later.valid_at_ms, 50, servers.slot_moves([server]) - moves)
        slots = []

        async def worker(i):
            async with pacer.slot(timeout=5) as permit:
                slots.append(permit.valid_at_ms)

        await asyncio.gather(*(worker(i) for i in range(4)))
        slots.sort()
        assert len(slots) == 4 and all(b - a >= 50 for a, b in zip(slots, slots[1:]))
        assert slots[0] >= held.valid_at_ms + 50
        full = AsyncPacer(a, "full", interval=1000, max_waiting=0)

        @full.paced()
        async def once():
            return "ran"

        assert await once() == "ran"
        with pytest.raises(PermitRefused):
            await once()
        assert await full.block(timeout=0.01) is None
        with pytest.raises(TypeError):
            full.paced()(lambda: None)

    run(server, body)


def test_async_get_reads_resp3_and_decoded_strings(server):
    async def body(a):
        lim = slow(a)
        await lim.allow()
        state = await lim.get()
        assert (state.tokens, state.limit, state.rps) == (9, 10, Fraction(1, 1000))

    run(server, body, protocol=3, decode_responses=True)
