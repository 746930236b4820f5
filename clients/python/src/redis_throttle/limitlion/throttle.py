"""LimitLion 1.1's ``limitlion.throttle``, on the module's
``THROTTLE.LIMITLION`` command.

Same functions, arguments, return values, exceptions and keys as LimitLion:
the bucket hash ``throttle:<name>`` (``tokens``, ``refreshed``) and the
knobs hash ``throttle:<name>:knobs`` (``rps``, ``burst``, ``window``), with
the same TTLs. ``throttle()`` runs LimitLion's algorithm on the server, in
the same floating-point arithmetic as its Lua script, so every
``(allowed, tokens, sleep)`` is the one LimitLion gives, and processes
still running LimitLion's script can share the keys during a deploy.
``throttle_set``, ``throttle_get``, ``throttle_reset`` and
``throttle_delete`` are plain hash commands, as in LimitLion.

``throttle_configure(redis, testing=True)`` is LimitLion's testing mode:
when this database has a ``frozen_second`` key, ``throttle()`` takes the
time from ``frozen_second`` / ``frozen_microsecond`` instead of the server
clock (any server with the module; no test clock needed).
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

KEY_FORMAT = "throttle:{}"

# throttle knob defaults
THROTTLE_BURST_DEFAULT = 1
THROTTLE_WINDOW_DEFAULT = 5
THROTTLE_REQUESTED_TOKENS_DEFAULT = 1

#: Every ``throttle()`` call extends the knobs' TTL to this (7 days).
DEFAULT_KNOBS_TTL = 60 * 60 * 24 * 7

#: The module command that runs LimitLion's algorithm.
COMMAND = "THROTTLE.LIMITLION"
#: The keys testing mode reads the time from.
FROZEN_KEYS = ("frozen_second", "frozen_microsecond")

#: The client set by :func:`throttle_configure` (LimitLion's module global).
redis: Any = None
_testing = False

Result = Tuple[bool, int, float]


def _verify_configured() -> None:
    if redis is None:
        raise RuntimeError("Throttle is not configured")


def _knobs_key(name: Any) -> str:
    return KEY_FORMAT.format(name) + ":knobs"


def throttle_configure(redis_instance: Any, testing: bool = False) -> None:
    """Sets the Redis client the functions use (``redis.Redis`` or
    ``redis.cluster.RedisCluster``; nothing is sent until the first call).

    ``testing=True``: ``throttle()`` reads the time from this database's
    ``frozen_second`` / ``frozen_microsecond`` keys when ``frozen_second``
    exists (``redis.mset({'frozen_second': s, 'frozen_microsecond': us})``
    freezes time), as LimitLion's testing mode does.
    """
    global redis, _testing
    redis = redis_instance
    _testing = bool(testing)


def throttle(
    name: Any,
    rps: Any,
    burst: Any = THROTTLE_BURST_DEFAULT,
    window: Any = THROTTLE_WINDOW_DEFAULT,
    requested_tokens: Any = THROTTLE_REQUESTED_TOKENS_DEFAULT,
    knobs_ttl: Any = DEFAULT_KNOBS_TTL,
) -> Result:
    """Asks the throttle ``name`` for ``requested_tokens`` tokens.

    Returns ``(allowed, tokens, sleep)``: whether to do the work, the tokens
    left, and the seconds until the next limit window starts (sleep that
    long when not allowed).

    The bucket holds ``ceil(rps × burst × window)`` tokens and gets
    ``ceil(rps × window)`` more at the start of each whole window, counted
    from its first use. Knobs stored in ``throttle:<name>:knobs`` (see
    :func:`throttle_set`, or ``HSET`` by hand) override rps, burst and
    window, and each call extends their TTL to ``knobs_ttl`` seconds (0
    leaves it alone). ``rps=0`` denies everything with a full window's
    sleep; ``rps=-1`` allows everything.
    """
    _verify_configured()
    key = KEY_FORMAT.format(name)
    args: List[Any] = [COMMAND, key, _knobs_key(name), rps, burst, window, requested_tokens, knobs_ttl]
    if _testing:
        args += ["CLOCK", *FROZEN_KEYS]
    allowed, tokens, sleep = redis.execute_command(*args)
    # sleep arrives as LimitLion's "%.6f" string
    return allowed == 1, int(tokens), float(sleep)


def throttle_wait(name: Any, *args: Any, **kwargs: Any) -> Callable[..., Result]:
    """Returns a function that asks the throttle until it allows the work,
    sleeping the ``sleep`` it answers between tries.

    Usage::

        throttle = throttle_wait('name', rps=123)
        for ...:
            throttle()
            do_work()

    The returned ``throttle_func(requested_tokens=1)`` returns the last
    ``(allowed, tokens, sleep)``. With ``max_wait=seconds`` it stops asking
    once that long has passed since its first try (the answer is then a
    denial); without it, it may wait forever.
    """
    max_wait: Optional[float] = kwargs.pop("max_wait", None)

    ask: Callable[..., Result] = throttle  # args may clash with requested_tokens: TypeError, as LimitLion

    def throttle_func(requested_tokens: Any = THROTTLE_REQUESTED_TOKENS_DEFAULT) -> Result:
        started = time.time()
        while True:
            result = ask(name, *args, requested_tokens=requested_tokens, **kwargs)
            allowed, _tokens, sleep = result
            if allowed or (max_wait is not None and time.time() - started > max_wait):
                return result
            time.sleep(sleep)

    return throttle_func


def throttle_delete(name: Any) -> None:
    """Deletes the throttle's bucket and knobs."""
    _verify_configured()
    pipe = redis.pipeline()
    pipe.delete(KEY_FORMAT.format(name))
    pipe.delete(_knobs_key(name))
    pipe.execute()


def throttle_get(name: Any) -> List[Any]:
    """Returns ``[tokens, refreshed, rps, burst, window]`` as the hashes
    hold them (bytes, or str with ``decode_responses=True``; None for a
    missing field). Like LimitLion's, it does not check that the module is
    configured first."""
    pipe = redis.pipeline()
    key = KEY_FORMAT.format(name)
    pipe.hget(key, "tokens")
    pipe.hget(key, "refreshed")
    for field in ("rps", "burst", "window"):
        pipe.hget(_knobs_key(name), field)
    values: List[Any] = pipe.execute()
    return values


def throttle_reset(name: Any) -> None:
    """Deletes the throttle's knobs (its bucket stays)."""
    _verify_configured()
    redis.delete(_knobs_key(name))


def _validate(knobs_key: str, params: Sequence[Tuple[Any, str]]) -> None:
    """A given value must be a float ≥ 0 (ValueError); a knob not given
    must already exist (IndexError)."""
    missing = redis.pipeline()
    for value, field in params:
        if value is None:
            missing.hexists(knobs_key, field)
            continue
        try:
            valid = float(value) >= 0
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(
                f'"{value}" is not a valid throttle value. Throttle values must be positive floats.'
            )
    if not all(missing.execute()):
        raise IndexError(f"Throttle knob {knobs_key} doesn't exist or is invalid")


def throttle_set(
    name: Any,
    rps: Any = None,
    burst: Any = None,
    window: Any = None,
    knobs_ttl: Optional[int] = None,
) -> None:
    """Sets knobs in ``throttle:<name>:knobs``; they override the rps, burst
    and window every caller passes. Values must be floats ≥ 0 (ValueError
    otherwise); a knob left out must already be set (IndexError
    otherwise). ``knobs_ttl`` sets the hash's TTL; callers then pass
    ``knobs_ttl=0`` to ``throttle()`` so they do not extend it.
    """
    _verify_configured()
    key = _knobs_key(name)
    params = ((rps, "rps"), (burst, "burst"), (window, "window"))
    _validate(key, params)
    pipe = redis.pipeline()
    for value, field in params:
        if value is not None:
            pipe.hset(key, field, value)
    if knobs_ttl:
        pipe.expire(key, knobs_ttl)
    pipe.execute()
