"""The module's test clock, for testing an application's limits
deterministically against a real server.

The server must load the module with ``test-clock yes``
(``redis-server --loadmodule libredis_throttle.so test-clock yes``); then
``THROTTLE.CLOCK FREEZE <unix_us> | ADVANCE <us> | REAL | GET`` sets the
clock every command of the module reads on that server. Never enable it in
production. On a Redis Cluster client the clock is set on every node.

>>> with ThrottleClock(r) as clock:      # frozen at the server's "now"
...     assert limiter.allow()
...     clock.advance(0.2)               # 200 ms later, for the module
... # back to the real clock
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, Optional, Union

from redis.exceptions import ResponseError

from ._core import Seconds, acall, call, is_cluster_client, require_async, require_sync, seconds_to_us
from .results import _EPOCH, datetime_from_us

When = Union[datetime, int, float, Decimal, Fraction, None]


class TestClockDisabled(RuntimeError):
    """The server's module was loaded without ``test-clock yes``."""

    __test__ = False  # not a pytest test class


def _unix_us(at: When) -> Optional[int]:
    if at is None:
        return None
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("pass an aware datetime (e.g. tzinfo=timezone.utc)")
        delta = at - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return seconds_to_us(at, "at")


def _options(client: Any) -> Dict[str, Any]:
    # Every node, replicas included, named one by one: redis-py 8 cannot
    # route a keyless module command given only the ALL_NODES flag.
    if is_cluster_client(client):
        return {"target_nodes": client.get_nodes()}
    return {}


def _one(reply: Any) -> Any:
    """A cluster client answers per node: the nodes agree once frozen; take the latest."""
    if isinstance(reply, dict):
        values = list(reply.values())
        if all(isinstance(v, int) for v in values):
            return max(values)
        return values[0]
    return reply


def _disabled(error: Exception) -> Exception:
    message = str(error).lower()
    if isinstance(error, (ValueError, ResponseError)) and ("test-clock" in message or "test clock" in message):
        return TestClockDisabled(str(error))
    return error


class ThrottleClock:
    """The module's test clock on a sync client. As a context manager it
    freezes the clock (at the server's current time) on entry and returns it
    to the real clock on exit."""

    __test__ = False

    def __init__(self, client: Any):
        require_sync(client, "ThrottleClock", "AsyncThrottleClock")
        self.client = client

    def _cmd(self, *args: Any) -> Any:
        try:
            return _one(call(self.client, "THROTTLE.CLOCK", *args, **_options(self.client)))
        except (ValueError, ResponseError) as e:
            err = _disabled(e)
            if err is e:
                raise
            raise err from e

    def now_us(self) -> int:
        """The module's time now, Unix µs (frozen or real)."""
        return int(self._cmd("GET"))

    def now(self) -> datetime:
        """The module's time now, as an aware UTC datetime."""
        return datetime_from_us(self.now_us())

    def freeze(self, at: When = None) -> int:
        """Stops the clock at ``at`` (aware datetime, or Unix seconds), or at
        the module's current time. Returns the frozen time in Unix µs."""
        us = _unix_us(at)
        if us is None:
            us = self.now_us()
        self._cmd("FREEZE", us)
        return us

    def advance(self, delta: Seconds) -> int:
        """Moves the clock ``delta`` seconds (or a timedelta) forward, freezing
        it there if it was real. Returns the new time in Unix µs."""
        return int(self._cmd("ADVANCE", seconds_to_us(delta, "delta")))

    def real(self) -> None:
        """Back to the server's real clock."""
        self._cmd("REAL")

    def __enter__(self) -> "ThrottleClock":
        self.freeze()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.real()


class AsyncThrottleClock:
    """:class:`ThrottleClock` for asyncio clients (``async with``)."""

    __test__ = False

    def __init__(self, client: Any):
        require_async(client, "AsyncThrottleClock", "ThrottleClock")
        self.client = client

    async def _cmd(self, *args: Any) -> Any:
        if is_cluster_client(self.client) and not self.client.get_nodes():
            await self.client.initialize()  # an asyncio cluster client learns its nodes lazily
        try:
            return _one(await acall(self.client, "THROTTLE.CLOCK", *args, **_options(self.client)))
        except (ValueError, ResponseError) as e:
            err = _disabled(e)
            if err is e:
                raise
            raise err from e

    async def now_us(self) -> int:
        return int(await self._cmd("GET"))

    async def now(self) -> datetime:
        return datetime_from_us(await self.now_us())

    async def freeze(self, at: When = None) -> int:
        us = _unix_us(at)
        if us is None:
            us = await self.now_us()
        await self._cmd("FREEZE", us)
        return us

    async def advance(self, delta: Seconds) -> int:
        return int(await self._cmd("ADVANCE", seconds_to_us(delta, "delta")))

    async def real(self) -> None:
        await self._cmd("REAL")

    async def __aenter__(self) -> "AsyncThrottleClock":
        await self.freeze()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.real()


__all__ = ["ThrottleClock", "AsyncThrottleClock", "TestClockDisabled"]
