"""Typed replies of the module's commands.

Every result keeps the raw integers the server sent (``*_ms`` fields, exact)
and offers them as float seconds and datetimes too. Times (``valid_at``,
``expires_at``) are on the server's clock, in UTC.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, Optional, Tuple

from ._core import pairs, text

#: PERMIT's ``expires_at_ms`` for a permit that never expires:
#: 9999-12-31T23:59:59.999Z in Unix ms (read exactly by every client).
NEVER_MS = 253_402_300_799_999
#: Also read as "never": what earlier module versions sent (2**53 - 1, i64::MAX).
_NEVER_VALUES = (NEVER_MS, 2**53 - 1, 2**63 - 1)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def datetime_from_ms(ms: int) -> datetime:
    """Unix milliseconds as an aware UTC datetime (exact)."""
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_from_us(us: int) -> datetime:
    """Unix microseconds as an aware UTC datetime (exact)."""
    return _EPOCH + timedelta(microseconds=us)


def _seconds(ms: int) -> float:
    return ms / 1000


@dataclass(frozen=True)
class ThrottleResult:
    """The reply of THROTTLE and THROTTLE.PEEK.

    ``bool(result)`` is ``result.allowed``.
    """

    allowed: bool
    #: whole tokens left after this call (-1 under ``rps -1``, "allow all")
    remaining: int
    #: 0 when allowed; else ms until a call of the same cost would be allowed
    #: (rounded up); -1 when the cost exceeds the limit (it never will be)
    retry_after_ms: int
    #: ms until the bucket is full again (rounded up)
    reset_after_ms: int
    #: the bucket's capacity (0 under ``rps 0``, -1 under ``rps -1``)
    limit: int

    @classmethod
    def from_reply(cls, reply: Any) -> "ThrottleResult":
        allowed, remaining, retry_after_ms, reset_after_ms, limit = reply
        return cls(bool(allowed), int(remaining), int(retry_after_ms), int(reset_after_ms), int(limit))

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def retry_after(self) -> float:
        """Seconds until a call of the same cost would be allowed;
        ``math.inf`` when it never will be (cost above the limit)."""
        return math.inf if self.retry_after_ms < 0 else _seconds(self.retry_after_ms)

    @property
    def reset_after(self) -> float:
        """Seconds until the bucket is full again."""
        return _seconds(self.reset_after_ms)

    @property
    def unlimited(self) -> bool:
        """True under ``rps -1`` (every call allowed, nothing counted)."""
        return self.limit < 0

    def headers(self) -> Dict[str, str]:
        """The rate-limit headers an HTTP service sends with this result.

        ``RateLimit-Limit`` (capacity), ``RateLimit-Remaining`` (tokens left)
        and ``RateLimit-Reset`` (whole seconds until the bucket is full,
        rounded up), as in the IETF httpapi RateLimit header drafts; plus
        ``Retry-After`` (whole seconds, rounded up, at least 1) on a denial
        that a retry can cure. A denial that can never succeed (cost above
        the limit) has no ``Retry-After``: answer it with an error rather
        than 429. Under ``rps -1`` (no limit) there are no headers.
        """
        if self.unlimited:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(-(-self.reset_after_ms // 1000)),
        }
        if not self.allowed and self.retry_after_ms >= 0:
            headers["Retry-After"] = str(max(1, -(-self.retry_after_ms // 1000)))
        return headers


@dataclass(frozen=True)
class AllResult:
    """The reply of THROTTLE.ALL (several limits, all or nothing)."""

    allowed: bool
    #: 0-based position of the first limit that refused; None when allowed
    denied_by: Optional[int]
    #: longest wait among the limits that refused (ms, rounded up); 0 when
    #: allowed; -1 when one of them can never allow this cost
    retry_after_ms: int
    #: each limit's whole tokens (after the call when allowed, as they
    #: stand when denied), in the order given
    remaining: Tuple[int, ...]

    @classmethod
    def from_reply(cls, reply: Any) -> "AllResult":
        allowed, denied_by, retry_after_ms, remaining = reply
        return cls(
            bool(allowed),
            int(denied_by) - 1 if int(denied_by) > 0 else None,
            int(retry_after_ms),
            tuple(int(r) for r in remaining),
        )

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def retry_after(self) -> float:
        """Seconds to wait before retrying; ``math.inf`` if it never succeeds."""
        return math.inf if self.retry_after_ms < 0 else _seconds(self.retry_after_ms)


@dataclass(frozen=True)
class Permit:
    """A PERMIT reply: a slot on a paced stream.

    ``valid_at`` is when the caller may act, ``expires_at`` when the slot
    should no longer be used (advisory). An immediate permit never expires:
    its ``expires_at_ms`` is :data:`NEVER_MS` and ``expires_at`` is None.
    """

    #: ms the caller should wait before acting (0 for an immediate permit,
    #: and for a permit answered by ``BLOCK`` when its slot came)
    time_to_wait_ms: int
    #: the slot, Unix ms on the server's clock (rounded up: never early)
    valid_at_ms: int
    #: end of the slot's grace, Unix ms; NEVER_MS for "never"
    expires_at_ms: int
    #: time.monotonic() when the reply arrived (sleep() and expired() count from it)
    received: float = field(default_factory=time.monotonic, compare=False, repr=False)

    @classmethod
    def from_reply(cls, reply: Any) -> Optional["Permit"]:
        if reply is None:
            return None
        wait_ms, valid_at_ms, expires_at_ms = reply
        return cls(int(wait_ms), int(valid_at_ms), int(expires_at_ms))

    @property
    def time_to_wait(self) -> float:
        return _seconds(self.time_to_wait_ms)

    @property
    def valid_at(self) -> datetime:
        return datetime_from_ms(self.valid_at_ms)

    @property
    def never_expires(self) -> bool:
        return self.expires_at_ms in _NEVER_VALUES

    @property
    def expires_at(self) -> Optional[datetime]:
        """None when the permit never expires (an immediate permit)."""
        return None if self.never_expires else datetime_from_ms(self.expires_at_ms)

    def _left(self) -> float:
        return self.time_to_wait - (time.monotonic() - self.received)

    def sleep(self) -> None:
        """Sleeps until the slot (time_to_wait from when the reply arrived)."""
        left = self._left()
        if left > 0:
            time.sleep(left)

    async def sleep_async(self) -> None:
        """``await`` until the slot."""
        left = self._left()
        if left > 0:
            await asyncio.sleep(left)

    def expired(self, now: Optional[datetime] = None) -> bool:
        """Whether the slot's grace is over.

        Without ``now``, measured on this process's monotonic clock from when
        the reply arrived (the server's "now" at reply time is
        ``valid_at_ms - time_to_wait_ms``). Pass ``now`` (an aware datetime on
        the server's clock, e.g. ``ThrottleClock.now()`` in tests) to compare
        with ``expires_at`` directly.
        """
        if self.never_expires:
            return False
        if now is not None:
            return now > datetime_from_ms(self.expires_at_ms)
        server_now_ms = self.valid_at_ms - self.time_to_wait_ms
        deadline = self.received + _seconds(self.expires_at_ms - server_now_ms)
        return time.monotonic() > deadline


def _fraction(value: Any) -> Optional[Fraction]:
    return None if value is None else Fraction(text(value))


@dataclass(frozen=True)
class LimiterState:
    """THROTTLE.GET: a limiter's state now."""

    #: whole tokens now (-1 under ``rps -1``)
    tokens: int
    #: capacity (0 or -1 under a switch)
    limit: int
    #: effective rate, exact (the server's decimal string, or num/den)
    rps: Fraction
    #: effective burst and window; None when ``source`` is ``last-call`` on
    #: module builds that keep only rps and limit for a last call
    burst: Optional[Fraction]
    window: Optional[Fraction]
    #: "knobs" (THROTTLE.SET) or "last-call" (the last THROTTLE's arguments)
    source: str
    #: the knobs' remaining life in ms; -1 without knobs
    knobs_ttl_ms: int
    #: ms until the bucket is full again
    reset_after_ms: int

    @classmethod
    def from_reply(cls, reply: Any) -> Optional["LimiterState"]:
        if reply is None:
            return None
        m = pairs(reply)
        return cls(
            tokens=int(m["tokens"]),
            limit=int(m["limit"]),
            rps=Fraction(text(m["rps"])),
            burst=_fraction(m.get("burst")),
            window=_fraction(m.get("window")),
            source=text(m["source"]),
            knobs_ttl_ms=int(m["knobs_ttl_ms"]),
            reset_after_ms=int(m["reset_after_ms"]),
        )

    @property
    def has_knobs(self) -> bool:
        return self.source == "knobs"

    @property
    def knobs_ttl(self) -> Optional[float]:
        """Seconds the knobs still live; None without knobs."""
        return None if self.knobs_ttl_ms < 0 else _seconds(self.knobs_ttl_ms)

    @property
    def reset_after(self) -> float:
        return _seconds(self.reset_after_ms)


@dataclass(frozen=True)
class PermitState:
    """PERMIT.GET: a permit stream as it stands."""

    #: the interval in force, ms (exact: µs resolution): the settings',
    #: else the last caller's
    interval_ms: Decimal
    #: the settings' bound; None for no bound or no settings (the server's -1)
    max_waiting: Optional[int]
    #: "settings" (live PERMIT.SET settings) or "last-call"
    source: str
    #: the settings' remaining life in ms; -1 without settings
    ttl_ms: int
    #: permits granted and waiting for their slot
    waiting: int
    #: the last slot granted, Unix ms (rounded up)
    last_slot_ms: int
    #: every field of the reply, as sent (str keys)
    fields: Dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_reply(cls, reply: Any) -> Optional["PermitState"]:
        if reply is None:
            return None
        m = pairs(reply)
        max_waiting = int(m["max_waiting"])
        return cls(
            interval_ms=Decimal(text(m["interval_ms"])),
            max_waiting=None if max_waiting < 0 else max_waiting,
            source=text(m["source"]),
            ttl_ms=int(m["ttl_ms"]),
            waiting=int(m["waiting"]),
            last_slot_ms=int(m["last_slot_ms"]),
            fields=m,
        )

    @property
    def has_settings(self) -> bool:
        return self.source == "settings"

    @property
    def interval(self) -> float:
        """Seconds between slots."""
        return float(self.interval_ms) / 1000

    @property
    def ttl(self) -> Optional[float]:
        """Seconds the settings still live; None without settings."""
        return None if self.ttl_ms < 0 else _seconds(self.ttl_ms)

    @property
    def last_slot(self) -> datetime:
        return datetime_from_ms(self.last_slot_ms)


@dataclass(frozen=True)
class LeaseState:
    """LEASE.PEEK: a concurrency limit as it stands (the call writes nothing).

    A missing key reads ``in_use=0, limit=0, waiting=0`` and no expiry.
    """

    #: places taken by live leases (their costs added up)
    in_use: int
    #: the limit the last LEASE on the key set (0 for a missing key)
    limit: int
    #: callers the server holds, waiting for a place (``BLOCK``)
    waiting: int
    #: the earliest expiry of a live lease, Unix ms; -1 when none
    next_expiry_ms: int

    @classmethod
    def from_reply(cls, reply: Any) -> "LeaseState":
        in_use, limit, waiting, next_expiry_ms = reply
        return cls(int(in_use), int(limit), int(waiting), int(next_expiry_ms))

    @property
    def available(self) -> int:
        """Places free now (0 when a lowered limit left more in use)."""
        return max(0, self.limit - self.in_use)

    @property
    def next_expiry(self) -> Optional[datetime]:
        """When the first live lease expires (UTC, server's clock); None when none."""
        return None if self.next_expiry_ms < 0 else datetime_from_ms(self.next_expiry_ms)
