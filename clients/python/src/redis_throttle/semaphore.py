"""Concurrency limits (LEASE): at most ``limit`` places in use at once on a
key, shared by every thread of every process that names it.

A caller takes a place with a lease (:meth:`Semaphore.acquire`) and gives
it back with :meth:`Lease.release`. A lease lasts ``ttl`` seconds unless
renewed (:meth:`Lease.renew`), so a holder that dies frees its place
within ``ttl``. :meth:`Semaphore.hold` (a context manager) and
:meth:`Semaphore.limited` (a decorator) take a lease, renew it in the
background while the body runs (every ``ttl / 3``), release it at the end,
and raise :class:`LeaseLost` if it was lost on the way (it expired, or
someone released it): then the body ran, at least in part, without its
place, and the limit may have been exceeded.

Waiting is the server's: with a ``timeout`` the caller is queued on the
server, first come first served, and admitted the moment a place frees (by
a release, an expiry, or a raised limit). The server reserves each waiter's
place when it asks: the first instant a place frees by *expiry*, behind
every waiter before it. A caller whose reserved instant lies beyond its
``timeout`` is refused at once, even though a release might come sooner;
so a timeout shorter than the holders' ``ttl`` waits only when places are
about to expire. Keep ``ttl`` short (renewals are cheap) or the timeout
long.

A held call whose hold may outlast the client's socket timeout runs on a
connection of its own (:func:`redis_throttle._core.held_call`), as
:class:`~redis_throttle.Pacer`'s do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import time
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Tuple, TypeVar, Union

from redis.exceptions import ResponseError

from ._core import (
    Seconds,
    acall,
    aheld_call,
    call,
    held_call,
    int_arg,
    require_kind,
    seconds_to_ms_ceil,
)
from .results import LeaseState, datetime_from_ms

F = TypeVar("F", bound=Callable[..., Any])
Key = Union[str, bytes]

#: The most places a key may have, and the most a lease may take (the module's bound).
MAX_LIMIT = 1_000_000_000_000_000
#: The longest ``ttl`` and ``timeout``, in ms: 366 days (the module's bound).
MAX_MS = 31_622_400_000
#: The shortest pause between background renewals, seconds.
_MIN_RENEW_EVERY_S = 0.005


class LeaseRefused(Exception):
    """No lease: every place was taken and none came within the timeout.
    With a timeout, the server refuses at once when the first place to free
    by expiry (behind the waiters before) is further away than the timeout,
    though a release might come sooner. ``key`` and ``timeout`` (seconds,
    None for "as long as it takes") are the call's."""

    def __init__(self, key: Any, timeout: Optional[Seconds]):
        self.key = key
        self.timeout = timeout
        if timeout is None:
            wait = "(the wait would pass the module's 366 days, or the key holds 10,000 leases and waiters)"
        elif seconds_to_ms_ceil(timeout, "timeout") == 0:
            wait = "now"
        else:
            wait = f"within {timeout}" if isinstance(timeout, timedelta) else f"within {timeout} s"
        super().__init__(f"no place on {key!r} {wait}")


class LeaseLost(Exception):
    """The lease stopped counting before its holder released it: it expired
    (not renewed in time) or someone else released it. Its holder no longer
    holds a place and must stop; other callers may have taken the place."""

    def __init__(self, key: Any, lease_id: int, reason: str):
        self.key = key
        self.lease_id = lease_id
        self.reason = reason
        super().__init__(f"lease {lease_id} on {key!r} was lost: {reason}")


def _count(value: int, name: str) -> int:
    value = int_arg(value, name)
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be an integer >= 1 and <= {MAX_LIMIT}")
    return value


def _ttl_ms(ttl: Seconds) -> int:
    ms = seconds_to_ms_ceil(ttl, "ttl")
    if not 1 <= ms <= MAX_MS:
        raise ValueError(f"ttl must be > 0 and <= {MAX_MS // 1000} seconds (366 days)")
    return ms


def _timeout_ms(timeout: Optional[Seconds]) -> Optional[int]:
    """None: as long as it takes (``BLOCK 0``); 0: no wait (no ``BLOCK``)."""
    if timeout is None:
        return None
    ms = seconds_to_ms_ceil(timeout, "timeout")
    if not 0 <= ms <= MAX_MS:
        raise ValueError(
            f"timeout must be >= 0 and <= {MAX_MS // 1000} seconds (366 days), "
            "or None to wait as long as it takes"
        )
    return ms


_GONE = "the server no longer has it (it expired, or another client released it)"
_RELEASED = "its holder released it"


class _LeaseBase:
    """What a lease knows; the sync and asyncio leases add the calls."""

    def __init__(self, semaphore: "_SemaphoreBase", reply: Any):
        lease_id, expires_at_ms, in_use, limit = reply
        self.semaphore = semaphore
        self.key: Key = semaphore.key
        #: the lease's id: unique on the key and increasing (a fencing token)
        self.id = int(lease_id)
        #: when it expires unless renewed, Unix ms on the server's clock (rounded down)
        self.expires_at_ms = int(expires_at_ms)
        #: places in use when it started, its own included
        self.in_use = int(in_use)
        #: the key's limit when it started
        self.limit = int(limit)
        #: the ttl renewals use, ms (the semaphore's, or the last renew's)
        self.ttl_ms = semaphore.ttl_ms
        #: successful renewals so far (background ones included)
        self.renewals = 0
        #: True once its holder released it (whatever the server answered)
        self.released = False
        #: the last error a background renewal met (it tries again), or None
        self.renew_error: Optional[BaseException] = None
        self._lost: Optional[str] = None
        # time.monotonic() after which the lease has surely expired unless
        # renewed since: the reply came after the server set the expiry.
        self._deadline = time.monotonic() + self.ttl_ms / 1000

    @property
    def expires_at(self) -> datetime:
        """``expires_at_ms`` as an aware UTC datetime."""
        return datetime_from_ms(self.expires_at_ms)

    @property
    def lost(self) -> bool:
        """True once the lease is known gone (a renewal or the release found
        it so), or its ``ttl`` passed since its last confirmed renewal. Never
        True for a lease its holder released in time."""
        if self._lost is not None:
            return True
        return not self.released and time.monotonic() > self._deadline

    def check(self) -> None:
        """Raises :class:`LeaseLost` now if the lease is lost: a long body
        calls it between steps to stop early."""
        if self.lost:
            raise self._lost_error()

    def _lost_error(self) -> LeaseLost:
        reason = self._lost or "its ttl passed without a renewal"
        if self.renew_error is not None and self._lost is None:
            reason += f" (the last renewal failed: {self.renew_error!r})"
        return LeaseLost(self.key, self.id, reason)

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason

    def _renewed(self, reply: Any) -> int:
        # The deadline counts from the reply: the server set the expiry before it.
        self.expires_at_ms = int(reply)
        self.renewals += 1
        self.renew_error = None
        self._deadline = time.monotonic() + self.ttl_ms / 1000
        return self.expires_at_ms

    def _renew_args(self, ttl: Optional[Seconds]) -> Tuple[Any, ...]:
        if ttl is not None:
            self.ttl_ms = _ttl_ms(ttl)
        return ("LEASE.RENEW", self.key, self.id, self.ttl_ms)

    def _unusable(self) -> Optional[LeaseLost]:
        """Why renew() must not be sent (released by us, or known lost)."""
        if self.released:
            return LeaseLost(self.key, self.id, _RELEASED)
        if self._lost is not None:
            return self._lost_error()
        return None

    def _renew_every(self) -> float:
        return max(self.ttl_ms / 3000, _MIN_RENEW_EVERY_S)

    def __repr__(self) -> str:
        state = "released" if self.released else "lost" if self._lost else "held"
        return (
            f"{type(self).__name__}(key={self.key!r}, id={self.id}, expires_at_ms={self.expires_at_ms}, "
            f"in_use={self.in_use}, limit={self.limit}, {state})"
        )


class Lease(_LeaseBase):
    """A place on a :class:`Semaphore`'s key, for a sync client. Thread-safe:
    ``release`` waits for a renewal on its way, so no renewal is sent after
    the release."""

    semaphore: "Semaphore"

    def __init__(self, semaphore: "Semaphore", reply: Any):
        super().__init__(semaphore, reply)
        self._lock = threading.Lock()

    def release(self) -> bool:
        """LEASE.RELEASE: gives the place back at once. True if the lease was
        live; False if not: released already, or lost (then ``lost`` turns
        True). Nothing is sent for a lease released already or known lost."""
        with self._lock:
            if self.released or self._lost is not None:
                self.released = True
                return False
            self.released = True
            live = bool(call(self.semaphore.client, "LEASE.RELEASE", self.key, self.id))
            if not live:
                self._mark_lost(_GONE)
            return live

    def renew(self, ttl: Optional[Seconds] = None) -> int:
        """LEASE.RENEW: the lease now lasts ``ttl`` seconds from now (default
        the semaphore's; later background renewals use it too). Returns the
        new ``expires_at_ms``. Raises :class:`LeaseLost` when the server no
        longer has the lease (it expired or was released), or this holder
        released it; nothing is sent for a lease already known lost."""
        with self._lock:
            unusable = self._unusable()
            if unusable is not None:
                raise unusable
            reply = call(self.semaphore.client, *self._renew_args(ttl))
            if reply is None:
                self._mark_lost(_GONE)
                raise self._lost_error()
            return self._renewed(reply)

    def _renew_in_background(self, halt: threading.Event) -> bool:
        """One background renewal; False when the renewer should stop."""
        with self._lock:
            if halt.is_set() or self.released or self._lost is not None:
                return False
            try:
                reply = call(self.semaphore.client, "LEASE.RENEW", self.key, self.id, self.ttl_ms)
            except (ResponseError, ValueError) as e:  # WRONGTYPE: the key is not ours any more
                self._mark_lost(f"LEASE.RENEW failed: {e}")
                return False
            except Exception as e:  # connection trouble: try again next turn, until the deadline
                self.renew_error = e
                return not self.lost
            if reply is None:
                self._mark_lost(_GONE)
                return False
            self._renewed(reply)
            return True


class AsyncLease(_LeaseBase):
    """:class:`Lease` for asyncio clients: ``release`` and ``renew`` are
    coroutines."""

    semaphore: "AsyncSemaphore"

    def __init__(self, semaphore: "AsyncSemaphore", reply: Any):
        super().__init__(semaphore, reply)
        self._lock = asyncio.Lock()

    async def release(self) -> bool:
        """LEASE.RELEASE; see :meth:`Lease.release`."""
        async with self._lock:
            if self.released or self._lost is not None:
                self.released = True
                return False
            self.released = True
            live = bool(await acall(self.semaphore.client, "LEASE.RELEASE", self.key, self.id))
            if not live:
                self._mark_lost(_GONE)
            return live

    async def renew(self, ttl: Optional[Seconds] = None) -> int:
        """LEASE.RENEW; see :meth:`Lease.renew`."""
        async with self._lock:
            unusable = self._unusable()
            if unusable is not None:
                raise unusable
            reply = await acall(self.semaphore.client, *self._renew_args(ttl))
            if reply is None:
                self._mark_lost(_GONE)
                raise self._lost_error()
            return self._renewed(reply)

    async def _renew_in_background(self, halt: asyncio.Event) -> bool:
        async with self._lock:
            if halt.is_set() or self.released or self._lost is not None:
                return False
            try:
                reply = await acall(self.semaphore.client, "LEASE.RENEW", self.key, self.id, self.ttl_ms)
            except (ResponseError, ValueError) as e:
                self._mark_lost(f"LEASE.RENEW failed: {e}")
                return False
            except Exception as e:  # connection trouble: try again next turn, until the deadline
                self.renew_error = e
                return not self.lost
            if reply is None:
                self._mark_lost(_GONE)
                return False
            self._renewed(reply)
            return True


class _Renewer:
    """A daemon thread renewing one lease every ``ttl / 3`` until stopped,
    or until the lease is released or lost."""

    def __init__(self, lease: Lease):
        self._lease = lease
        self._halt = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"redis-throttle lease {lease.id} renewer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._halt.wait(self._lease._renew_every()):
            if not self._lease._renew_in_background(self._halt):
                return

    def stop(self) -> None:
        """Stops the thread and waits for it: no renewal is sent after this."""
        self._halt.set()
        self._thread.join()


class _AsyncRenewer:
    """:class:`_Renewer` as an asyncio task."""

    def __init__(self, lease: AsyncLease):
        self._lease = lease
        self._halt = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._halt.wait(), self._lease._renew_every())
                return
            except asyncio.TimeoutError:
                pass
            if not await self._lease._renew_in_background(self._halt):
                return

    async def stop(self) -> None:
        self._halt.set()
        await self._task


class _SemaphoreBase:
    _async: bool
    _counterpart: str

    def __init__(self, client: Any, key: Key, limit: int, ttl: Seconds = 10, *, cost: int = 1):
        require_kind(client, self._async, type(self).__name__, self._counterpart)
        self.client = client
        self.key = key
        self.limit = _count(limit, "limit")
        self.cost = _count(cost, "cost")
        if self.cost > self.limit:
            raise ValueError(f"cost {self.cost} is above limit {self.limit}: no lease could ever be granted")
        self.ttl_ms = _ttl_ms(ttl)

    @property
    def ttl(self) -> float:
        """Seconds a lease lasts unless renewed."""
        return self.ttl_ms / 1000

    def __repr__(self) -> str:
        cost = "" if self.cost == 1 else f", cost={self.cost}"
        return f"{type(self).__name__}({self.key!r}, limit={self.limit}, ttl_ms={self.ttl_ms}{cost})"

    def _lease(self, timeout: Optional[Seconds]) -> Tuple[Tuple[Any, ...], Optional[float], bool]:
        """The command, how long the server may hold it (seconds; None: up to
        the module's 366 days), and whether it may be held at all."""
        timeout_ms = _timeout_ms(timeout)
        args: Tuple[Any, ...] = ("LEASE", self.key, self.limit, self.ttl_ms)
        if self.cost != 1:
            args += ("COST", self.cost)
        if timeout_ms == 0:
            return args, 0.0, False
        if timeout_ms is None:
            return (*args, "BLOCK", 0), None, True
        return (*args, "BLOCK", timeout_ms), timeout_ms / 1000, True


class Semaphore(_SemaphoreBase):
    """A concurrency limit on one key, for a sync client (``redis.Redis`` or
    ``redis.cluster.RedisCluster``): at most ``limit`` places in use at once
    (each lease takes ``cost``), fleet-wide; a lease lasts ``ttl`` seconds
    unless renewed.

    >>> partner = Semaphore(r, "partner-api", limit=10, ttl=10)
    >>> with partner.hold(timeout=30):   # at most 10 of these bodies at once
    ...     call_partner_api()
    """

    _async = False
    _counterpart = "AsyncSemaphore"

    def acquire(self, timeout: Optional[Seconds] = 0) -> Optional[Lease]:
        """LEASE: a :class:`Lease`, or None when no place came.

        ``timeout=0`` (the default) does not wait; ``timeout=seconds`` waits
        on the server (``BLOCK``, first come first served) up to that long;
        ``None`` waits as long as it takes. The lease is not renewed: renew
        it yourself within ``ttl``, or use :meth:`hold`.
        """
        args, hold_s, held = self._lease(timeout)
        reply = held_call(self.client, self.key, args, hold_s) if held else call(self.client, *args)
        return None if reply is None else Lease(self, reply)

    def peek(self) -> LeaseState:
        """LEASE.PEEK: places in use, the limit, callers waiting, the next expiry."""
        return LeaseState.from_reply(call(self.client, "LEASE.PEEK", self.key))

    @contextlib.contextmanager
    def hold(self, timeout: Optional[Seconds] = None) -> Iterator[Lease]:
        """Context manager: takes a lease (waiting up to ``timeout`` seconds;
        None: as long as it takes; 0: not at all), renews it in the background
        every ``ttl / 3`` while the body runs, and releases it at the end.

        Raises :class:`LeaseRefused` (before the body) if no place came, and
        :class:`LeaseLost` at the end if the lease was lost on the way (call
        ``lease.check()`` to learn it sooner). If the body raises, its
        exception wins and the release is best effort.
        """
        lease = self.acquire(timeout)
        if lease is None:
            raise LeaseRefused(self.key, timeout)
        renewer = _Renewer(lease)
        try:
            yield lease
        except BaseException:
            renewer.stop()
            with contextlib.suppress(Exception):  # it expires within ttl anyway
                lease.release()
            raise
        renewer.stop()
        lease.release()
        if lease._lost is not None:
            raise lease._lost_error()

    def limited(self, timeout: Optional[Seconds] = None) -> Callable[[F], F]:
        """Decorator: every call of the function runs in :meth:`hold`."""

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                raise TypeError("limit async functions with an AsyncSemaphore")

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.hold(timeout):
                    return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate


class AsyncSemaphore(_SemaphoreBase):
    """:class:`Semaphore` for asyncio clients (``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``): ``acquire`` and ``peek`` are
    coroutines, ``hold`` an async context manager renewing from a task (so
    the body must not block the event loop for longer than the ``ttl``)."""

    _async = True
    _counterpart = "Semaphore"

    async def acquire(self, timeout: Optional[Seconds] = 0) -> Optional[AsyncLease]:
        """LEASE; see :meth:`Semaphore.acquire`."""
        args, hold_s, held = self._lease(timeout)
        if held:
            reply = await aheld_call(self.client, self.key, args, hold_s)
        else:
            reply = await acall(self.client, *args)
        return None if reply is None else AsyncLease(self, reply)

    async def peek(self) -> LeaseState:
        return LeaseState.from_reply(await acall(self.client, "LEASE.PEEK", self.key))

    @contextlib.asynccontextmanager
    async def hold(self, timeout: Optional[Seconds] = None) -> AsyncIterator[AsyncLease]:
        """Async context manager; see :meth:`Semaphore.hold`."""
        lease = await self.acquire(timeout)
        if lease is None:
            raise LeaseRefused(self.key, timeout)
        renewer = _AsyncRenewer(lease)
        try:
            yield lease
        except BaseException:
            await renewer.stop()
            with contextlib.suppress(Exception):
                await lease.release()
            raise
        await renewer.stop()
        await lease.release()
        if lease._lost is not None:
            raise lease._lost_error()

    def limited(self, timeout: Optional[Seconds] = None) -> Callable[[F], F]:
        """Decorator for coroutine functions; see :meth:`Semaphore.limited`."""

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("an AsyncSemaphore limits async functions; use a Semaphore")

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self.hold(timeout):
                    return await fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate
