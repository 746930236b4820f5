"""Pacer (sync): PERMIT, BLOCK, the slot context manager, the paced
decorator and the Permit type, against a real server.

Spacing is checked on the server's own times (valid_at), never on the
client's clock; waits are checked only as lower bounds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import redis

import servers
from redis_throttle import NEVER_MS, Limiter, Pacer, Permit, PermitRefused


def server_ms(r) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def test_permit_now_then_reserved_slots_then_none(r):
    pacer = Pacer(r, "p", interval=1000, max_waiting=2)  # one slot every 1000 s
    before = server_ms(r)
    now = pacer.permit()
    after = server_ms(r)
    assert now.time_to_wait_ms == 0 and now.time_to_wait == 0
    assert before <= now.valid_at_ms <= after + 1
    assert now.never_expires and now.expires_at is None and not now.expired()
    assert now.valid_at == datetime.fromtimestamp(now.valid_at_ms / 1000, timezone.utc).replace(
        microsecond=now.valid_at_ms % 1000 * 1000
    )
    first, second = pacer.permit(), pacer.permit()
    for n, p in enumerate((first, second), start=1):
        assert now.valid_at_ms + n * 1_000_000 <= p.valid_at_ms <= now.valid_at_ms + n * 1_000_000 + 1
        assert n * 1_000_000 - 1000 < p.time_to_wait_ms <= n * 1_000_000 + 1
        assert p.expires_at_ms == p.valid_at_ms + 100_000  # default grace: 10% of the interval
        assert p.expires_at == p.valid_at + timedelta(seconds=100)
        assert not p.never_expires and not p.expired()
        assert p.time_to_wait == p.time_to_wait_ms / 1000
    assert pacer.permit() is None  # two permits are waiting already


@pytest.mark.needs("never53")
def test_an_immediate_permit_never_expires_as_2_to_the_53_minus_1(r):
    permit = Pacer(r, "p", interval=1, max_waiting=0).permit()
    assert permit.expires_at_ms == NEVER_MS == 253402300799999 and permit.expires_at is None


def test_max_waiting_zero_gives_only_immediate_permits(r):
    pacer = Pacer(r, "p0", interval=1000, max_waiting=0)
    assert pacer.permit().time_to_wait_ms == 0
    assert pacer.permit() is None


def test_grace_and_fractional_intervals(r):
    pacer = Pacer(r, "g", interval=0.0125, max_waiting=5, grace=timedelta(milliseconds=500))
    assert pacer.interval == 0.0125 and "interval_ms=12.5" in repr(pacer)
    now = pacer.permit()
    slots = [pacer.permit() for _ in range(4)]
    times = [now.valid_at_ms] + [p.valid_at_ms for p in slots]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(12 <= g <= 14 for g in gaps) and 50 <= times[-1] - times[0] <= 51
    assert all(p.expires_at_ms == p.valid_at_ms + 500 for p in slots)


def test_sleep_and_expired_follow_the_reply(r):
    pacer = Pacer(r, "s", interval=0.05, max_waiting=1, grace=0.01)
    pacer.permit()
    permit = pacer.permit()
    assert 40 < permit.time_to_wait_ms <= 51
    assert not permit.expired()
    permit.sleep()
    assert time.monotonic() - permit.received >= permit.time_to_wait
    deadline = permit.expires_at
    assert permit.expired(now=deadline) is False
    assert permit.expired(now=deadline + timedelta(milliseconds=1)) is True
    time.sleep(0.02)  # past the 10 ms grace
    assert permit.expired()


def test_block_returns_when_the_slot_has_come(r, server):
    pacer = Pacer(r, "b", interval=0.1, max_waiting=3)
    first = pacer.permit()
    moves = servers.slot_moves([server])
    held = pacer.block(timeout=2)
    assert held.time_to_wait_ms == 0
    servers.assert_next_slot(held.valid_at_ms, first.valid_at_ms, 100, servers.slot_moves([server]) - moves)
    assert server_ms(r) >= held.valid_at_ms - 1  # released at its slot, never before
    forever = pacer.block()  # BLOCK 0: as long as the slot needs
    servers.assert_next_slot(forever.valid_at_ms, held.valid_at_ms, 100, servers.slot_moves([server]) - moves)


def test_block_refuses_a_slot_beyond_its_timeout_and_reserves_nothing(r):
    pacer = Pacer(r, "bt", interval=10, max_waiting=3)
    first = pacer.permit()
    assert pacer.block(timeout=0.05) is None
    nxt = pacer.permit()
    assert first.valid_at_ms + 10_000 <= nxt.valid_at_ms <= first.valid_at_ms + 10_001


def test_slot_is_a_fifo_queue_shared_by_every_thread(r):
    pacer = Pacer(r, "fifo", interval=0.03, max_waiting=100)
    slots, errors = [], []
    lock = threading.Lock()

    def worker(i):
        try:
            with pacer.slot(timeout=5) as permit:
                with lock:
                    slots.append((permit.valid_at_ms, i, permit.time_to_wait_ms))
        except Exception as e:  # collected: asserted in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(slots) == 8 and sorted(i for _, i, _ in slots) == list(range(8))
    assert all(wait == 0 for _, _, wait in slots)
    times = sorted(v for v, _, _ in slots)
    assert all(b - a >= 30 for a, b in zip(times, times[1:])), times


def test_slot_raises_when_there_is_no_permit(r):
    pacer = Pacer(r, "full", interval=1000, max_waiting=0)
    with pacer.slot() as permit:
        assert isinstance(permit, Permit)
    ran = []
    with pytest.raises(PermitRefused) as e:
        with pacer.slot(timeout=1):
            ran.append(1)
    assert ran == [] and e.value.key == "full"


def test_paced_decorator_spaces_calls(r):
    pacer = Pacer(r, "api", interval=0.04, max_waiting=10)
    seen = []

    @pacer.paced(timeout=2)
    def call_api(x):
        seen.append((server_ms(r), x))
        return x * 10

    before = server_ms(r)
    assert [call_api(i) for i in range(3)] == [0, 10, 20]
    assert [x for _, x in seen] == [0, 1, 2]
    # the third call's slot is two intervals after the first's, which came no
    # earlier than `before` (server ms, each rounded: 1 ms of slack)
    assert seen[2][0] - before >= 2 * 40 - 1
    refusing = Pacer(r, "api2", interval=1000, max_waiting=0)

    @refusing.paced()
    def once():
        return "ran"

    assert once() == "ran"
    with pytest.raises(PermitRefused):
        once()
    with pytest.raises(TypeError):

        @pacer.paced()
        async def not_for_sync():
            pass


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(interval=0, max_waiting=1), "interval_ms must be > 0 and <= 1e12 ms"),
        (dict(interval=0.0000001, max_waiting=1), "interval_ms has too many decimal places (at most 3)"),
        (dict(interval=1, max_waiting=-1), "max_waiting must be an integer >= 0"),
        (dict(interval=1, max_waiting=1, grace=-1), "GRACE must be an integer >= 0 and <= 31622400000 (one year)"),
    ],
)
def test_bad_arguments_raise_value_error_with_the_servers_message(r, kwargs, message):
    pacer = Pacer(r, "bad", **kwargs)
    with pytest.raises(ValueError) as e:
        pacer.permit()
    assert str(e.value) == message
    assert isinstance(e.value.__cause__, redis.ResponseError)


def test_bad_block_timeout_and_types(r):
    pacer = Pacer(r, "p", interval=1, max_waiting=1)
    with pytest.raises(ValueError) as e:
        pacer.block(timeout=-1)
    assert str(e.value) == "BLOCK must be an integer >= 0 and <= 31622400000 (one year)"
    with pytest.raises(TypeError):
        Pacer(r, "p", interval="1", max_waiting=1)
    with pytest.raises(TypeError):
        Pacer(r, "p", interval=1, max_waiting=1.5)
    assert pacer.permit().time_to_wait_ms == 0


def test_permit_and_throttle_keys_refuse_each_other_with_wrongtype(r):
    Limiter(r, "bucket", rps=1).allow()
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE") as e:
        Pacer(r, "bucket", interval=1, max_waiting=1).permit()
    assert not isinstance(e.value, ValueError)
    Pacer(r, "paced", interval=1, max_waiting=1).permit()
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        Limiter(r, "paced", rps=1).allow()


@pytest.mark.needs("clock")
def test_permits_on_the_frozen_clock_are_exact(r, clock):
    at = clock.freeze(datetime(2030, 1, 1, tzinfo=timezone.utc))
    pacer = Pacer(r, "exact", interval=0.25, max_waiting=2)
    now = pacer.permit()
    assert now.valid_at_ms == at // 1000 and now.valid_at == datetime(2030, 1, 1, tzinfo=timezone.utc)
    first = pacer.permit()
    assert (first.time_to_wait_ms, first.valid_at_ms, first.expires_at_ms) == (250, at // 1000 + 250, at // 1000 + 275)
    assert first.expired(now=clock.now()) is False
    clock.advance(0.275)
    assert first.expired(now=clock.now()) is False
    clock.advance(0.000001)
    assert first.expired(now=clock.now()) is True
    second = pacer.permit()  # first's slot has passed: one waiting permit (this one)
    assert second.valid_at_ms == at // 1000 + 500 and second.time_to_wait_ms == 225


@pytest.mark.needs("permit-unbounded")
def test_max_waiting_is_required_with_an_interval_and_none_means_no_bound(r):
    with pytest.raises(TypeError, match="max_waiting is required"):
        Pacer(r, "u", interval=1)
    with pytest.raises(TypeError, match="needs an interval"):
        Pacer(r, "u", max_waiting=3)
    unbounded = Pacer(r, "u", interval=1000, max_waiting=None)
    assert "unbounded" in repr(unbounded) and unbounded.max_waiting is None
    permits = [unbounded.permit() for _ in range(50)]  # PERMIT u 1000000: no count bound
    assert all(p is not None for p in permits)
    assert permits[-1].valid_at_ms - permits[0].valid_at_ms >= 49 * 1_000_000


@pytest.mark.needs("permit-settings")
def test_settings_override_every_caller_and_reset(r):
    ops = Pacer(r, "s")
    assert ops.uses_settings_only and ops.interval is None and repr(ops) == "Pacer('s', settings)"
    with pytest.raises(ValueError, match="^no settings on this key"):
        ops.permit()
    assert ops.get() is None
    with pytest.raises(ValueError, match="^the first PERMIT.SET on a key must give INTERVAL"):
        ops.set_settings(max_waiting=2)
    ops.set_settings(interval=0.25, max_waiting=2, ttl=60)
    state = ops.get()
    assert state.has_settings and state.source == "settings"
    assert state.interval_ms == 250 and state.interval == 0.25 and state.max_waiting == 2
    assert 0 < state.ttl_ms <= 60_000 and 0 < state.ttl <= 60
    caller = Pacer(r, "s", interval=1000, max_waiting=100)  # the settings win while they live
    now, first, second = caller.permit(), caller.permit(), ops.permit()
    assert now.valid_at_ms + 250 <= first.valid_at_ms <= now.valid_at_ms + 251
    assert second.valid_at_ms == first.valid_at_ms + 250
    assert caller.permit() is None  # two are waiting: the settings' bound
    state = ops.get()
    assert state.waiting == 2 and state.last_slot_ms == second.valid_at_ms
    ops.set_settings(interval=Decimal("0.0125"))  # a later SET keeps what it does not give
    assert ops.get().interval_ms == Decimal("12.5") and ops.get().max_waiting == 2
    ops.set_settings(max_waiting=-1)  # -1: no bound
    assert ops.get().max_waiting is None
    assert ops.reset_settings() is True and ops.reset_settings() is False
    state = ops.get()
    assert not state.has_settings and state.source == "last-call" and state.ttl_ms == -1 and state.ttl is None


@pytest.mark.needs("permit-settings")
def test_new_settings_respace_the_held_callers_at_once(r):
    pacer = Pacer(r, "respace", interval=1, max_waiting=None)
    first = pacer.permit()
    slots, errors = [], []

    def hold():
        try:
            slots.append(pacer.block(timeout=30).valid_at_ms)
        except Exception as e:  # asserted in the main thread
            errors.append(e)

    threads = [threading.Thread(target=hold) for _ in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while sum("b" in c["flags"] for c in r.client_list()) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum("b" in c["flags"] for c in r.client_list()) == 10  # all ten held, 1 s apart
    pacer.set_settings(interval=0.02)
    after = server_ms(r)
    for t in threads:
        t.join(30)
    assert errors == []
    slots.sort()
    assert all(b - a >= 20 for a, b in zip(slots, slots[1:]))
    assert slots[0] >= first.valid_at_ms + 20
    assert all(s <= after + (k + 1) * 20 + 1 for k, s in enumerate(slots)), (after, slots)
