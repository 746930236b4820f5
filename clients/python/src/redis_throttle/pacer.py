"""Paced permits (PERMIT): one stream of calls at least ``interval`` apart,
shared by every thread of every process that uses the same key.

:meth:`Pacer.permit` is the distributed throttle exercise's ``get_permit``:
a permit now, a reserved later slot (sleep ``time_to_wait``), or None when
``max_waiting`` permits are already waiting. :meth:`Pacer.block` lets the
server hold the caller until its slot, so callers are released in order, one
interval apart: a FIFO queue in Redis. :meth:`Pacer.slot` (a context manager)
and :meth:`Pacer.paced` (a decorator) wrap a call in that queue.

The key's settings (PERMIT.SET: :meth:`Pacer.set_settings`) override every
caller's interval and bound while they live; callers the server holds are
re-spaced to a new interval at once. A Pacer built without ``interval``
uses only the settings.

A held call whose hold may outlast the client's socket timeout runs on a
connection of its own (:func:`redis_throttle._core.held_call`), so
``slot(timeout=20)`` works on ``redis.Redis()`` and its 5 s default.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from decimal import Decimal
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional, Tuple, TypeVar, Union

from ._core import (
    Seconds,
    acall,
    aheld_call,
    call,
    held_call,
    int_arg,
    require_kind,
    seconds_to_ms_ceil,
    seconds_to_ms_text,
)
from .results import Permit, PermitState

F = TypeVar("F", bound=Callable[..., Any])


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Missing()


class PermitRefused(Exception):
    """No permit: ``max_waiting`` permits are already waiting, or the slot is
    further away than the caller's timeout (nothing was reserved), or a held
    caller was released after its permit expired (the server stalled for
    longer than the grace)."""

    def __init__(self, key: Any):
        self.key = key
        super().__init__(f"no permit on {key!r}: the queue is full or the slot is too far away")


class _PacerBase:
    _async: bool
    _counterpart: str

    def __init__(
        self,
        client: Any,
        key: Union[str, bytes],
        interval: Optional[Seconds] = None,
        max_waiting: Optional[int] = _REQUIRED,
        grace: Optional[Seconds] = None,
    ):
        require_kind(client, self._async, type(self).__name__, self._counterpart)
        self.client = client
        self.key = key
        self._interval_ms: Optional[str] = None
        self.max_waiting: Optional[int] = None
        if interval is None:
            if max_waiting is not _REQUIRED and max_waiting is not None:
                raise TypeError(
                    "max_waiting needs an interval: without interval, the key's settings give both"
                )
        else:
            if max_waiting is _REQUIRED:
                raise TypeError(
                    "max_waiting is required with an interval: the most permits that may wait, "
                    "or None for no bound"
                )
            self._interval_ms = seconds_to_ms_text(interval, "interval")
            if max_waiting is not None:
                self.max_waiting = int_arg(max_waiting, "max_waiting")
        self._grace: Tuple[Any, ...] = ()
        if grace is not None:
            self._grace = ("GRACE", seconds_to_ms_ceil(grace, "grace"))

    @property
    def interval(self) -> Optional[float]:
        """Seconds between slots; None when the key's settings give it."""
        if self._interval_ms is None:
            return None
        return float(Decimal(self._interval_ms)) / 1000

    @property
    def uses_settings_only(self) -> bool:
        """True when built without interval: every call uses the key's settings."""
        return self._interval_ms is None

    def __repr__(self) -> str:
        if self._interval_ms is None:
            return f"{type(self).__name__}({self.key!r}, settings)"
        bound = "unbounded" if self.max_waiting is None else self.max_waiting
        return f"{type(self).__name__}({self.key!r}, interval_ms={self._interval_ms}, max_waiting={bound})"

    def _permit(self) -> Tuple[Any, ...]:
        if self._interval_ms is None:
            return ("PERMIT", self.key, *self._grace)
        bound: Tuple[Any, ...] = () if self.max_waiting is None else (self.max_waiting,)
        return ("PERMIT", self.key, self._interval_ms, *bound, *self._grace)

    def _block(self, timeout: Optional[Seconds]) -> Tuple[Tuple[Any, ...], Optional[float]]:
        """The command and how long the server may hold it (seconds; None:
        as long as the slot needs, which the client cannot bound: the key's
        settings may change the interval while the call is held)."""
        if timeout is None:
            return (*self._permit(), "BLOCK", 0), None
        timeout_ms = seconds_to_ms_ceil(timeout, "timeout")
        return (*self._permit(), "BLOCK", timeout_ms), max(timeout_ms, 0) / 1000

    def _set(
        self,
        interval: Optional[Seconds] = None,
        max_waiting: Optional[int] = None,
        ttl: Optional[int] = None,
    ) -> Tuple[Any, ...]:
        args: List[Any] = ["PERMIT.SET", self.key]
        if interval is not None:
            args += ["INTERVAL", seconds_to_ms_text(interval, "interval")]
        if max_waiting is not None:
            args += ["MAX_WAITING", int_arg(max_waiting, "max_waiting")]
        if ttl is not None:
            args += ["TTL", int_arg(ttl, "ttl")]
        return tuple(args)


class Pacer(_PacerBase):
    """Paced permits on one key, for a sync client.

    >>> partner = Pacer(r, "partner-api", interval=3, max_waiting=5)
    >>> with partner.slot(timeout=20):   # held until our turn, fleet-wide
    ...     call_partner_api()
    """

    _async = False
    _counterpart = "AsyncPacer"

    def permit(self) -> Optional[Permit]:
        """PERMIT: a permit (sleep ``permit.time_to_wait`` before acting, or
        call ``permit.sleep()``), or None when ``max_waiting`` permits wait."""
        return Permit.from_reply(call(self.client, *self._permit()))

    def block(self, timeout: Optional[Seconds] = None) -> Optional[Permit]:
        """PERMIT ... BLOCK: returns when the slot has come (``time_to_wait_ms``
        is then 0), or None at once if the queue is full or the slot is more
        than ``timeout`` seconds away. ``timeout=None`` waits as long as the
        slot needs. A hold that may outlast the client's socket timeout (plus
        1 s) runs on a connection of its own, opened for the call."""
        args, hold_s = self._block(timeout)
        return Permit.from_reply(held_call(self.client, self.key, args, hold_s))

    @contextlib.contextmanager
    def slot(self, timeout: Optional[Seconds] = None) -> Iterator[Permit]:
        """Context manager: waits for this caller's slot (``block``) and runs
        the body then; raises :class:`PermitRefused` if there is none (also
        when the server released the caller after its permit expired: a
        stall longer than the grace)."""
        permit = self.block(timeout)
        if permit is None:
            raise PermitRefused(self.key)
        yield permit

    def set_settings(
        self,
        interval: Optional[Seconds] = None,
        max_waiting: Optional[int] = None,
        ttl: Optional[int] = None,
    ) -> None:
        """PERMIT.SET: settings that override every caller's interval and
        bound on this key while they live (``ttl`` seconds after they are
        set or used; default the module's knobs-ttl, 7 days). The first call
        must give ``interval`` (and without ``max_waiting`` sets no bound);
        later ones change what they give and keep the rest; ``max_waiting=-1``
        removes the bound. Callers the server holds are re-spaced to the new
        interval at once, in their order."""
        call(self.client, *self._set(interval, max_waiting, ttl))

    def get(self) -> Optional[PermitState]:
        """PERMIT.GET: the stream as it stands, or None for a missing key."""
        return PermitState.from_reply(call(self.client, "PERMIT.GET", self.key))

    def reset_settings(self) -> bool:
        """PERMIT.RESET: removes the settings. True if there were some."""
        return bool(call(self.client, "PERMIT.RESET", self.key))

    def paced(self, timeout: Optional[Seconds] = None) -> Callable[[F], F]:
        """Decorator: every call of the function waits for its slot first."""

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                raise TypeError("pace async functions with an AsyncPacer")

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.slot(timeout):
                    return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate


class AsyncPacer(_PacerBase):
    """:class:`Pacer` for asyncio clients; methods are coroutines,
    ``slot`` is an async context manager."""

    _async = True
    _counterpart = "Pacer"

    async def permit(self) -> Optional[Permit]:
        return Permit.from_reply(await acall(self.client, *self._permit()))

    async def block(self, timeout: Optional[Seconds] = None) -> Optional[Permit]:
        args, hold_s = self._block(timeout)
        return Permit.from_reply(await aheld_call(self.client, self.key, args, hold_s))

    async def set_settings(
        self,
        interval: Optional[Seconds] = None,
        max_waiting: Optional[int] = None,
        ttl: Optional[int] = None,
    ) -> None:
        """PERMIT.SET, with :meth:`Pacer.set_settings`'s arguments."""
        await acall(self.client, *self._set(interval, max_waiting, ttl))

    async def get(self) -> Optional[PermitState]:
        return PermitState.from_reply(await acall(self.client, "PERMIT.GET", self.key))

    async def reset_settings(self) -> bool:
        return bool(await acall(self.client, "PERMIT.RESET", self.key))

    @contextlib.asynccontextmanager
    async def slot(self, timeout: Optional[Seconds] = None) -> AsyncIterator[Permit]:
        permit = await self.block(timeout)
        if permit is None:
            raise PermitRefused(self.key)
        yield permit

    def paced(self, timeout: Optional[Seconds] = None) -> Callable[[F], F]:
        """Decorator for coroutine functions; see :meth:`Pacer.paced`."""

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("an AsyncPacer paces async functions; use a Pacer")

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self.slot(timeout):
                    return await fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate
