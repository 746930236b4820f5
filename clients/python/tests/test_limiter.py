"""Limiter (sync): THROTTLE, WAIT, PEEK, REFUND, knobs, THROTTLE.ALL, the
decorator, typed results and errors, against a real server.

Most tests use a slow refill (one token per 1000 s) so the real clock cannot
change a count during a test; exact times use the frozen test clock.
"""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal
from fractions import Fraction

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry
from servers import free_port

from redis_throttle import (
    AllResult,
    AsyncLimiter,
    Limiter,
    RateLimited,
    ThrottleResult,
    allow_all,
)

# capacity 10 tokens, one more every 1000 s
SLOW = dict(rps=Decimal("0.001"), burst=10_000, window=1)


def slow(r, key="k", capacity=10):
    return Limiter(r, key, rps=Decimal("0.001"), burst=capacity * 1000, window=1)


def test_allow_takes_tokens_until_the_bucket_is_empty(r):
    lim = Limiter(r, "k", **SLOW)
    results = [lim.allow() for _ in range(11)]
    assert [x.allowed for x in results] == [True] * 10 + [False]
    assert [x.remaining for x in results] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    assert {x.limit for x in results} == {10}
    assert [bool(x) for x in results] == [x.allowed for x in results]
    assert all(x.retry_after_ms == 0 for x in results[:10])
    denied = results[-1]
    # one token accrues in 1000 s; a few ms of that have passed
    assert 990_000 < denied.retry_after_ms <= 1_000_000
    assert denied.retry_after == denied.retry_after_ms / 1000
    assert 9_990_000 < denied.reset_after_ms <= 10_000_000
    assert denied.reset_after == denied.reset_after_ms / 1000
    assert isinstance(denied, ThrottleResult)


def test_allow_with_a_cost(r):
    lim = slow(r)
    assert lim.allow(3).remaining == 7
    assert lim.allow(0).allowed and lim.allow(0).remaining == 7  # free, always allowed
    big = lim.allow(11)  # more than the capacity: never
    assert not big.allowed
    assert big.retry_after_ms == -1 and big.retry_after == math.inf
    assert big.remaining == 7
    assert lim.allow(7).remaining == 0
    assert not lim.allow(1)


def test_switches_deny_all_and_allow_all(r):
    deny = Limiter(r, "off", rps=0, burst=1, window=5)
    res = deny.allow()
    assert (res.allowed, res.remaining, res.retry_after_ms, res.reset_after_ms, res.limit) == (False, 0, 5000, 0, 0)
    assert res.headers() == {
        "RateLimit-Limit": "0",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "0",
        "Retry-After": "5",
    }
    allow = Limiter(r, "on", rps=-1)
    res = allow.allow()
    assert (res.allowed, res.remaining, res.limit) == (True, -1, -1)
    assert res.unlimited and res.headers() == {}
    assert r.exists("off", "on") == 0  # switches store nothing


def test_headers_for_an_http_response(r):
    lim = slow(r, capacity=2)
    ok = lim.allow()
    assert ok.headers() == {"RateLimit-Limit": "2", "RateLimit-Remaining": "1", "RateLimit-Reset": "1000"}
    lim.allow()
    denied = lim.allow()
    assert denied.headers() == {
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2000",
        "Retry-After": "1000",
    }
    never = lim.allow(3)
    assert "Retry-After" not in never.headers()


def test_peek_answers_like_allow_and_writes_nothing(r):
    lim = slow(r)
    fresh = lim.peek()  # remaining: what THROTTLE would leave
    assert (fresh.allowed, fresh.remaining, fresh.limit) == (True, 9, 10)
    assert r.exists("k") == 0
    lim.allow(4)
    assert lim.peek().remaining == 5
    assert lim.peek(6).remaining == 0 and lim.peek(7).allowed is False
    assert lim.peek(11).retry_after_ms == -1
    assert lim.allow().remaining == 5  # peeks took nothing


def test_refund_gives_tokens_back_up_to_the_capacity(r):
    lim = slow(r)
    assert lim.refund(1) is None  # missing key: a full bucket
    lim.allow(5)
    assert lim.refund(2) == 7
    assert lim.refund(100) == 10
    assert lim.allow().remaining == 9


def test_wait_holds_the_call_until_the_tokens_are_due(r):
    lim = Limiter(r, "w", rps=20, burst=1, window=Decimal("0.05"))  # 1 token, one every 50 ms
    start = time.monotonic()
    assert lim.allow().allowed
    held = lim.wait(timeout=2)
    elapsed = time.monotonic() - start
    assert held.allowed and held.retry_after_ms == 0 and held.limit == 1
    assert elapsed >= 0.05  # released no earlier than the token was due


def test_wait_denies_at_once_and_reserves_nothing_when_the_tokens_come_too_late(r):
    lim = slow(r, capacity=1)
    lim.allow()
    denied = lim.wait(timeout=0.05)
    assert not denied.allowed
    assert 990_000 < denied.retry_after_ms <= 1_000_000
    assert lim.refund(1) == 1  # nothing was reserved: one refund fills it


def test_waiters_are_all_served_in_turn(r):
    lim = Limiter(r, "q", rps=50, burst=1, window=Decimal("0.02"))  # one token every 20 ms
    results, errors = [], []

    def worker():
        try:
            results.append(lim.wait(timeout=3))
        except Exception as e:  # collected: asserted in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    start = time.monotonic()
    assert lim.allow()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 5 and all(x.allowed for x in results)
    assert time.monotonic() - start >= 5 * 0.02  # the fifth token is due 100 ms after the first


def test_wait_longer_than_the_socket_timeout_goes_on_its_own_connection(r, server):
    short = server.client(socket_timeout=1)
    lim = Limiter(short, "w", rps=1, burst=1, window=1)  # one token, one a second
    assert lim.allow().allowed
    before = int(r.info("clients")["connected_clients"])
    start = time.monotonic()
    held = lim.wait(timeout=5)  # ~1 s for the token: longer than 1 s + the margin allows
    assert held.allowed and time.monotonic() - start >= 0.9
    deadline = time.monotonic() + 10
    while int(r.info("clients")["connected_clients"]) != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert int(r.info("clients")["connected_clients"]) == before  # that connection is closed
    assert lim.wait(timeout=0.05).allowed is False  # the next token is a second away
    short.close()


def test_knobs_override_every_caller_until_reset(r):
    lim = slow(r)
    lim.allow()
    lim.set_knobs(rps=1, burst=1, window=5)
    state = lim.get()
    assert state.source == "knobs" and state.has_knobs
    assert (state.rps, state.burst, state.window, state.limit) == (Fraction(1), Fraction(1), Fraction(5), 5)
    assert state.tokens == 5  # 9 tokens, capped at the new capacity
    assert 604_790 < state.knobs_ttl <= 604_800  # the module's default knobs-ttl, 7 days
    assert lim.allow().limit == 5  # the caller's own limit is overridden
    lim.set_knobs(rps=2)  # later calls may change a subset
    assert lim.get().rps == 2 and lim.get().limit == 10
    lim.set_knobs(ttl=60)
    assert 59 < lim.get().knobs_ttl <= 60
    assert lim.reset_knobs() is True
    after = lim.get()
    assert after.source == "last-call" and after.knobs_ttl_ms == -1 and after.knobs_ttl is None
    assert lim.reset_knobs() is False
    assert lim.allow().limit == 10


def test_get_and_delete(r):
    lim = slow(r)
    assert lim.get() is None
    lim.allow(2)
    state = lim.get()
    assert (state.tokens, state.limit, state.rps, state.source) == (8, 10, Fraction(1, 1000), "last-call")
    assert 1_990_000 < state.reset_after_ms <= 2_000_000 and state.reset_after == state.reset_after_ms / 1000
    assert lim.delete() is True
    assert lim.get() is None and lim.delete() is False


@pytest.mark.needs("get-last-call")
def test_get_after_a_last_call_keeps_only_rps_and_limit(r):
    lim = slow(r)
    lim.allow()
    state = lim.get()
    assert (state.burst, state.window) == (None, None)
    lim.set_knobs(rps=1, burst=2, window=3)
    assert (lim.get().burst, lim.get().window) == (2, 3)


def test_get_reads_resp3_maps(server):
    c = server.client(protocol=3, decode_responses=True)
    try:
        lim = Limiter(c, "m", **SLOW)
        lim.allow()
        state = lim.get()
        assert (state.tokens, state.limit, state.source) == (9, 10, "last-call")
    finally:
        c.close()


def test_set_knobs_first_call_needs_all_three(r):
    lim = slow(r)
    with pytest.raises(ValueError) as e:
        lim.set_knobs(rps=2)
    assert str(e.value) == "the first THROTTLE.SET on a limiter must give RPS, BURST and WINDOW"
    assert lim.get() is None


@pytest.mark.needs("short-forms")
def test_a_limiter_without_a_limit_uses_the_keys_knobs(r):
    knobs_only = Limiter(r, "kn")
    assert knobs_only.uses_knobs_only
    for op in (knobs_only.allow, knobs_only.peek):  # no knobs yet: an ERR naming the problem
        with pytest.raises(ValueError) as e:
            op()
        assert "wrong number of arguments" not in str(e.value)
    knobs_only.set_knobs(rps=Decimal("0.001"), burst=3000, window=1)
    assert knobs_only.peek().remaining == 2  # after the 1 token a call would take
    assert [knobs_only.allow(2).remaining, knobs_only.allow().remaining] == [1, 0]
    assert not knobs_only.allow()
    assert knobs_only.wait(timeout=0.01).allowed is False


def test_numbers_are_sent_exactly(r):
    lim = Limiter(r, "n", rps=0.1, burst=Decimal("2.5"), window=Fraction(4))
    assert lim.allow().limit == 1  # ceil(0.1 * 2.5 * 4)
    assert lim.get().rps == Fraction(1, 10)
    tiny = Limiter(r, "t", rps=1e-05, burst=1e5, window="1")  # repr '1e-05' sent as 0.00001
    assert tiny.allow().limit == 1
    assert tiny.get().rps == Fraction(1, 100_000)
    huge = Limiter(r, "h", rps=1e9, burst=1, window=1)  # repr '1000000000.0'
    assert huge.allow().limit == 1_000_000_000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rps=-5), "rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)"),
        (dict(rps="abc"), "rps is not a valid decimal number"),
        (dict(rps=1 / 3), "rps has too many decimal places (at most 9)"),
        (dict(rps=1, burst=0), "burst must be > 0 and <= 1e9"),
        (dict(rps=1, window=-1), "window must be > 0 and <= 1e9 seconds"),
        (dict(rps=1e9, burst=1e9), "rps*burst*window is too large (the limit must be at most 1e15 tokens)"),
        (dict(rps=math.inf), "rps is not a valid decimal number"),
    ],
)
def test_bad_limits_raise_value_error_with_the_servers_message(r, kwargs, message):
    lim = Limiter(r, "bad", **kwargs)
    for op in (lim.allow, lim.peek):
        with pytest.raises(ValueError) as e:
            op()
        assert str(e.value) == message
        assert isinstance(e.value.__cause__, redis.ResponseError)
    assert r.exists("bad") == 0


def test_bad_tokens_and_timeouts(r):
    lim = slow(r)
    with pytest.raises(ValueError) as e:
        lim.allow(-1)
    assert str(e.value) == "tokens must be an integer >= 0"
    with pytest.raises(ValueError) as e:
        lim.wait(timeout=-1)
    assert str(e.value) == "timeout_ms must be an integer >= 0 and <= 31622400000 (one year)"
    with pytest.raises(TypeError):
        lim.allow(1.5)
    with pytest.raises(TypeError):
        Limiter(r, "k", rps=True)
    with pytest.raises(ValueError, match="not a finite decimal"):
        Limiter(r, "k", rps=Fraction(1, 3))
    assert r.exists("k") == 0
    assert lim.allow().remaining == 9


def test_wrongtype_and_connection_errors_stay_redis_py_exceptions(r, server):
    r.set("s", "x")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE") as e:
        Limiter(r, "s", **SLOW).allow()
    assert not isinstance(e.value, ValueError)
    assert Limiter(r, "ok", **SLOW).allow().allowed
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        Limiter(nobody, "k", **SLOW).allow()


def test_sync_and_async_classes_refuse_the_other_kind_of_client(r, server):
    a = redis.asyncio.Redis(port=server.port)
    with pytest.raises(TypeError, match="AsyncLimiter"):
        Limiter(a, "k", **SLOW)
    with pytest.raises(TypeError, match="Limiter"):
        AsyncLimiter(r, "k", **SLOW)
    assert Limiter(r, "k", **SLOW).allow().remaining == 9


def test_decorator_rejects_when_denied(r):
    lim = slow(r, capacity=2)
    calls = []

    @lim.throttled()
    def work(x):
        calls.append(x)
        return 2 * x

    assert [work(1), work(2)] == [2, 4]
    with pytest.raises(RateLimited) as e:
        work(3)
    assert calls == [1, 2]
    assert isinstance(e.value.result, ThrottleResult)
    assert 990 < e.value.retry_after <= 1000

    @lim.throttled(tokens=5)
    def expensive():
        calls.append("x")

    with pytest.raises(RateLimited) as e:
        expensive()
    assert e.value.retry_after == math.inf and calls == [1, 2]
    with pytest.raises(TypeError):

        @lim.throttled()
        async def not_for_sync():
            pass


def test_decorator_waits_when_asked(r):
    lim = Limiter(r, "dw", rps=20, burst=1, window=Decimal("0.05"))
    calls = []

    @lim.throttled(wait=2)
    def work(x):
        calls.append(x)

    start = time.monotonic()
    work(1)
    work(2)  # held until the next token, 50 ms later
    assert calls == [1, 2] and time.monotonic() - start >= 0.05
    never = slow(r, "dn", capacity=1)

    @never.throttled(wait=0.05)
    def late():
        calls.append("late")

    late()
    with pytest.raises(RateLimited):
        late()
    assert calls == [1, 2, "late"]


def test_allow_all_takes_from_every_limit_or_none(r):
    sec = slow(r, "{u}:sec", capacity=2)
    day = slow(r, "{u}:day", capacity=3)
    first = allow_all([sec, day])
    assert isinstance(first, AllResult)
    assert (first.allowed, first.denied_by, first.retry_after_ms, first.remaining) == (True, None, 0, (1, 2))
    assert allow_all([sec, day]).remaining == (0, 1)
    denied = allow_all([sec, day])
    assert (denied.allowed, denied.denied_by, denied.remaining) == (False, 0, (0, 1))
    assert 990_000 < denied.retry_after_ms <= 1_000_000 and not denied
    assert day.get().tokens == 1  # nothing taken from the limit that allowed
    big = allow_all([day, slow(r, "{u}:big", capacity=100)], tokens=50)
    assert (big.denied_by, big.retry_after_ms, big.retry_after) == (0, -1, math.inf)
    second = allow_all([slow(r, "{u}:roomy", capacity=100), day], tokens=2)
    assert second.denied_by == 1


def test_allow_all_errors(r, server):
    a, b = slow(r, "a"), slow(r, "b")
    with pytest.raises(ValueError) as e:
        allow_all([a, slow(r, "a")])
    assert str(e.value) == "THROTTLE.ALL got the same key twice"
    with pytest.raises(ValueError, match="at least one"):
        allow_all([])
    other = server.client()
    with pytest.raises(ValueError, match="same client"):
        allow_all([a, slow(other, "c")])
    with pytest.raises(ValueError, match="rps, burst and window"):
        allow_all([a, Limiter(r, "knobs")])
    with pytest.raises(ValueError) as e:
        allow_all([a, b], tokens=-1)
    assert str(e.value) == "tokens must be an integer >= 0"
    other.close()
    assert allow_all([a, b]).remaining == (9, 9)


def test_repr_names_the_key_and_limit(r):
    assert repr(slow(r)) == "Limiter('k', 0.001 10000 1)"
    assert repr(Limiter(r, "x")) == "Limiter('x', knobs)"
    assert slow(r).allow().limit == 10


@pytest.mark.needs("clock")
def test_refill_is_exact_on_the_frozen_clock(r, clock):
    lim = Limiter(r, "exact", rps=5, burst=2, window=1)  # 10 tokens, one every 200 ms
    for _ in range(10):
        assert lim.allow()
    denied = lim.allow()
    assert (denied.retry_after_ms, denied.reset_after_ms) == (200, 2000)
    clock.advance(0.199)
    still = lim.allow()
    assert not still and still.retry_after_ms == 1
    clock.advance(0.001)
    assert lim.allow().remaining == 0
    clock.advance(10)
    assert lim.get().tokens == 10  # full, and no more
    assert lim.allow(3).reset_after_ms == 600


@pytest.mark.needs("clock")
def test_fractional_rates_refill_exactly(r, clock):
    lim = Limiter(r, "third", rps="0.333333333", burst=3, window=1)  # 1 token, ~3 s each
    assert lim.allow().limit == 1
    denied = lim.allow()
    assert denied.retry_after_ms == 3001  # 1 / 0.333333333 s = 3000.000003 ms, rounded up
    clock.advance(3)  # 0.999999999 tokens
    assert not lim.allow()
    clock.advance(0.000001)
    assert lim.allow()
