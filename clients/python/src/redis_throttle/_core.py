"""Plumbing shared by the sync and asyncio classes: argument formatting,
error translation, and what we need to know about a redis-py client.

Nothing here talks to Redis by itself; ``call`` and ``acall`` are the only
two places that send a command.
"""

from __future__ import annotations

import inspect
import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union, cast

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


def _class_default(cls: Any, name: str) -> Any:
    """A connection class's default for one constructor argument."""
    for klass in getattr(cls, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            param = inspect.signature(init).parameters.get(name)
        except (TypeError, ValueError):
            continue
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return None


def socket_timeout(client: Any) -> Optional[float]:
    """The client's socket (read) timeout in seconds, None for none.

    A client made with ``from_url`` leaves it out of its connection
    arguments: then its connections use their class's default (5 s in
    redis-py 8).
    """
    for owner in ("connection_pool", "nodes_manager", None):
        holder = client if owner is None else getattr(client, owner, None)
        kwargs = getattr(holder, "connection_kwargs", None)
        if not isinstance(kwargs, dict):
            continue
        if "socket_timeout" in kwargs:
            return cast(Optional[float], kwargs["socket_timeout"])
        cls = kwargs.get("connection_class") or getattr(holder, "connection_class", None)
        if cls is None:
            if is_async_client(client):
                from redis.asyncio.connection import Connection as cls
            else:
                from redis.connection import Connection as cls
        return cast(Optional[float], _class_default(cls, "socket_timeout"))
    return None


# A held call on its own connection: how long after the server's own
# timeout (BLOCK / WAIT) the socket waits before the server is taken as
# gone. The server answers by then unless it stalls; a generous margin costs
# nothing, since the connection serves this one call.
HELD_MARGIN_S = 10.0
# Redirections a held call follows on its own connection (MOVED, ASK).
HELD_MAX_REDIRECTS = 5

_REDIRECT = re.compile(r"^(MOVED|ASK) (\d+) (.*):(\d+)$")


def can_hold(client: Any, hold_s: Optional[float]) -> bool:
    """Whether the client's own socket timeout outlasts a hold of ``hold_s``
    seconds (None: unknown, up to the module's 366 days) plus the margin."""
    limit = socket_timeout(client)
    if limit is None:
        return True
    return hold_s is not None and limit >= hold_s + BLOCKING_MARGIN_S


def _redirect(error: ResponseError) -> Optional[Tuple[str, str, int]]:
    """("MOVED" or "ASK", host, port) for a cluster redirection, else None.

    redis-py parses MOVED/ASK into exceptions with ``host``/``port`` on
    cluster connections (and, from 6.x, on every connection); older releases
    leave a plain ResponseError on a connection we open ourselves.
    """
    name = type(error).__name__
    if name in ("MovedError", "AskError") and hasattr(error, "host"):
        return ("MOVED" if name == "MovedError" else "ASK", str(error.host), int(error.port))  # type: ignore[attr-defined]
    m = _REDIRECT.match(str(error))
    if m:
        return m.group(1), m.group(3), int(m.group(4))
    return None


def _held_spec(client: Any, key: Any, hold_s: Optional[float]) -> Tuple[Any, Dict[str, Any]]:
    """The connection class and keyword arguments for a connection of our
    own to the node that serves ``key``: the client's (host, credentials,
    TLS, db, protocol, ...) with a socket timeout that outlasts the hold."""
    node = client.get_node_from_key(key) if is_cluster_client(client) else None
    if node is None:
        pool = client.connection_pool
        cls, kwargs = pool.connection_class, dict(pool.connection_kwargs)
    elif hasattr(node, "connection_kwargs"):  # redis.asyncio.cluster.ClusterNode
        cls, kwargs = node.connection_class, dict(node.connection_kwargs)
    else:  # redis.cluster.ClusterNode
        pool = node.redis_connection.connection_pool
        cls, kwargs = pool.connection_class, dict(pool.connection_kwargs)
    before = kwargs["socket_timeout"] if "socket_timeout" in kwargs else _class_default(cls, "socket_timeout")
    kwargs["socket_connect_timeout"] = kwargs.get("socket_connect_timeout") or before
    kwargs["socket_timeout"] = None if hold_s is None else hold_s + HELD_MARGIN_S
    if "orig_socket_timeout" in kwargs:  # redis-py 7+: restored after maintenance events
        kwargs["orig_socket_timeout"] = kwargs["socket_timeout"]
    return cls, kwargs


def held_call(
    client: Any,
    key: Any,
    args: Tuple[Any, ...],
    hold_s: Optional[float],
    *,
    own_connection: bool = False,
    sent: Optional[Callable[[], None]] = None,
) -> Any:
    """Sends a command the server may hold for up to ``hold_s`` seconds
    (None: unknown, as long as the module allows) on a sync client.

    On the client itself when its socket timeout outlasts the hold (and not
    ``own_connection``); otherwise on a connection of our own, opened for
    this call with the client's settings and a socket timeout of the hold
    plus :data:`HELD_MARGIN_S` (none for an unknown hold), and closed after.
    That connection follows MOVED/ASK itself and is never retried after the
    command was sent (a resent PERMIT would reserve a second slot).
    ``sent`` is called once the command is written.
    """
    if not own_connection and can_hold(client, hold_s):
        if sent is not None:
            sent()
        return call(client, *args)
    cls, kwargs = _held_spec(client, key, hold_s)
    asking = False
    for _ in range(HELD_MAX_REDIRECTS + 1):
        conn = cls(**kwargs)
        try:
            conn.connect()
            if asking:
                conn.send_command("ASKING")
                conn.read_response()
            conn.send_command(*args)
            if sent is not None:
                sent()
                sent = None
            return conn.read_response()
        except ResponseError as e:
            where = _redirect(e)
            if where is None:
                err = translate(e)
                if err is e:
                    raise
                raise err from e
            kind, host, port = where
            kwargs["host"], kwargs["port"] = host or kwargs.get("host"), port
            asking = kind == "ASK"
        finally:
            conn.disconnect()
    raise ResponseError(f"too many cluster redirections for {key!r}")


async def aheld_call(
    client: Any,
    key: Any,
    args: Tuple[Any, ...],
    hold_s: Optional[float],
    *,
    own_connection: bool = False,
) -> Any:
    """:func:`held_call` for asyncio clients."""
    if not own_connection and can_hold(client, hold_s):
        return await acall(client, *args)
    if is_cluster_client(client):
        await client.initialize()  # the slot map (a no-op once it has one)
    cls, kwargs = _held_spec(client, key, hold_s)
    asking = False
    for _ in range(HELD_MAX_REDIRECTS + 1):
        conn = cls(**kwargs)
        try:
            await conn.connect()
            if asking:
                await conn.send_command("ASKING")
                await conn.read_response()
            await conn.send_command(*args)
            return await conn.read_response()
        except ResponseError as e:
            where = _redirect(e)
            if where is None:
                err = translate(e)
                if err is e:
                    raise
                raise err from e
            kind, host, port = where
            kwargs["host"], kwargs["port"] = host or kwargs.get("host"), port
            asking = kind == "ASK"
        finally:
            await conn.disconnect()
    raise ResponseError(f"too many cluster redirections for {key!r}")


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


def pairs(reply: Any) -> Dict[str, Any]:
    """A map reply (RESP3 dict, or RESP2 flat field/value list) as a dict with str keys."""
    items: Iterable[Tuple[Any, Any]]
    if isinstance(reply, dict):
        items = reply.items()
    else:
        items = zip(reply[::2], reply[1::2])
    return {text(k): v for k, v in items}
