"""ApiQueue (the API Rate Limiter, ``apiqueue`` 0.1.1) with its queue in Redis.

The same names and behaviour as ``from apiqueue import ApiQueue``: build it
with a rate in milliseconds, ``start()`` it, ``enqueue()`` returns a waiter
whose ``waiting`` turns False when the caller's turn has come (one caller per
``rate_millis``, in the order they enqueued), ``reset_rate(ms)`` changes the
pace, ``stop(soft_stop)`` stops it. Only the import changes::

    from redis_throttle.apiqueue import ApiQueue

The queue is ``PERMIT key rate_ms BLOCK 0`` on the server: every waiter is
a caller the server holds until its slot. So it is one queue for every
thread of every process that names it (``ApiQueue(100, name="ec2")``); an
ApiQueue without a name gets a queue of its own, as in-process ApiQueue has.
The rate is the key's PERMIT settings (PERMIT.SET), so ``reset_rate``
re-spaces the callers already waiting at once, in their order, in every
process.

It connects to ``$REDIS_URL`` (default ``redis://localhost:6379``) unless
given ``client=`` (``redis.Redis`` or ``redis.cluster.RedisCluster``) or
``url=``. Each waiting caller holds one connection of its own (opened for
that wait, without a socket timeout: the server bounds the wait) and one
daemon thread that flips ``waiting`` when the server answers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any, List, Optional, Union

import redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from ._core import call, decimal_arg, held_call, int_arg, is_async_client
from .results import Permit

__all__ = ["ApiQueue", "DEFAULT_URL"]

#: Where an ApiQueue connects when given neither ``client`` nor ``url`` and
#: ``$REDIS_URL`` is unset.
DEFAULT_URL = "redis://localhost:6379"

log = logging.getLogger(__name__)

# Errors after which a waiter asks again (its place in the queue may be
# lost): the server went away, restarted, failed over or is loading.
_TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    BusyLoadingError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
)
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0


def _now_ms() -> int:
    return int(round(time.time() * 1000))


def _transient(error: BaseException) -> bool:
    if isinstance(error, _TRANSIENT):
        return True
    # a held client unblocked by a failover or CLIENT UNBLOCK ... ERROR
    return isinstance(error, ResponseError) and str(error).startswith("UNBLOCKED")


class Waiter:
    """One caller's place in the queue.

    ``waiting`` turns False when the caller's turn has come; ``permit`` is
    then the server's :class:`~redis_throttle.Permit` (``valid_at_ms``: the
    slot, on the server's clock). ``timeout`` is ApiQueue's advisory
    deadline (epoch ms: now + 5 rates per caller ahead); nothing enforces
    it. ``wait()`` blocks instead of polling.
    """

    def __init__(self, timeout: float = 0):
        self.registered = True
        self.waiting = True
        self.timeout = timeout
        #: the slot the server gave this caller, once ``waiting`` is False
        self.permit: Optional[Permit] = None
        #: the last error while asking for the slot (asked again if it was
        #: transient: a lost connection, a failover; else the caller never
        #: gets a slot and ``wait()`` raises it)
        self.error: Optional[BaseException] = None
        self._done = threading.Event()

    @staticmethod
    def now() -> int:
        return _now_ms()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the caller's turn (True), or ``timeout`` seconds
        (False). Raises the error if the caller can never get a slot."""
        done = self._done.wait(timeout)
        if done and self.waiting and self.error is not None:
            raise self.error
        return done

    def __repr__(self) -> str:
        state = "waiting" if self.waiting else f"released at {self.permit.valid_at_ms if self.permit else '?'}"
        return f"<Waiter {state}>"


_Waiter = Waiter  # for annotations inside ApiQueue, whose Waiter attribute shadows the name


class _QueueView:
    """``ApiQueue.queue``: this process's callers not yet released, with the
    two methods of ``queue.Queue`` that ApiQueue's users read."""

    def __init__(self, owner: "ApiQueue"):
        self._owner = owner

    def qsize(self) -> int:
        with self._owner.mutex:
            return len(self._owner._held) + len(self._owner._parked)

    def empty(self) -> bool:
        return self.qsize() == 0


class ApiQueue:
    """A FIFO pacing queue in Redis with ApiQueue's interface.

    :param rate_millis: ms between callers (µs resolution).
    :param name: the queue's Redis key; processes that give the same name
        share one queue. None: a queue of this instance's own.
    :param client: a sync ``redis.Redis`` or ``RedisCluster``. Default: one
        from ``url``, else ``$REDIS_URL``, else ``redis://localhost:6379``.
    :param settings_ttl: seconds the rate (PERMIT.SET) lives without use;
        None: the module's default.
    """

    Waiter = Waiter

    def __init__(
        self,
        rate_millis: Union[int, float],
        name: Optional[Union[str, bytes]] = None,
        *,
        client: Any = None,
        url: Optional[str] = None,
        settings_ttl: Optional[int] = None,
    ):
        if client is None:
            client = redis.Redis.from_url(url or os.environ.get("REDIS_URL") or DEFAULT_URL)
        elif url is not None:
            raise TypeError("give client or url, not both")
        if is_async_client(client):
            raise TypeError("ApiQueue needs a sync client (redis.Redis or RedisCluster), not a redis.asyncio one")
        self.client = client
        self.key: Union[str, bytes] = name if name is not None else f"apiqueue:{uuid.uuid4().hex}"
        self.shared = name is not None
        self._rate_arg = decimal_arg(rate_millis, "rate_millis")
        self.rate_millis = float(rate_millis)
        self._ttl = () if settings_ttl is None else ("TTL", int_arg(settings_ttl, "settings_ttl"))
        self.mutex = threading.Lock()
        self.process_q = False
        self.queue = _QueueView(self)
        self.queued = 0
        self.debug = False
        #: with ``debug`` True: the slot (server ms) of every released caller
        self.steps: List[int] = []
        self._held: List[_Waiter] = []  # sent to the server, not released yet
        self._parked: List[_Waiter] = []  # enqueued while stopped: sent by start()
        self._send = threading.Lock()  # one enqueue sends at a time: FIFO

    def __repr__(self) -> str:
        state = "running" if self.process_q else "stopped"
        return f"ApiQueue({self.rate_millis:g} ms, key={self.key!r}, {state}, {self.queue.qsize()} waiting)"

    @staticmethod
    def now() -> int:
        return _now_ms()

    # -- ApiQueue's interface ------------------------------------------------

    def start(self) -> None:
        """Sets the queue's rate on the server (PERMIT.SET) and starts
        releasing callers; callers enqueued while stopped join the queue now,
        in their order."""
        self._set_rate(self._rate_arg)
        with self._send:
            with self.mutex:
                self.process_q = True
                parked, self._parked = self._parked, []
            for waiter in parked:
                self._launch(waiter)

    def enqueue(self) -> _Waiter:
        """Joins the queue. Returns once the request is on its way to the
        server (so one thread's calls keep their order); poll
        ``waiter.waiting`` or call ``waiter.wait()``."""
        with self._send:
            with self.mutex:
                self.queued += 1
                waiter = Waiter(self.now() + self.queued * 5 * self.rate_millis)
                if not self.process_q:
                    self._parked.append(waiter)
                    return waiter
            self._launch(waiter)
        return waiter

    def reset_rate(self, rate: Union[int, float]) -> None:
        """Changes the pace for every caller of the queue, in every process:
        callers already waiting are re-spaced at once, in their order. Like
        ApiQueue's, it leaves the queue running."""
        arg = decimal_arg(rate, "rate")
        self._set_rate(arg)
        self._rate_arg, self.rate_millis = arg, float(rate)
        if not self.process_q:
            self.start()

    def stop(self, soft_stop: bool = False) -> None:
        """Stops sending callers to the server (later ``enqueue`` calls wait
        for ``start``). With ``soft_stop``, first waits for the callers
        already queued to be released, at most as long as their slots need
        plus a second. Callers the server holds are never withdrawn: they
        are released at their slots. A queue of its own (no ``name``) drops
        its rate from the server once no caller is held."""
        if soft_stop:
            deadline = time.monotonic() + self.queue.qsize() * self.rate_millis / 1000 + 1
            while self.queue.qsize() > 0 and time.monotonic() < deadline:
                time.sleep(0.005)
        with self.mutex:
            self.process_q = False
            idle = not self._held
        if idle and not self.shared:
            call(self.client, "PERMIT.RESET", self.key)

    # -- plumbing --------------------------------------------------------------

    def _set_rate(self, rate_arg: str) -> None:
        call(self.client, "PERMIT.SET", self.key, "INTERVAL", rate_arg, *self._ttl)

    def _launch(self, waiter: _Waiter) -> None:
        """Starts the waiter's thread and waits until its request is sent
        (or its first attempt failed)."""
        with self.mutex:
            self._held.append(waiter)
        first_try = threading.Event()
        t = threading.Thread(target=self._hold, args=(waiter, first_try), daemon=True, name="apiqueue-waiter")
        t.start()
        first_try.wait()

    def _hold(self, waiter: _Waiter, first_try: threading.Event) -> None:
        pause = _RETRY_FIRST_S
        while True:
            # Explicit interval: the queue still paces if its settings expire.
            args = ("PERMIT", self.key, self._rate_arg, "BLOCK", 0)
            try:
                reply = held_call(self.client, self.key, args, None, own_connection=True, sent=first_try.set)
            except Exception as e:  # noqa: BLE001 - every error is the waiter's to report
                waiter.error = e
                if not _transient(e):
                    log.error("ApiQueue %r: a caller can never get a slot: %s", self.key, e)
                    self._finish(waiter, None)
                    return
                log.warning("ApiQueue %r: asking again after %s", self.key, e)
            else:
                permit = Permit.from_reply(reply)
                if permit is not None:
                    self._finish(waiter, permit)
                    return
                # nil: another process set MAX_WAITING and the queue is full
            finally:
                first_try.set()
            time.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX_S)

    def _finish(self, waiter: _Waiter, permit: Optional[Permit]) -> None:
        with self.mutex:
            if waiter in self._held:
                self._held.remove(waiter)
            self.queued -= 1
            if permit is not None:
                waiter.permit = permit
                if self.debug:
                    self.steps.append(permit.valid_at_ms)
            else:
                waiter.registered = False
        if permit is not None:
            waiter.waiting = False
        waiter._done.set()
