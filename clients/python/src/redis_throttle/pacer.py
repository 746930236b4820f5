"""Paced permits (PERMIT): one stream of calls at least ``interval`` apart,
shared by every thread of every process that uses the same key.

:meth:`Pacer.permit` is the distributed throttle exercise's ``get_permit``:
a permit now, a reserved later slot (sleep ``time_to_wait``), or None when
``max_waiting`` permits are already waiting. :meth:`Pacer.block` lets the
server hold the caller until its slot, so callers are released in order, one
interval apart: a FIFO queue in Redis. :meth:`Pacer.slot` (a context manager)
and :meth:`Pacer.paced` (a decorator) wrap a call in that queue.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from decimal import Decimal
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Tuple, TypeVar, Union

from ._core import (
    Seconds,
    acall,
    call,
    check_hold,
    int_arg,
    require_kind,
    seconds_to_ms_ceil,
    seconds_to_ms_text,
)
from .results import Permit

F = TypeVar("F", bound=Callable[..., Any])


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
        interval: Seconds,
        max_waiting: int,
        grace: Optional[Seconds] = None,
    ):
        require_kind(client, self._async, type(self).__name__, self._counterpart)
        self.client = client
        self.key = key
        self._interval_ms = seconds_to_ms_text(interval, "interval")
        self.max_waiting = int_arg(max_waiting, "max_waiting")
        self._grace: Tuple[Any, ...] = ()
        if grace is not None:
            self._grace = ("GRACE", seconds_to_ms_ceil(grace, "grace"))

    @property
    def interval(self) -> float:
        """Seconds between slots."""
        return float(Decimal(self._interval_ms)) / 1000

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, interval_ms={self._interval_ms}, max_waiting={self.max_waiting})"

    def _permit(self) -> Tuple[Any, ...]:
        return ("PERMIT", self.key, self._interval_ms, self.max_waiting, *self._grace)

    def _block(self, timeout: Optional[Seconds]) -> Tuple[Tuple[Any, ...], float]:
        """The command and how long the server may hold it (seconds)."""
        if timeout is None:
            # BLOCK 0: as long as the slot needs. The furthest slot the
            # server hands out is max_waiting intervals away (with fewer
            # than max_waiting permits waiting, each one interval after the
            # previous).
            hold_s = self.max_waiting * float(Decimal(self._interval_ms)) / 1000
            return (*self._permit(), "BLOCK", 0), hold_s
        timeout_ms = seconds_to_ms_ceil(timeout, "timeout")
        return (*self._permit(), "BLOCK", timeout_ms), max(timeout_ms, 0) / 1000


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
        slot needs (at most ``max_waiting`` intervals). The client's socket
        timeout must be longer than the possible hold (plus 1 s): otherwise
        ValueError before anything is sent."""
        args, hold_s = self._block(timeout)
        check_hold(self.client, hold_s)
        return Permit.from_reply(call(self.client, *args))

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
        check_hold(self.client, hold_s)
        return Permit.from_reply(await acall(self.client, *args))

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
