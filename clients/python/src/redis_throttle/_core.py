"""Plumbing shared by the sync and asyncio classes: argument formatting,
error translation, and what we need to know about a redis-py client.

Nothing here talks to Redis by itself; ``call`` and ``acall`` are the only
two places that send a command.
"""

from __future__ import annotations

import inspect
import math
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Optional, Union

from redis.exceptions import ResponseError

Number = Union[int, float, Decimal, Fraction, str]
Seconds = Union[int, float, Decimal, Fraction, timedelta]

# Error codes Redis (and the cluster) put first in an error reply. redis-py
# strips only "ERR ", so an error whose message starts with one of these is
# not one of the module's argument errors and stays a redis-py exception.
_REDIS_ERROR_CODES = frozenset(
    "WRONGTYPE CROSSSLOT UNBLOCKED LOADING BUSY MISCONF READONLY NOSCRIPT "
    "MASTERDOWN CLUSTERDOWN TRYAGAIN MOVED ASK NOPERM OOM EXECABORT NOAUTH "
    "NOREPLICAS NOTBUSY NOPROTO WRONGPASS".split()
)

# How much longer than the longest possible hold a blocking call needs its
# socket timeout to be: the server releases a held client at its due time,
# and the reply still has to travel.
BLOCKING_MARGIN_S = 1.0


def translate(error: ResponseError) -> Exception:
    """The exception to raise for an error reply to one of our commands.

    The module's argument errors (``ERR rps must be > 0 ...``) become
    ``ValueError`` with the server's message; everything else (WRONGTYPE,
    unknown command, cluster redirections, OOM, ...) stays as redis-py
    raised it.
    """
    if type(error) is not ResponseError:
        return error
    message = str(error)
    first = message.split(" ", 1)[0]
    if first in _REDIS_ERROR_CODES or message.startswith(
        ("unknown command", "unknown subcommand")
    ):
        return error
    return ValueError(message)


def call(client: Any, *args: Any, **options: Any) -> Any:
    """Sends one command on a sync client, translating argument errors."""
    try:
        return client.execute_command(*args, **options)
    except ResponseError as e:
        err = translate(e)
        if err is e:
            raise
        raise err from e


async def acall(client: Any, *args: Any, **options: Any) -> Any:
    """Sends one command on an asyncio client, translating argument errors."""
    try:
        return await client.execute_command(*args, **options)
    except ResponseError as e:
        err = translate(e)
        if err is e:
            raise
        raise err from e


def is_async_client(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def is_cluster_client(client: Any) -> bool:
    return hasattr(client, "nodes_manager") and hasattr(client, "get_nodes")


def require_kind(client: Any, want_async: bool, name: str, counterpart: str) -> None:
    """TypeError unless the client is asyncio (want_async) or sync (not)."""
    if is_async_client(client) == want_async:
        return
    if want_async:
        raise TypeError(f"{name} needs a redis.asyncio client; use {counterpart} with sync clients")
    raise TypeError(f"{name} needs a sync client; use {counterpart} with redis.asyncio clients")


def require_sync(client: Any, name: str, counterpart: str) -> None:
    require_kind(client, False, name, counterpart)


def require_async(client: Any, name: str, counterpart: str) -> None:
    require_kind(client, True, name, counterpart)


def socket_timeout(client: Any) -> Optional[float]:
    """The client's socket (read) timeout in seconds, None for none."""
    for owner in ("connection_pool", "nodes_manager"):
        kwargs = getattr(getattr(client, owner, None), "connection_kwargs", None)
        if isinstance(kwargs, dict):
            return kwargs.get("socket_timeout")
    kwargs = getattr(client, "connection_kwargs", None)
    if isinstance(kwargs, dict):
        return kwargs.get("socket_timeout")
    return None


def check_hold(client: Any, hold_s: float) -> None:
    """Refuses a blocking call the client's socket timeout would cut short.

    A reply lost to a socket timeout is worse than an error up front: the
    server has already reserved the tokens or the slot, and redis-py may
    even retry the command and reserve twice.
    """
    limit = socket_timeout(client)
    if limit is not None and limit < hold_s + BLOCKING_MARGIN_S:
        raise ValueError(
            f"the server may hold this call for up to {hold_s:g} s, but the client's "
            f"socket_timeout is {limit:g} s: create the client with socket_timeout=None "
            f"or at least {hold_s + BLOCKING_MARGIN_S:g} s (redis-py 8 defaults to 5 s)"
        )


def _exact(value: Any, name: str) -> Decimal:
    """A number as an exact Decimal (floats by their shortest repr)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not bool")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else Decimal(str(value))
    if isinstance(value, Fraction):
        num, den = value.numerator, value.denominator
        twos_fives = den
        for p in (2, 5):
            while twos_fives % p == 0:
                twos_fives //= p
        if twos_fives != 1:
            raise ValueError(f"{name} {value} is not a finite decimal")
        return Decimal(num) / Decimal(den)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} {value!r} is not a valid decimal number") from None
    raise TypeError(f"{name} must be a number, not {type(value).__name__}")


def _plain(d: Decimal) -> str:
    if not d.is_finite():
        return str(d)  # the server refuses it with its own message
    d = d.normalize()
    return format(d, "f")


def decimal_arg(value: Number, name: str) -> str:
    """A decimal argument (rps, burst, window) as the server reads it.

    Strings are sent as they are (the server validates them); numbers are
    written exactly, floats by their shortest repr (0.1 -> "0.1").
    """
    if isinstance(value, str):
        return value
    return _plain(_exact(value, name))


def int_arg(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _seconds(value: Seconds, name: str) -> Decimal:
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return Decimal(us) / 1_000_000
    if isinstance(value, str):
        raise TypeError(f"{name} must be a number of seconds or a timedelta, not str")
    return _exact(value, name)


def seconds_to_ms_text(value: Seconds, name: str) -> str:
    """Seconds as an exact decimal number of milliseconds (PERMIT's interval)."""
    return _plain(_seconds(value, name) * 1000)


def seconds_to_ms_ceil(value: Seconds, name: str) -> int:
    """Seconds as whole milliseconds, rounded up (a timeout is never cut short)."""
    d = _seconds(value, name)
    if not d.is_finite():
        raise ValueError(f"{name} must be a finite number of seconds")
    return int((d * 1000).to_integral_value(rounding="ROUND_CEILING"))


def seconds_to_us(value: Seconds, name: str) -> int:
    """Seconds as whole microseconds, rounded to the nearest."""
    d = _seconds(value, name)
    if not d.is_finite():
        raise ValueError(f"{name} must be a finite number of seconds")
    return int((d * 1_000_000).to_integral_value(rounding="ROUND_HALF_EVEN"))


def text(value: Any) -> str:
    """A reply string as str, whatever the client's decode_responses."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def pairs(reply: Any) -> dict:
    """A map reply (RESP3 dict, or RESP2 flat field/value list) as a dict with str keys."""
    if isinstance(reply, dict):
        items = reply.items()
    else:
        items = zip(reply[::2], reply[1::2])
    return {text(k): v for k, v in items}
