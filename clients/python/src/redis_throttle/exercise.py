"""The distributed throttle exercise's permit API, backed by PERMIT.

The exercise (trentonstrong/distributed-throttle-exercise) throttles a
function with a decorator and hands out permits with ``reserve_permit``.
This module has both, with the exercise's names, arguments and return
values; only the import changes::

    from redis_throttle.exercise import redis_throttle

- ``redis_throttle(redis, min_interval, max_reserved_permits=0, ...)``:
  the decorated function runs once its permit is valid, at least
  ``min_interval`` seconds after the previous permit of every worker that
  shares the key; it returns None instead of running when no permit comes
  (``max_reserved_permits`` are already waiting) or when the permit expired
  while the worker slept.
- ``reserve_permit(redis, min_interval, max_reserved_permits, ...)`` with
  ``min_interval`` in **ms**: a :class:`Permit` or None.

:class:`Permit` is the exercise's ``(time_to_wait_ms, expires_at,
valid_at)``, integers in ms, in that order. ``valid_at`` is the slot on
the server's clock; ``expires_at`` is on this process's clock, as the
exercise computes it (``local_time_ms() + time_to_wait_ms`` plus the
grace), so ``local_time_ms() > permit.expires_at`` is the exercise's expiry
check; an immediate permit never expires: ``expires_at`` is
:data:`POSITIVE_HORIZON` (2**63 - 1).

What PERMIT changes (see the module's README, PERMIT): the decision is one
atomic command on the server's clock, so there is no WATCH transaction to
retry (``max_transaction_retries`` is accepted and unused), a fresh key
gives an immediate permit, and at most ``max_reserved_permits`` permits
wait at once (the exercise let one more through).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, NamedTuple, Optional, TypeVar, Union

from ._core import Seconds, call, int_arg, seconds_to_ms_text

__all__ = [
    "DEFAULT_KEY",
    "POSITIVE_HORIZON",
    "Permit",
    "local_time_ms",
    "redis_throttle",
    "redis_time_to_ms",
    "reserve_permit",
]

#: The PERMIT key every throttle uses unless given ``key=`` (the exercise
#: has one global key too).
DEFAULT_KEY = "REDIS_THROTTLE_PERMITS"
#: ``expires_at`` of a permit that never expires (the exercise's value).
POSITIVE_HORIZON = 0x7FFF_FFFF_FFFF_FFFF

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class Permit(NamedTuple):
    """The exercise's permit: integers in ms."""

    #: how long to sleep before acting (0: act now)
    time_to_wait_ms: int
    #: this process's clock (epoch ms) after which the permit should not be
    #: used; POSITIVE_HORIZON for never
    expires_at: int
    #: the slot, on the server's clock (epoch ms)
    valid_at: int


def local_time_ms() -> int:
    """This process's wall clock in epoch ms (the exercise's)."""
    return round(time.time() * 1_000)


def redis_time_to_ms(redis_time: Any) -> int:
    """A ``TIME`` reply ``(seconds, microseconds)`` in ms (the exercise's)."""
    seconds, microseconds = redis_time
    return int(seconds) * 1_000 + int(microseconds) // 1_000


def _interval_ms_text(min_interval_ms: Union[int, float, Decimal]) -> str:
    """ms as the server reads them; floats (``0.3 * 1_000``) to the µs."""
    if isinstance(min_interval_ms, bool) or not isinstance(min_interval_ms, (int, float, Decimal)):
        raise TypeError(f"min_interval must be a number of ms, not {type(min_interval_ms).__name__}")
    if isinstance(min_interval_ms, float):
        if not math.isfinite(min_interval_ms):
            raise ValueError("min_interval must be a finite number of ms")
        min_interval_ms = round(min_interval_ms, 3)
    try:
        d = Decimal(repr(min_interval_ms) if isinstance(min_interval_ms, float) else min_interval_ms)
    except InvalidOperation:  # pragma: no cover - numbers always convert
        raise ValueError(f"min_interval {min_interval_ms!r} is not a number") from None
    return format(d.normalize(), "f")


def _permit(reply: Any) -> Optional[Permit]:
    if reply is None:
        return None
    local_now = local_time_ms()
    wait_ms, valid_at_ms, expires_at_ms = (int(x) for x in reply)
    if wait_ms == 0:
        return Permit(time_to_wait_ms=0, expires_at=POSITIVE_HORIZON, valid_at=valid_at_ms)
    grace_ms = expires_at_ms - valid_at_ms
    return Permit(time_to_wait_ms=wait_ms, expires_at=local_now + wait_ms + grace_ms, valid_at=valid_at_ms)


def reserve_permit(
    redis: Any,
    min_interval: Union[int, float, Decimal],
    max_reserved_permits: int,
    max_transaction_retries: int = 3,
    *,
    key: Union[str, bytes] = DEFAULT_KEY,
    grace_ms: Optional[int] = None,
) -> Optional[Permit]:
    """``PERMIT key min_interval max_reserved_permits``: a permit now
    (``time_to_wait_ms`` 0), a reserved later one, or None when
    ``max_reserved_permits`` permits are already waiting.

    :param redis: a sync ``redis.Redis`` or ``RedisCluster``
    :param min_interval: **ms** between permits (µs resolution; a float is
        rounded to the µs)
    :param max_transaction_retries: unused (PERMIT is atomic)
    :param grace_ms: how long a reserved permit stays usable after its slot;
        default the module's (10% of the interval, as the exercise's slop)
    """
    int_arg(max_reserved_permits, "max_reserved_permits")
    int_arg(max_transaction_retries, "max_transaction_retries")
    grace = () if grace_ms is None else ("GRACE", int_arg(grace_ms, "grace_ms"))
    reply = call(redis, "PERMIT", key, _interval_ms_text(min_interval), max_reserved_permits, *grace)
    return _permit(reply)


def redis_throttle(
    redis: Any,
    min_interval: Seconds,
    max_reserved_permits: int = 0,
    max_transaction_retries: int = 3,
    *,
    key: Union[str, bytes] = DEFAULT_KEY,
    grace: Optional[Seconds] = None,
) -> Callable[[F], F]:
    """Decorator: each call takes a permit (``min_interval`` **seconds**
    apart, at most ``max_reserved_permits`` waiting), sleeps until it is
    valid, and runs the function; returns None without running it when no
    permit comes or the permit expired while sleeping. Logs each permit
    (INFO, "Received permit: ...") and each expired one (WARNING), as the
    exercise does."""
    interval_ms = Decimal(seconds_to_ms_text(min_interval, "min_interval"))
    grace_ms = None
    if grace is not None:
        grace_ms = int((Decimal(seconds_to_ms_text(grace, "grace"))).to_integral_value(rounding="ROUND_CEILING"))
    int_arg(max_reserved_permits, "max_reserved_permits")

    def decorator(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            permit = reserve_permit(
                redis, interval_ms, max_reserved_permits, max_transaction_retries, key=key, grace_ms=grace_ms
            )
            log.info("Received permit: %s", permit)
            if permit is None:
                return None
            if permit.time_to_wait_ms > 0:
                time.sleep(permit.time_to_wait_ms / 1e3)
                if local_time_ms() > permit.expires_at:
                    log.warning("Permit expired: %s", permit)
                    return None
            return f(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
