"""THROTTLE with LimitLion's arguments: LimitLion 1.x's function names and
signatures on the module's own token bucket (``THROTTLE``), not LimitLion's
algorithm or keys.

For LimitLion's behaviour (its whole-window refill, its hashes, its
answers to the microsecond) use :mod:`redis_throttle.limitlion`, the
drop-in. This module is for code that wants THROTTLE's continuous refill,
one typed key and waiting on the server, while keeping LimitLion's call
shape::

    from redis_throttle.limitlion_args import throttle, throttle_configure

Same names, signatures and return types as LimitLion 1.1 (``throttle``,
``throttle_wait``, ``throttle_configure``, ``throttle_set``,
``throttle_get``, ``throttle_reset``, ``throttle_delete`` and the
``KEY_FORMAT`` / ``*_DEFAULT`` constants) and the key name
``throttle:<name>`` (holding a THROTTLE key, not LimitLion's hash). Each
call is one THROTTLE command. Where it differs from LimitLion:

- **Refill.** LimitLion adds tokens in whole windows ("buckets start and end
  on whole seconds"); the module accrues them continuously at ``rps``. A
  drained bucket gets its next token after ``1/rps`` seconds instead of at
  the next window boundary, and ``sleep`` is exactly that wait (rounded up
  to the ms) rather than the rest of the window.
- **Knobs live inside the one key** ``throttle:<name>`` (THROTTLE.SET), not
  in a ``throttle:<name>:knobs`` hash. Their life is set by
  ``throttle_set(..., knobs_ttl=...)`` (THROTTLE.SET's TTL; default the
  module's ``knobs-ttl``, 7 days, LimitLion's default) and every
  ``throttle()`` call extends it by that TTL. ``throttle()``'s own
  ``knobs_ttl`` argument is accepted and not used; knobs that never expire
  (``knobs_ttl=0``) do not exist (the longest TTL is ten years).
- **Existing LimitLion keys.** ``throttle:<name>`` held a hash; the module
  answers WRONGTYPE on it until it expires (LimitLion gave it a TTL of
  2 x burst x window seconds) or you delete it. Switch every process at
  once.
- ``throttle()``'s ``sleep`` is 0.0 when allowed. When ``requested_tokens``
  exceeds the capacity (it can never be allowed) it is the window.
  A fractional ``requested_tokens`` is rounded up to whole tokens (after
  rounding to 9 decimals, so float noise does not cost a token).
- ``throttle_wait`` waits on the server (THROTTLE ... WAIT, in turn with
  other waiters) instead of polling; with ``max_wait`` it returns the
  denial at once when the tokens will not come within ``max_wait``.
- ``throttle_set`` validates on the server: a bad value raises ValueError
  with the module's message, and ``rps=-1`` (allow all) is accepted. A
  first ``throttle_set`` without all of rps, burst and window raises an
  exception that is both IndexError (as LimitLion) and ValueError.
- ``throttle_get`` returns ``[tokens, refreshed, rps, burst, window]`` as
  strings (bytes, or str with ``decode_responses=True``) like LimitLion's
  HGETs; ``refreshed`` is the second the tokens were counted (now: the
  bucket refills continuously); rps, burst and window are None unless knobs
  are set.
- ``RunningCounter`` is not part of this module (it is in
  :mod:`redis_throttle.limitlion`).
"""

from __future__ import annotations

import inspect
import math
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._core import (
    BLOCKING_MARGIN_S,
    call,
    decimal_arg,
    int_arg,
    pairs,
    require_sync,
    socket_timeout,
    text,
)
from .testing import ThrottleClock

__all__ = [
    "throttle",
    "throttle_configure",
    "throttle_delete",
    "throttle_get",
    "throttle_reset",
    "throttle_set",
    "throttle_wait",
    "THROTTLE_BURST_DEFAULT",
    "THROTTLE_WINDOW_DEFAULT",
    "THROTTLE_REQUESTED_TOKENS_DEFAULT",
]

KEY_FORMAT = "throttle:{}"

THROTTLE_BURST_DEFAULT = 1
THROTTLE_WINDOW_DEFAULT = 5
THROTTLE_REQUESTED_TOKENS_DEFAULT = 1

#: LimitLion's default knobs TTL (7 days), also the module's knobs-ttl default.
DEFAULT_KNOBS_TTL = 60 * 60 * 24 * 7

# The longest WAIT one call asks for when nothing else bounds it (the loop
# in throttle_wait asks again).
_MAX_HOLD_S = 60.0

_redis: Any = None
_testing = False


class KnobsMissingError(IndexError, ValueError):
    """The first throttle_set on a throttle must give rps, burst and window
    (LimitLion raised IndexError; this is also a ValueError)."""


def throttle_configure(redis_instance: Any, testing: bool = False) -> None:
    """Sets the Redis client the functions use (a sync ``redis.Redis`` or
    ``redis.cluster.RedisCluster``).

    ``testing=True`` lets tests freeze time the way LimitLion's testing mode
    does, on the module's test clock (the server must load the module with
    ``test-clock yes``; RuntimeError here otherwise). Before each call the
    functions read the keys ``frozen_second`` and ``frozen_microsecond``, as
    LimitLion's testing script did, and when ``frozen_second`` exists they
    freeze the module's clock at that time (``THROTTLE.CLOCK FREEZE``). So
    ``redis.mset({'frozen_second': s, 'frozen_microsecond': us})`` freezes
    time as before. When the keys do not exist the clock is left as it is:
    real, or whatever :class:`redis_throttle.testing.ThrottleClock` set.
    """
    global _redis, _testing
    require_sync(redis_instance, "redis_throttle.limitlion_args", "an AsyncLimiter")
    if testing:
        ThrottleClock(redis_instance).now_us()  # TestClockDisabled unless test-clock yes
    _redis = redis_instance
    _testing = bool(testing)


def _client() -> Any:
    if _redis is None:
        raise RuntimeError("Throttle is not configured")
    if _testing:
        _follow_frozen_keys(_redis)
    return _redis


def _follow_frozen_keys(client: Any) -> None:
    second = client.get("frozen_second")
    if second is None:
        return
    micro = client.get("frozen_microsecond")
    us = int(second) * 1_000_000 + int(micro or 0)
    ThrottleClock(client).freeze(Fraction(us, 1_000_000))


def _key(name: Any) -> str:
    return KEY_FORMAT.format(name)


def _whole_tokens(requested_tokens: Any) -> int:
    """Whole tokens for a request. A fractional one is rounded up, after
    rounding to 9 decimals so that float noise (2.2 * 10 * 5 is
    110.00000000000001) does not cost a whole token."""
    if isinstance(requested_tokens, int):
        return int(requested_tokens)
    try:
        exact = Decimal(decimal_arg(requested_tokens, "requested_tokens"))
        return math.ceil(round(exact, 9))
    except (ArithmeticError, ValueError):
        raise ValueError(f"requested_tokens {requested_tokens!r} is not a finite number") from None


def _limit_args(rps: Any, burst: Any, window: Any) -> Tuple[str, str, str]:
    return decimal_arg(rps, "rps"), decimal_arg(burst, "burst"), decimal_arg(window, "window")


def _result(reply: Any, window: str) -> Tuple[bool, int, float]:
    allowed, remaining, retry_after_ms, _reset_after_ms, limit = (int(v) for v in reply)
    if limit < 0:  # rps -1: LimitLion answers (True, 1, 0)
        return True, 1, 0.0
    if allowed:
        sleep = 0.0
    elif retry_after_ms < 0:  # more tokens than the capacity: never
        sleep = float(Decimal(window))
    else:
        sleep = retry_after_ms / 1000
    return allowed == 1, remaining, sleep


def throttle(
    name: Any,
    rps: Any,
    burst: Any = THROTTLE_BURST_DEFAULT,
    window: Any = THROTTLE_WINDOW_DEFAULT,
    requested_tokens: Any = THROTTLE_REQUESTED_TOKENS_DEFAULT,
    knobs_ttl: int = DEFAULT_KNOBS_TTL,
) -> Tuple[bool, int, float]:
    """Takes ``requested_tokens`` from the throttle ``name`` if it has them.

    Returns ``(allowed, tokens, sleep)``: whether to do the work, the whole
    tokens left, and the seconds to sleep before asking again when denied
    (0.0 when allowed). The bucket holds ``ceil(rps * burst * window)``
    tokens and refills continuously at ``rps`` (LimitLion refilled whole
    windows). Knobs set with :func:`throttle_set` override rps, burst and
    window. ``rps=0`` denies everything (sleep = window), ``rps=-1`` allows
    everything (tokens = 1). ``knobs_ttl`` is accepted for compatibility and
    not used: the knobs' TTL is set by ``throttle_set`` and each call
    extends it.
    """
    client = _client()
    limit = _limit_args(rps, burst, window)
    reply = call(client, "THROTTLE", _key(name), *limit, _whole_tokens(requested_tokens))
    return _result(reply, limit[2])


def _bind(name: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> inspect.BoundArguments:
    bound = inspect.signature(throttle).bind(name, *args, **kwargs)
    bound.apply_defaults()
    return bound


def throttle_wait(name: Any, *args: Any, **kwargs: Any) -> Callable[..., Tuple[bool, int, float]]:
    """Returns a function that waits until the throttle allows the work.

    Usage (as LimitLion)::

        throttle = throttle_wait('name', rps=123)
        for ...:
            throttle()
            do_work()

    The returned ``throttle_func(requested_tokens=1)`` returns ``(allowed,
    tokens, sleep)`` like :func:`throttle`. The server holds the call until
    the tokens are due (THROTTLE ... WAIT, served in order with other
    waiters), asking again every minute or so, and at most for the client's
    socket timeout minus 1 s per call. With ``max_wait=seconds`` it gives up
    after that long, or at once (denied) when the tokens cannot come within
    it.
    """
    max_wait = kwargs.pop("max_wait", None)
    _bind(name, args, kwargs)  # TypeError now for arguments throttle() refuses

    def throttle_func(requested_tokens: Any = THROTTLE_REQUESTED_TOKENS_DEFAULT) -> Tuple[bool, int, float]:
        bound = _bind(name, args, {**kwargs, "requested_tokens": requested_tokens})
        return _wait(bound.arguments, max_wait)

    return throttle_func


def _wait(a: Dict[str, Any], max_wait: Optional[float]) -> Tuple[bool, int, float]:
    deadline = None if max_wait is None else time.monotonic() + max_wait
    limit = _limit_args(a["rps"], a["burst"], a["window"])
    tokens = _whole_tokens(a["requested_tokens"])
    while True:
        client = _client()
        cap = socket_timeout(client)
        hold_cap = _MAX_HOLD_S if cap is None else min(_MAX_HOLD_S, cap - BLOCKING_MARGIN_S)
        left = math.inf if deadline is None else max(0.0, deadline - time.monotonic())
        hold = max(0.0, min(left, hold_cap))
        reply = call(
            client, "THROTTLE", _key(a["name"]), *limit, tokens, "WAIT", math.floor(hold * 1000)
        )
        result = _result(reply, limit[2])
        if result[0] or left <= hold_cap:
            # allowed, or denied because the tokens cannot come within max_wait
            return result
        pause = min(result[2], left) - hold
        if pause > 0:
            time.sleep(pause)


def _as_reply_string(value: Any, like: Any) -> Any:
    """A value in the string type the client returns (bytes or str), as HGET did."""
    if value is None:
        return None
    s = value if isinstance(value, str) else text(value) if isinstance(value, bytes) else str(value)
    return s.encode() if isinstance(like, bytes) else s


def _now_seconds(client: Any) -> int:
    if _testing:
        return ThrottleClock(client).now_us() // 1_000_000
    seconds, _micro = client.time()
    return int(seconds)


def throttle_get(name: Any) -> List[Any]:
    """Returns ``[tokens, refreshed, rps, burst, window]`` as strings (bytes
    unless the client decodes responses), like LimitLion's HGETs.

    ``tokens`` are the whole tokens now; ``refreshed`` the Unix second they
    were counted at (now, on the module's clock); rps, burst and window the
    knobs, None when there are none. All None for a throttle never used.
    """
    client = _client()
    reply = call(client, "THROTTLE.GET", _key(name))
    if reply is None:
        return [None] * 5
    m = pairs(reply)
    like = m["source"]
    knobs = text(m["source"]) == "knobs"
    return [
        _as_reply_string(int(m["tokens"]), like),
        _as_reply_string(_now_seconds(client), like),
        *(_as_reply_string(m.get(f), like) if knobs else None for f in ("rps", "burst", "window")),
    ]


def throttle_reset(name: Any) -> None:
    """Removes the throttle's knobs (THROTTLE.RESET); its tokens stay."""
    call(_client(), "THROTTLE.RESET", _key(name))


def throttle_delete(name: Any) -> None:
    """Deletes the throttle (its key, knobs included), and a LimitLion
    ``throttle:<name>:knobs`` hash left from before the switch."""
    client = _client()
    key = _key(name)
    call(client, "DEL", key)
    call(client, "DEL", key + ":knobs")


def throttle_set(
    name: Any,
    rps: Any = None,
    burst: Any = None,
    window: Any = None,
    knobs_ttl: Optional[int] = None,
) -> None:
    """Sets the throttle's knobs (THROTTLE.SET), which override the rps,
    burst and window every caller passes. The first call must give all
    three (KnobsMissingError, an IndexError, otherwise). ``knobs_ttl``
    seconds is how long the knobs live (default 7 days); every throttle()
    call extends it by that TTL. A bad value raises ValueError with the
    module's message.
    """
    client = _client()
    args: List[Any] = ["THROTTLE.SET", _key(name)]
    for option, value in (("RPS", rps), ("BURST", burst), ("WINDOW", window)):
        if value is not None:
            args += [option, decimal_arg(value, option.lower())]
    if knobs_ttl:
        args += ["TTL", int_arg(knobs_ttl, "knobs_ttl")]
    try:
        call(client, *args)
    except ValueError as e:
        if "first THROTTLE.SET" in str(e):
            raise KnobsMissingError(
                f"Throttle knob {_key(name)} doesn't exist or is invalid: {e}"
            ) from e
        raise
