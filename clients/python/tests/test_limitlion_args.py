"""redis_throttle.limitlion_args (THROTTLE with LimitLion's arguments)
against LimitLion 1.1's own README and test cases (rewritten here, not
copied), on the module.

Frozen time is set the way LimitLion's tests set it, with the keys
``frozen_second`` and ``frozen_microsecond`` (``throttle_configure(r,
testing=True)``). Where the module's continuous refill answers differently
from LimitLion's whole-window refill, the test asserts the module's exact
answer and names LimitLion's in a comment; ``Bucket`` below is that
continuous refill in exact arithmetic.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import pytest
import redis

import servers
from redis_throttle import limitlion_args as limitlion
from redis_throttle._core import pairs
from redis_throttle.limitlion_args import (
    DEFAULT_KNOBS_TTL,
    KEY_FORMAT,
    KnobsMissingError,
    throttle,
    throttle_configure,
    throttle_delete,
    throttle_get,
    throttle_reset,
    throttle_set,
    throttle_wait,
)
from redis_throttle.testing import TestClockDisabled

GRID = [
    (rps, burst, window)
    for window in (1, 2, 5, 10)
    for burst in (1, 2, 3.3, 10)
    for rps in (0.0001, 0.2, 0.5, 0.6, 1, 2, 2.2, 5, 10)
]
START = 1_800_000_000  # a whole Unix second


class Bucket:
    """The module's token bucket, exactly: capacity max(1, ceil(rps*burst*window)),
    continuous refill at rps, a full bucket to start with."""

    def __init__(self, rps, burst, window):
        self.rps = Fraction(repr(rps))
        self.capacity = max(1, math.ceil(self.rps * Fraction(repr(burst)) * Fraction(repr(window))))
        self.tokens = Fraction(self.capacity)
        self.at_us = None

    def call(self, now_us, requested):
        if self.at_us is not None:
            self.tokens = min(self.capacity, self.tokens + self.rps * Fraction(now_us - self.at_us, 1_000_000))
        self.at_us = now_us
        allowed = self.tokens >= requested
        if allowed:
            self.tokens -= requested
        return allowed, math.floor(self.tokens)


def freeze(r, seconds, microseconds=0):
    """LimitLion's testing mode: time comes from these two keys."""
    r.mset({"frozen_second": seconds + microseconds // 1_000_000, "frozen_microsecond": microseconds % 1_000_000})


@pytest.fixture
def ll(r):
    """limitlion configured on the test server, as LimitLion's tests do."""
    throttle_configure(r)
    yield r
    limitlion._redis, limitlion._testing = None, False


@pytest.fixture
def frozen(r, clock):
    """testing=True: time frozen through frozen_second/frozen_microsecond."""
    throttle_configure(r, testing=True)
    yield r
    limitlion._redis, limitlion._testing = None, False


def test_throttle_needs_configuring_first(r):
    limitlion._redis = None
    with pytest.raises(RuntimeError, match="Throttle is not configured"):
        throttle("test", 1, 1, 1, 1)
    throttle_configure(r)
    assert throttle("test", 5) == (True, 24, 0.0)  # 5 rps x burst 1 x window 5 = 25
    assert r.exists(KEY_FORMAT.format("test")) == 1  # LimitLion's key name
    limitlion._redis = None


def drain(check=None):
    """LimitLion's README loop: throttle('test', 5, 2, 8) until denied.
    Returns (calls allowed, tokens, sleep) of the last reply; ``check``
    asserts each allowed reply."""
    done = 0
    while True:
        allowed, tokens, sleep = throttle("test", 5, 2, 8)
        if not allowed:
            return done, tokens, sleep
        done += 1
        if check is not None:
            assert check(done, tokens, sleep), (done, tokens, sleep)


@pytest.mark.needs("clock")
def test_readme_loop(frozen):
    """LimitLion's README: throttle('test', 5, 2, 8) in a loop, sleeping when denied."""
    freeze(frozen, START)
    done, tokens, sleep = drain(lambda done, tokens, sleep: (tokens, sleep) == (80 - done, 0.0))
    assert (done, tokens) == (80, 0)
    assert sleep == 0.2  # the next token (LimitLion: the rest of the 8 s window)
    freeze(frozen, START, 199_999)
    assert throttle("test", 5, 2, 8)[0] is False
    freeze(frozen, START, 200_000)
    assert throttle("test", 5, 2, 8) == (True, 0, 0.0)


def test_readme_loop_on_the_real_clock(ll):
    start = time.monotonic()
    done, tokens, sleep = drain()
    elapsed = time.monotonic() - start
    # 80 tokens, plus at most what accrued at 5/s while the loop ran
    assert 80 <= done <= 80 + 5 * elapsed + 1
    assert tokens == 0 and 0 < sleep <= 0.2
    time.sleep(sleep)
    assert throttle("test", 5, 2, 8)[0] is True


@pytest.mark.needs("clock")
@pytest.mark.parametrize("rps, burst, window", GRID)
def test_bursting(frozen, rps, burst, window):
    model = Bucket(rps, burst, window)
    capacity = model.capacity
    freeze(frozen, START)
    assert throttle("test", rps, burst, window) == (True, capacity - 1, 0.0)
    model.call(START * 10**6, 1)
    # LimitLion refills a whole window at a time (here: always enough for a
    # full request); the module has accrued rps * 5.5 s by then.
    at = (START + window) * 10**6 + 500_000
    freeze(frozen, START + window, 500_000)
    allowed, tokens, sleep = throttle("test", rps, burst, window, capacity)
    assert (allowed, tokens) == model.call(at, capacity)
    assert (sleep == 0.0) is allowed
    at = (START + 2 * window) * 10**6 + 500_000
    freeze(frozen, START + 2 * window, 500_000)
    assert throttle("test", rps, burst, window)[:2] == model.call(at, 1)


@pytest.mark.parametrize("burst, window", [(b, w) for w in (1, 2, 5, 10) for b in (1, 2, 3.3, 10)])
def test_zero_rps(ll, burst, window):
    assert throttle("test", 0, burst, window) == (False, 0, window)


@pytest.mark.parametrize("rps, burst, window", GRID)
def test_request_all_tokens(ll, rps, burst, window):
    allowed, tokens, sleep = throttle("test", rps, burst, window, rps * burst * window)
    assert (allowed, tokens, sleep) == (True, 0, 0.0)


@pytest.mark.parametrize("rps, burst, window", GRID)
def test_request_too_many_tokens(ll, rps, burst, window):
    allowed, tokens, sleep = throttle("test", rps, burst, window, rps * burst * window + 1)
    assert allowed is False
    assert tokens == Bucket(rps, burst, window).capacity
    assert sleep == window  # it can never be allowed: sleep a window, as LimitLion would


def drain_to(name, rps, burst, window, level):
    """LimitLion's tests fake a bucket holding `level` tokens; here: take the rest."""
    capacity = Bucket(rps, burst, window).capacity
    if capacity > level:
        assert throttle(name, rps, burst, window, capacity - level)[0]


@pytest.mark.needs("clock")
@pytest.mark.parametrize("rps, burst, window", GRID)
def test_multiple_throttles(frozen, rps, burst, window):
    freeze(frozen, START, 4)
    drain_to("test1", rps, burst, window, 1)
    drain_to("test2", rps + 1, burst, window, 3)
    assert throttle("test1", rps, burst, window)[:2] == (True, 0)
    assert throttle("test1", rps, burst, window)[:2] == (False, 0)
    allowed, tokens, _ = throttle("test2", rps + 1, burst, window)
    assert (allowed, tokens) == (True, min(Bucket(rps + 1, burst, window).capacity, 3) - 1)
    assert throttle("test1", rps, burst, window)[:2] == (False, 0)


@pytest.mark.needs("clock")
@pytest.mark.parametrize("rps, burst, window", GRID)
def test_rate_limits(frozen, rps, burst, window):
    capacity = Bucket(rps, burst, window).capacity
    freeze(frozen, START, 4)
    drain_to("test", rps, burst, window, 2)
    assert throttle("test", rps, burst, window)[:2] == (True, min(capacity, 2) - 1)
    assert throttle("test", rps, burst, window)[:2] == (min(capacity, 2) - 1 > 0, 0)
    allowed, tokens, sleep = throttle("test", rps, burst, window)
    assert (allowed, tokens) == (False, 0)
    # The next token is 1/rps away, rounded up to the ms (LimitLion: the
    # rest of the window, window - 4 us).
    assert sleep == math.ceil(Fraction(1000) / Fraction(repr(rps))) / 1000
    # Coming back exactly after `sleep` is allowed, with what accrued since
    # the token (LimitLion: a whole window's tokens, ceil(rps * window) - 1).
    wake_us = START * 10**6 + 4 + round(sleep * 10**6)
    freeze(frozen, 0, wake_us)
    assert throttle("test", rps, burst, window)[:2] == (True, 0)


@pytest.mark.needs("clock")
def test_changing_settings(frozen):
    freeze(frozen, START)
    assert throttle("test", 5, 1, 5)[:2] == (True, 24)
    throttle_set("test", 10, 1, 5)
    # the knobs override the arguments; the tokens stay
    assert throttle("test", 100, 100, 100)[:2] == (True, 23)
    freeze(frozen, START + 6)
    throttle_set("test", 10, 1, 10)
    # 6 s at 10 rps filled the 50-token bucket; the new capacity (100) keeps
    # those 50 (LimitLion: 22, its windows restart)
    assert throttle("test", 5, 1, 5)[:2] == (True, 49)
    freeze(frozen, START + 11)
    # 5 s more at 10 rps (LimitLion: 99, a whole new window)
    assert throttle("test", 5, 1, 5)[:2] == (True, 98)


@pytest.mark.parametrize("value", ["a", -100, "-100"])
def test_setting_invalid_throttle_values(ll, value):
    with pytest.raises(ValueError) as e:
        throttle_set("test", value, 2, 6)
    assert str(e.value) in (
        "rps is not a valid decimal number",
        "rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)",
    )
    assert throttle_get("test") == [None] * 5  # nothing was set


def test_first_set_needs_every_knob(ll):
    with pytest.raises(KnobsMissingError) as e:
        throttle_set("test", rps=5)
    assert isinstance(e.value, IndexError) and isinstance(e.value, ValueError)
    assert "throttle:test" in str(e.value)
    throttle_set("test", 5, 2, 6)
    throttle_set("test", rps=7)  # later calls may change a subset
    assert throttle_get("test")[2:] == [b"7", b"2", b"6"]


@pytest.mark.needs("clock")
def test_get_throttle(frozen):
    freeze(frozen, START)
    throttle_set("test", 5, 2, 6)
    throttle("test", 5)
    tokens, refreshed, rps, burst, window = throttle_get("test")
    assert (int(tokens), int(refreshed), int(rps), int(burst), int(window)) == (59, START, 5, 2, 6)
    assert isinstance(tokens, bytes)  # strings as HGET returned them


def test_get_without_knobs_and_decoded(ll, server):
    throttle("test", 5, 1, 5)
    tokens, refreshed, rps, burst, window = throttle_get("test")
    assert (int(tokens), rps, burst, window) == (24, None, None, None)
    assert abs(int(refreshed) - int(ll.time()[0])) <= 1
    decoded = server.client(decode_responses=True)
    throttle_configure(decoded)
    assert throttle_get("test")[0] == "24"
    decoded.close()


def knobs_ttl_s(r, name):
    state = pairs(r.execute_command("THROTTLE.GET", KEY_FORMAT.format(name)))
    return int(state["knobs_ttl_ms"]) / 1000


def test_set_throttle(ll):
    throttle_set("test", 5, 2, 6)
    throttle("test", 5)
    tokens, _, rps, burst, window = throttle_get("test")
    assert knobs_ttl_s(ll, "test") > DEFAULT_KNOBS_TTL - 2  # 7 days
    assert (int(tokens), int(rps), int(burst), int(window)) == (59, 5, 2, 6)


def test_set_throttle_with_ttl(ll):
    throttle_set("test", 5, 2, 6, knobs_ttl=10)
    assert 9 < knobs_ttl_s(ll, "test") <= 10
    throttle("test", 5, knobs_ttl=0)  # accepted; the knobs' own TTL applies
    assert 9 < knobs_ttl_s(ll, "test") <= 10
    assert [int(v) for v in throttle_get("test")[2:]] == [5, 2, 6]
    assert int(throttle_get("test")[0]) == 59


def test_reset_and_delete(ll):
    throttle_set("test", 5, 1, 5)
    throttle("test", 5, 1, 5)
    throttle_reset("test")
    assert throttle_get("test")[2:] == [None, None, None]
    assert int(throttle_get("test")[0]) == 24  # the tokens stay
    ll.hset("throttle:test:knobs", "rps", 5)  # a LimitLion leftover
    throttle_delete("test")
    assert ll.exists("throttle:test", "throttle:test:knobs") == 0
    assert throttle_get("test") == [None] * 5


def test_throttle_wait(ll):
    throttle_func = throttle_wait("test", rps=123)
    assert throttle_func(requested_tokens=2) == (True, 613, 0.0)


def test_throttle_wait_waits_on_the_server(ll):
    func = throttle_wait("w", 20, 1, 0.05)  # 1 token, one every 50 ms
    start = time.monotonic()
    assert func()[0] and func()[0]
    assert time.monotonic() - start >= 0.05


def test_throttle_wait_longer_than_the_socket_timeout_asks_again(server):
    short = server.client(socket_timeout=1.2)  # each WAIT holds at most 0.2 s
    throttle_configure(short)
    func = throttle_wait("w", 2, 1, 0.5)  # 1 token, one every 500 ms
    start = time.monotonic()
    assert func()[0] and func()[0]
    assert time.monotonic() - start >= 0.5
    limitlion._redis = None
    short.close()


@pytest.mark.needs("clock")
def test_throttle_wait_with_max_wait(frozen):
    freeze(frozen, START)
    throttle_set("test", 1, 1, 1)
    throttle("test", 5)
    throttle_func = throttle_wait("test", rps=1, max_wait=0.1)
    start = time.monotonic()
    assert throttle_func() == (False, 0, 1.0)
    assert time.monotonic() - start < 1  # denied at once: the token is 1 s away, beyond max_wait


def test_throttle_wait_refuses_arguments_throttle_refuses(ll):
    with pytest.raises(TypeError):
        throttle_wait("test", 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError):
        throttle_wait("test", rps="x")()
    assert throttle_wait("test", rps=1)()[0]


def test_switches(ll):
    assert throttle("off", 0, 1, 3) == (False, 0, 3)
    assert throttle("on", -1) == (True, 1, 0.0)
    assert throttle("on", -1, requested_tokens=10**6) == (True, 1, 0.0)
    assert throttle("test", 1, 1, 1)[0]


def test_fractional_requested_tokens_round_up(ll):
    assert throttle("f", 1, 1, 10, 2.5) == (True, 7, 0.0)
    assert throttle("g", 2.2, 10, 5, 2.2 * 10 * 5) == (True, 0, 0.0)  # 110.00000000000001 is 110
    with pytest.raises(ValueError):
        throttle("f", 1, 1, 10, float("nan"))


def test_wrongtype_on_a_limitlion_hash(ll):
    ll.hset("throttle:old", mapping={"tokens": 3, "refreshed": START})
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        throttle("old", 5)
    throttle_delete("old")
    assert throttle("old", 5)[:2] == (True, 24)


@pytest.mark.needs("clock")
def test_testing_mode_needs_the_test_clock(server):
    plain = servers.Server()  # the module without test-clock yes
    try:
        c = plain.client()
        with pytest.raises(TestClockDisabled, match="test-clock"):
            throttle_configure(c, testing=True)
        throttle_configure(c)
        assert throttle("t", 1)[0]
        c.close()
    finally:
        limitlion._redis = None
        plain.stop()


@pytest.mark.needs("clock")
def test_testing_mode_without_frozen_keys_leaves_the_clock_alone(frozen, clock):
    clock.freeze(START)
    assert throttle("test", 1, 1, 1)[0]
    assert throttle("test", 1, 1, 1) == (False, 0, 1.0)  # frozen by the ThrottleClock
    clock.advance(1)
    assert throttle("test", 1, 1, 1)[0]
