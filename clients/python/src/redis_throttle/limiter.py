"""Token buckets: THROTTLE, THROTTLE.PEEK, THROTTLE.REFUND, the knobs
(THROTTLE.SET / GET / RESET) and THROTTLE.ALL, for sync and asyncio clients.

A limiter is a key and a limit: ``rps`` tokens per second, a capacity of
``max(1, ceil(rps * burst * window))`` tokens. Without ``rps`` it uses the
key's knobs (set with :meth:`Limiter.set_knobs` or ``THROTTLE.SET``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar, Union

from ._core import (
    Number,
    Seconds,
    acall,
    aheld_call,
    call,
    decimal_arg,
    held_call,
    int_arg,
    require_async,
    require_kind,
    require_sync,
    seconds_to_ms_ceil,
)
from .results import AllResult, LimiterState, ThrottleResult

F = TypeVar("F", bound=Callable[..., Any])
Key = Union[str, bytes]


class RateLimited(Exception):
    """Raised by the ``throttled`` decorators when a call is denied.

    ``result`` is the :class:`ThrottleResult` (or :class:`AllResult`);
    ``retry_after`` the seconds to wait (``math.inf``: never).
    """

    def __init__(self, result: Union[ThrottleResult, AllResult]):
        self.result = result
        self.retry_after = result.retry_after
        super().__init__(f"rate limited: retry after {self.retry_after:g} s")


class _LimiterBase:
    _async: bool
    _counterpart: str

    def __init__(
        self,
        client: Any,
        key: Key,
        rps: Optional[Number] = None,
        burst: Number = 1,
        window: Number = 1,
    ):
        require_kind(client, self._async, type(self).__name__, self._counterpart)
        self.client = client
        self.key = key
        if rps is None:
            self._limit: Tuple[str, ...] = ()
        else:
            self._limit = (
                decimal_arg(rps, "rps"),
                decimal_arg(burst, "burst"),
                decimal_arg(window, "window"),
            )

    @property
    def uses_knobs_only(self) -> bool:
        """True when built without rps: every call uses the key's knobs."""
        return not self._limit

    def __repr__(self) -> str:
        limit = " ".join(self._limit) if self._limit else "knobs"
        return f"{type(self).__name__}({self.key!r}, {limit})"

    def _throttle(self, tokens: int) -> Tuple[Any, ...]:
        return ("THROTTLE", self.key, *self._limit, int_arg(tokens, "tokens"))

    def _wait(self, tokens: int, timeout: Seconds) -> Tuple[Tuple[Any, ...], float]:
        timeout_ms = seconds_to_ms_ceil(timeout, "timeout")
        return (*self._throttle(tokens), "WAIT", timeout_ms), max(timeout_ms, 0) / 1000

    def _peek(self, tokens: int) -> Tuple[Any, ...]:
        return ("THROTTLE.PEEK", self.key, *self._limit, int_arg(tokens, "tokens"))

    def _refund(self, tokens: int) -> Tuple[Any, ...]:
        return ("THROTTLE.REFUND", self.key, int_arg(tokens, "tokens"))

    def _set(
        self,
        rps: Optional[Number] = None,
        burst: Optional[Number] = None,
        window: Optional[Number] = None,
        ttl: Optional[int] = None,
    ) -> Tuple[Any, ...]:
        args: List[Any] = ["THROTTLE.SET", self.key]
        for name, value in (("RPS", rps), ("BURST", burst), ("WINDOW", window)):
            if value is not None:
                args += [name, decimal_arg(value, name.lower())]
        if ttl is not None:
            args += ["TTL", int_arg(ttl, "ttl")]
        return tuple(args)


class Limiter(_LimiterBase):
    """A token bucket on one key, for a sync client (``redis.Redis`` or
    ``redis.cluster.RedisCluster``).

    >>> api = Limiter(r, "api:user:7", rps=5, burst=2, window=1)  # 10 tokens, 5/s
    >>> if api.allow():
    ...     serve()
    """

    _async = False
    _counterpart = "AsyncLimiter"

    def allow(self, tokens: int = 1) -> ThrottleResult:
        """THROTTLE: takes ``tokens`` if the bucket holds them."""
        return ThrottleResult.from_reply(call(self.client, *self._throttle(tokens)))

    def wait(self, tokens: int = 1, *, timeout: Seconds) -> ThrottleResult:
        """THROTTLE ... WAIT: takes ``tokens``, waiting up to ``timeout``
        seconds for them (the server holds the call; waiters are served in
        order). Denied at once, reserving nothing, if they will not have
        accrued by then. When the client's socket timeout is shorter than
        the wait (plus 1 s), the call goes on a connection of its own, opened
        for it and closed after, so no socket timeout cuts it short.
        """
        args, hold_s = self._wait(tokens, timeout)
        return ThrottleResult.from_reply(held_call(self.client, self.key, args, hold_s))

    def peek(self, tokens: int = 1) -> ThrottleResult:
        """THROTTLE.PEEK: what ``allow(tokens)`` would answer now; writes nothing."""
        return ThrottleResult.from_reply(call(self.client, *self._peek(tokens)))

    def refund(self, tokens: int) -> Optional[int]:
        """THROTTLE.REFUND: gives back tokens taken for work that did not
        happen (never above capacity). Returns the whole tokens now held, or
        None for a missing key (a full bucket)."""
        reply = call(self.client, *self._refund(tokens))
        return None if reply is None else int(reply)

    def set_knobs(
        self,
        rps: Optional[Number] = None,
        burst: Optional[Number] = None,
        window: Optional[Number] = None,
        ttl: Optional[int] = None,
    ) -> None:
        """THROTTLE.SET: settings that override every caller's limit while
        they live (``ttl`` seconds, default the module's knobs-ttl; every
        THROTTLE on the key extends them). The first call must give rps,
        burst and window."""
        call(self.client, *self._set(rps, burst, window, ttl))

    def get(self) -> Optional[LimiterState]:
        """THROTTLE.GET: the state now, or None for a missing key."""
        return LimiterState.from_reply(call(self.client, "THROTTLE.GET", self.key))

    def reset_knobs(self) -> bool:
        """THROTTLE.RESET: removes the knobs (keeps the tokens). True if there were knobs."""
        return bool(call(self.client, "THROTTLE.RESET", self.key))

    def delete(self) -> bool:
        """DEL: forgets the bucket and its knobs. True if the key existed."""
        return bool(call(self.client, "DEL", self.key))

    def throttled(self, tokens: int = 1, wait: Optional[Seconds] = None) -> Callable[[F], F]:
        """Decorator: each call of the function takes ``tokens`` first.

        With ``wait=None`` a denied call raises :class:`RateLimited` at once;
        with ``wait=seconds`` it waits up to that long (``wait()``) and raises
        only if the tokens did not come.
        """

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                raise TypeError("decorate async functions with an AsyncLimiter")

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = self.allow(tokens) if wait is None else self.wait(tokens, timeout=wait)
                if not result.allowed:
                    raise RateLimited(result)
                return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate


class AsyncLimiter(_LimiterBase):
    """:class:`Limiter` for asyncio clients (``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``); every method is a coroutine."""

    _async = True
    _counterpart = "Limiter"

    async def allow(self, tokens: int = 1) -> ThrottleResult:
        return ThrottleResult.from_reply(await acall(self.client, *self._throttle(tokens)))

    async def wait(self, tokens: int = 1, *, timeout: Seconds) -> ThrottleResult:
        args, hold_s = self._wait(tokens, timeout)
        return ThrottleResult.from_reply(await aheld_call(self.client, self.key, args, hold_s))

    async def peek(self, tokens: int = 1) -> ThrottleResult:
        return ThrottleResult.from_reply(await acall(self.client, *self._peek(tokens)))

    async def refund(self, tokens: int) -> Optional[int]:
        reply = await acall(self.client, *self._refund(tokens))
        return None if reply is None else int(reply)

    async def set_knobs(self, *args: Any, **kwargs: Any) -> None:
        """THROTTLE.SET, with :meth:`Limiter.set_knobs`'s arguments."""
        await acall(self.client, *self._set(*args, **kwargs))

    async def get(self) -> Optional[LimiterState]:
        return LimiterState.from_reply(await acall(self.client, "THROTTLE.GET", self.key))

    async def reset_knobs(self) -> bool:
        return bool(await acall(self.client, "THROTTLE.RESET", self.key))

    async def delete(self) -> bool:
        return bool(await acall(self.client, "DEL", self.key))

    def throttled(self, tokens: int = 1, wait: Optional[Seconds] = None) -> Callable[[F], F]:
        """Decorator for coroutine functions; see :meth:`Limiter.throttled`."""

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("an AsyncLimiter decorates async functions; use a Limiter")

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if wait is None:
                    result = await self.allow(tokens)
                else:
                    result = await self.wait(tokens, timeout=wait)
                if not result.allowed:
                    raise RateLimited(result)
                return await fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate


def _all_args(limiters: Sequence[_LimiterBase], tokens: int) -> Tuple[Any, Tuple[Any, ...]]:
    if not limiters:
        raise ValueError("THROTTLE.ALL needs at least one limiter")
    client = limiters[0].client
    args: List[Any] = ["THROTTLE.ALL", int_arg(tokens, "tokens")]
    for lim in limiters:
        if lim.client is not client:
            raise ValueError("THROTTLE.ALL sends one command: every limiter must use the same client")
        if lim.uses_knobs_only:
            raise ValueError(f"THROTTLE.ALL needs rps, burst and window for every limiter ({lim!r})")
        args += [lim.key, *lim._limit]
    return client, tuple(args)


def allow_all(limiters: Sequence[Limiter], tokens: int = 1) -> AllResult:
    """THROTTLE.ALL: takes ``tokens`` from every limiter, or from none.

    On Redis Cluster every key must be in one slot: give them a common
    ``{hash tag}`` (``{user:42}:sec``, ``{user:42}:day``).
    """
    client, args = _all_args(limiters, tokens)
    require_sync(client, "allow_all", "allow_all_async")
    return AllResult.from_reply(call(client, *args))


async def allow_all_async(limiters: Sequence[AsyncLimiter], tokens: int = 1) -> AllResult:
    """:func:`allow_all` for :class:`AsyncLimiter` objects."""
    client, args = _all_args(limiters, tokens)
    require_async(client, "allow_all_async", "allow_all")
    return AllResult.from_reply(await acall(client, *args))
