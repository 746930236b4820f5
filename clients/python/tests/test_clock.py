"""The test clock: ThrottleClock, AsyncThrottleClock, the throttle_clock
pytest fixture, and a server without ``test-clock yes``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import redis.asyncio

import servers
from redis_throttle import AsyncLimiter, AsyncThrottleClock, Limiter, Pacer, TestClockDisabled, ThrottleClock

pytestmark = pytest.mark.needs("clock")

Y2030 = datetime(2030, 1, 1, tzinfo=timezone.utc)
Y2030_US = 1_893_456_000_000_000


def test_freeze_advance_real(r):
    clock = ThrottleClock(r)
    assert clock.freeze(Y2030) == Y2030_US
    assert clock.now_us() == Y2030_US and clock.now() == Y2030
    assert clock.now_us() == Y2030_US  # frozen: it does not move
    assert Pacer(r, "p", interval=1, max_waiting=1).permit().valid_at == Y2030  # the module reads it
    assert clock.advance(0.25) == Y2030_US + 250_000
    assert clock.advance(timedelta(microseconds=1)) == Y2030_US + 250_001
    assert clock.now() == Y2030 + timedelta(microseconds=250_001)
    clock.freeze(1_900_000_000.5)  # Unix seconds
    assert clock.now_us() == 1_900_000_000_500_000
    clock.real()
    seconds, micros = r.time()
    assert abs(clock.now_us() - (seconds * 1_000_000 + micros)) < 1_000_000


def test_freeze_without_a_time_stops_the_clock_where_it_is(r):
    clock = ThrottleClock(r)
    seconds, _ = r.time()
    at = clock.freeze()
    assert abs(at // 1_000_000 - seconds) <= 1
    assert clock.now_us() == at
    clock.real()


def test_advance_from_the_real_clock_freezes_it_there(r):
    clock = ThrottleClock(r)
    seconds, _ = r.time()
    at = clock.advance(3600)
    assert abs(at // 1_000_000 - (seconds + 3600)) <= 1
    assert clock.now_us() == at
    clock.real()


def test_context_manager_freezes_then_returns_to_real(r):
    lim = Limiter(r, "k", rps=1, burst=1, window=1)
    with ThrottleClock(r) as clock:
        frozen = clock.now_us()
        assert lim.allow() and not lim.allow()
        assert lim.allow().retry_after_ms == 1000  # no time passes while frozen
        clock.advance(1)
        assert lim.allow()
        assert clock.now_us() == frozen + 1_000_000
    seconds, micros = r.time()
    assert abs(ThrottleClock(r).now_us() - (seconds * 1_000_000 + micros)) < 1_000_000


def test_clock_times_must_be_aware_and_finite(r):
    clock = ThrottleClock(r)
    with pytest.raises(ValueError, match="aware"):
        clock.freeze(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="finite"):
        clock.advance(float("nan"))
    assert clock.freeze(Y2030) == Y2030_US
    clock.real()


def test_the_pytest_fixture_freezes_for_the_test(throttle_clock, r):
    assert isinstance(throttle_clock, ThrottleClock)
    at = throttle_clock.now_us()
    assert ThrottleClock(r).now_us() == at
    lim = Limiter(r, "f", rps=10, burst=1, window=1)  # 10 tokens, one every 100 ms
    assert lim.allow(10) and not lim.allow()
    throttle_clock.advance(0.1)
    assert lim.allow() and not lim.allow()


def test_a_server_without_test_clock_refuses_it():
    plain = servers.Server()  # the module without test-clock yes
    try:
        c = plain.client()
        with pytest.raises(TestClockDisabled) as e:
            ThrottleClock(c).freeze()
        assert "test-clock yes" in str(e.value)
        assert Limiter(c, "k", rps=1).allow()  # the module works as usual
        c.close()
    finally:
        plain.stop()


def test_async_clock(server):
    async def main():
        a = redis.asyncio.Redis(port=server.port)
        try:
            lim = AsyncLimiter(a, "ak", rps=2, burst=1, window=1)  # 2 tokens, one every 500 ms
            async with AsyncThrottleClock(a) as clock:
                at = await clock.now_us()
                assert (await lim.allow(2)).allowed
                denied = await lim.allow()
                assert denied.retry_after_ms == 500
                assert await clock.advance(0.5) == at + 500_000
                assert (await lim.allow()).allowed
                epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
                assert await clock.now() == epoch + timedelta(microseconds=at + 500_000)
                assert await clock.freeze(Y2030) == Y2030_US
            seconds, micros = await a.time()
            assert abs(await AsyncThrottleClock(a).now_us() - (seconds * 1_000_000 + micros)) < 1_000_000
            with pytest.raises(TypeError):
                AsyncThrottleClock(redis.Redis(port=server.port))
        finally:
            await a.aclose()

    asyncio.run(main())


def test_the_fixture_comes_with_the_installed_package(pytester, server, r, monkeypatch):
    """A project's own test, in a fresh pytest run: the plugin is found
    through the package's entry point, and talks to $REDIS_URL."""
    pytester.makepyfile(
        """
        from redis_throttle import Limiter

        def test_login_is_limited(throttle_clock):
            limiter = Limiter(throttle_clock.client, "login:alice", rps=0.1, burst=3, window=10)
            assert all(limiter.allow() for _ in range(3))
            assert not limiter.allow()
            throttle_clock.advance(10)
            assert limiter.allow()
        """
    )
    monkeypatch.setenv("REDIS_URL", server.url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
