"""Python client for the redis-throttle Redis module.

- :class:`Limiter` / :class:`AsyncLimiter`: token buckets (THROTTLE, WAIT,
  PEEK, REFUND, knobs); :func:`allow_all`: several limits at once
  (THROTTLE.ALL); ``@limiter.throttled()``: a decorator that rejects or waits.
- :class:`Pacer` / :class:`AsyncPacer`: paced permits (PERMIT, BLOCK), a
  FIFO queue in Redis as a context manager (``slot``) or decorator (``paced``).
- :class:`Semaphore` / :class:`AsyncSemaphore`: concurrency limits (LEASE,
  RELEASE, RENEW, PEEK): at most ``limit`` at once, fleet-wide, as a context
  manager (``hold``: renewed in the background, :class:`LeaseLost` if lost)
  or decorator (``limited``).
- :mod:`redis_throttle.limitlion`: LimitLion's functions, one import away.
- :mod:`redis_throttle.apiqueue`: ApiQueue (the API Rate Limiter), its queue
  in Redis; :mod:`redis_throttle.exercise`: the distributed throttle
  exercise's ``redis_throttle`` decorator and ``reserve_permit``;
  :mod:`redis_throttle.rush`: Rush's ``Rusher``.
- :mod:`redis_throttle.testing`: the module's test clock (and a pytest fixture,
  ``throttle_clock``).

Works with ``redis.Redis``, ``redis.cluster.RedisCluster`` and their
``redis.asyncio`` counterparts. Bad arguments raise ``ValueError`` with the
server's message; WRONGTYPE and connection errors stay redis-py's exceptions.
"""

from .limiter import AsyncLimiter, Limiter, RateLimited, allow_all, allow_all_async
from .pacer import AsyncPacer, Pacer, PermitRefused
from .results import NEVER_MS, AllResult, LeaseState, LimiterState, Permit, PermitState, ThrottleResult
from .semaphore import AsyncLease, AsyncSemaphore, Lease, LeaseLost, LeaseRefused, Semaphore
from .testing import AsyncThrottleClock, TestClockDisabled, ThrottleClock

try:
    from importlib.metadata import version as _version

    __version__ = _version("redis-throttle")
except Exception:  # not installed (a source checkout on sys.path)
    __version__ = "unknown"

__all__ = [
    "AllResult",
    "AsyncLimiter",
    "AsyncLease",
    "AsyncPacer",
    "AsyncSemaphore",
    "AsyncThrottleClock",
    "Lease",
    "LeaseLost",
    "LeaseRefused",
    "LeaseState",
    "Limiter",
    "LimiterState",
    "NEVER_MS",
    "Pacer",
    "Permit",
    "PermitRefused",
    "PermitState",
    "RateLimited",
    "Semaphore",
    "TestClockDisabled",
    "ThrottleClock",
    "ThrottleResult",
    "allow_all",
    "allow_all_async",
]
