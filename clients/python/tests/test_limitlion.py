"""redis_throttle.limitlion, the LimitLion drop-in (THROTTLE.LIMITLION).

LimitLion's own suite runs on it in scripts/limitlion.sh, and
test_limitlion_differential.py compares it with LimitLion call by call;
these tests pin the behaviours a LimitLion user relies on, by name, with
the exact values LimitLion's algorithm gives (worked out in the comments).
Each test calls the module, so without it every test fails.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
from types import ModuleType
from typing import Iterator

import pytest
import redis

import redis_throttle.limitlion as limitlion
import servers
from redis_throttle.limitlion.running_counter import BucketCount, RunningCounter
from redis_throttle.limitlion.throttle import DEFAULT_KNOBS_TTL, KEY_FORMAT
from test_limitlion_differential import limitlion as original  # noqa: F401 (fixture)

START = 1_800_000_000  # a whole Unix second


@pytest.fixture
def ll(r: redis.Redis) -> Iterator[redis.Redis]:
    """The drop-in configured as LimitLion's tests configure it."""
    limitlion.throttle_configure(r, testing=True)
    yield r
    limitlion.throttle_configure(None)


def freeze(r: redis.Redis, second: int, microsecond: int = 0) -> None:
    r.mset({"frozen_second": second, "frozen_microsecond": microsecond})


def test_not_configured(r: redis.Redis) -> None:
    limitlion.throttle_configure(None)
    for call in (
        lambda: limitlion.throttle("test", 1, 1, 1, 1),
        lambda: limitlion.throttle_set("test", 1, 1, 1),
        lambda: limitlion.throttle_reset("test"),
        lambda: limitlion.throttle_delete("test"),
    ):
        with pytest.raises(RuntimeError, match="Throttle is not configured"):
            call()
    limitlion.throttle_configure(r)
    assert limitlion.throttle("test", 5) == (True, 24, pytest.approx(5, abs=1))
    limitlion.throttle_configure(None)


def _params(f: object) -> list:
    return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]  # type: ignore[arg-type]


def test_same_layout_and_signatures_as_limitlion(original: ModuleType, ll: redis.Redis) -> None:
    # as in LimitLion, the package's `throttle` is the function, which hides
    # the submodule of that name
    ours_throttle = importlib.import_module("redis_throttle.limitlion.throttle")
    theirs = sys.modules["limitlion.throttle"]
    assert set(limitlion.__all__) == set(original.__all__)
    for name in original.__all__ + ["KEY_FORMAT", "DEFAULT_KNOBS_TTL"]:
        ours, orig = getattr(limitlion, name), getattr(original, name)
        if callable(orig):
            assert _params(ours) == _params(orig), name
        else:
            assert ours == orig, name
    for name in ("throttle", "throttle_wait", "throttle_configure", "throttle_set", "throttle_get"):
        assert _params(getattr(ours_throttle, name)) == _params(getattr(theirs, name)), name
    assert (KEY_FORMAT, DEFAULT_KNOBS_TTL) == (theirs.KEY_FORMAT, theirs.DEFAULT_KNOBS_TTL)
    theirs_rc = sys.modules["limitlion.running_counter"]
    for name, member in inspect.getmembers(theirs_rc.RunningCounter, inspect.isfunction):
        assert _params(getattr(RunningCounter, name)) == _params(member), name
    assert BucketCount._fields == theirs_rc.BucketCount._fields
    freeze(ll, START)
    assert limitlion.throttle("layout", 1, 1, 1) == (True, 0, 1.0)


def test_readme_loop(ll: redis.Redis) -> None:
    """throttle('test', 5, 2, 8): 80 tokens; the 81st call waits for the
    next 8 s window, which brings ceil(5 × 8) = 40."""
    freeze(ll, START, 250_000)
    for n in range(80):
        assert limitlion.throttle("test", 5, 2, 8) == (True, 79 - n, 7.75)
    assert limitlion.throttle("test", 5, 2, 8) == (False, 0, 7.75)
    freeze(ll, START + 7, 999_999)
    assert limitlion.throttle("test", 5, 2, 8) == (False, 0, 0.000001)
    freeze(ll, START + 8)
    assert limitlion.throttle("test", 5, 2, 8) == (True, 39, 8.0)


def test_whole_windows_refill(ll: redis.Redis) -> None:
    """rps 0.5, window 1: ceil(0.5 × 1) = 1 token every second, so 10
    calls in 10 seconds all pass (a continuous 0.5 rps would allow 5)."""
    for s in range(10):
        freeze(ll, START + s, 500_000)
        assert limitlion.throttle("half", 0.5, 1, 1) == (True, 0, 0.5)
    assert limitlion.throttle("half", 0.5, 1, 1) == (False, 0, 0.5)


def test_hand_edited_knobs_apply(ll: redis.Redis) -> None:
    freeze(ll, START)
    ll.hset("throttle:x:knobs", mapping={"rps": 1, "burst": 1, "window": 1})
    results = [limitlion.throttle("x", 100, 1, 1)[0] for _ in range(5)]
    assert results == [True, False, False, False, False]
    assert ll.ttl("throttle:x:knobs") > DEFAULT_KNOBS_TTL - 10  # each call extends it


def test_existing_limitlion_bucket_is_used(ll: redis.Redis) -> None:
    """A bucket LimitLion wrote (or a test faked with HMSET) carries on."""
    freeze(ll, START, 4)
    ll.hset("throttle:old", mapping={"tokens": 3, "refreshed": START})
    assert limitlion.throttle("old", 5, 1, 5) == (True, 2, 4.999996)
    assert ll.hgetall("throttle:old") == {b"tokens": b"2", b"refreshed": str(START).encode()}
    # floor(burst × window × 2) = 10 s (the bound leaves 2 s for a loaded machine)
    assert 8_000 < ll.pttl("throttle:old") <= 10_000


def test_knobs_ttl_zero_leaves_the_ttl_alone(ll: redis.Redis) -> None:
    freeze(ll, START)
    limitlion.throttle_set("t", 5, 2, 6, knobs_ttl=100)
    assert limitlion.throttle("t", 5, knobs_ttl=0) == (True, 59, 6.0)
    assert 90 < ll.ttl("throttle:t:knobs") <= 100
    limitlion.throttle("t", 5)
    assert ll.ttl("throttle:t:knobs") > DEFAULT_KNOBS_TTL - 10


def test_fractional_tokens_are_kept(ll: redis.Redis) -> None:
    freeze(ll, START)
    assert limitlion.throttle("f", 5, 1, 5, 1.5) == (True, 23, 5.0)
    assert ll.hget("throttle:f", "tokens") == b"23.5"
    assert limitlion.throttle("f", 5, 1, 5, 23.5)[:2] == (True, 0)
    assert limitlion.throttle("f", 5, 1, 5, 0.5)[:2] == (False, 0)


def test_switches(ll: redis.Redis) -> None:
    assert limitlion.throttle("off", 0, 1, 3) == (False, 0, 3.0)
    assert limitlion.throttle("on", -1, requested_tokens=10**6) == (True, 1, 0.0)
    assert ll.exists("throttle:off", "throttle:on") == 0  # nothing stored


def test_validation_as_limitlion(ll: redis.Redis) -> None:
    for value in ["a", -100, "-100"]:
        with pytest.raises(ValueError) as e:
            limitlion.throttle_set("test", value, 2, 6)
        assert str(e.value) == (
            f'"{value}" is not a valid throttle value. Throttle values must be positive floats.'
        )
    with pytest.raises(IndexError, match="Throttle knob throttle:test:knobs doesn't exist or is invalid"):
        limitlion.throttle_set("test", rps=5)
    limitlion.throttle_set("test", 5, 2, 6)
    limitlion.throttle_set("test", rps=7)  # the others exist now
    freeze(ll, START)
    limitlion.throttle("test", 1)
    assert limitlion.throttle_get("test") == [b"83", str(START).encode(), b"7", b"2", b"6"]


def test_bad_knobs_raise_after_the_knobs_ttl(ll: redis.Redis) -> None:
    """As LimitLion's script: the knobs get their TTL, then `rps` is not a
    number and the call fails."""
    freeze(ll, START)
    ll.hset("throttle:bad:knobs", mapping={"rps": "fast", "burst": 1, "window": 1})
    with pytest.raises(redis.ResponseError):
        limitlion.throttle("bad", 1)
    assert ll.ttl("throttle:bad:knobs") > DEFAULT_KNOBS_TTL - 10
    assert ll.exists("throttle:bad") == 0


def test_a_bucket_of_another_type(ll: redis.Redis) -> None:
    ll.set("throttle:str", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        limitlion.throttle("str", 1)


def test_throttle_wait_sleeps_and_retries(r: redis.Redis) -> None:
    """On the server clock: the second call waits for the next 1 s window."""
    limitlion.throttle_configure(r)
    try:
        assert limitlion.throttle("w", 1, 1, 1)[0]
        first = int(r.hget("throttle:w", "refreshed"))
        allowed, tokens, _sleep = limitlion.throttle_wait("w", 1, 1, 1)()
        assert (allowed, tokens) == (True, 0)
        assert r.time()[0] >= first + 1
        assert int(r.hget("throttle:w", "refreshed")) >= first + 1
    finally:
        limitlion.throttle_configure(None)


def test_throttle_wait_gives_up_after_max_wait(ll: redis.Redis) -> None:
    freeze(ll, START)  # frozen: the window never ends
    limitlion.throttle_set("m", 1, 1, 1)
    limitlion.throttle("m", 5)
    calls_before = _calls(ll)
    start = time.monotonic()
    assert limitlion.throttle_wait("m", rps=1, max_wait=0.1)() == (False, 0, 1.0)
    assert time.monotonic() - start >= 0.1
    assert _calls(ll) - calls_before == 2  # asked, slept the 1 s it said, asked again


def _calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_throttle.limitlion", {}).get("calls", 0))


def test_testing_mode_needs_no_test_clock() -> None:
    plain_module = servers.Server()  # the module, without test-clock yes
    c = plain_module.client()
    try:
        limitlion.throttle_configure(c, testing=True)
        freeze(c, START, 600_000)
        assert limitlion.throttle("t", 1, 1, 1) == (True, 0, 0.4)
        c.delete("frozen_second")  # back to the server clock
        allowed, tokens, sleep = limitlion.throttle("t2", 1, 1, 1)
        assert (allowed, tokens) == (True, 0) and 0 < sleep <= 1
        assert abs(int(c.hget("throttle:t2", "refreshed")) - c.time()[0]) <= 1
    finally:
        limitlion.throttle_configure(None)
        c.close()
        plain_module.stop()


def test_frozen_keys_belong_to_their_database(server: servers.Server, r: redis.Redis) -> None:
    db1 = server.client(db=1)
    try:
        freeze(db1, START)
        limitlion.throttle_configure(r, testing=True)
        limitlion.throttle("t", 1, 1, 1)
        assert int(r.hget("throttle:t", "refreshed")) != START  # db 0 has no frozen keys
        limitlion.throttle_configure(db1, testing=True)
        limitlion.throttle("t", 1, 1, 1)
        assert int(db1.hget("throttle:t", "refreshed")) == START
    finally:
        limitlion.throttle_configure(None)
        db1.close()


def test_cluster_with_a_hash_tag(rc: object) -> None:
    """Bucket and knobs are two keys: in a cluster the name needs a hash tag
    (as LimitLion's script needs), `{user7}` -> `throttle:{user7}` and
    `throttle:{user7}:knobs`."""
    limitlion.throttle_configure(rc)
    try:
        assert limitlion.throttle("{user7}", 1, 1, 60, 60)[:2] == (True, 0)
        assert limitlion.throttle("{user7}", 1, 1, 60)[:2] == (False, 0)  # until the next minute
        limitlion.throttle_set("{user7}", 5, 1, 60)
        assert limitlion.throttle_get("{user7}")[2:] == [b"5", b"1", b"60"]
        limitlion.throttle_delete("{user7}")
        assert limitlion.throttle_get("{user7}") == [None] * 5
    finally:
        limitlion.throttle_configure(None)
