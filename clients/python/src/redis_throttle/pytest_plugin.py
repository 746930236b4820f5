"""pytest fixtures for testing an application's limits (installed as a
pytest plugin with the package; nothing runs unless a test asks for them).

- ``throttle_redis``: the client the clock talks to. The default connects to
  ``$REDIS_URL`` (else ``redis://127.0.0.1:6379``); override it in your
  ``conftest.py`` to use your own client.
- ``throttle_clock``: a :class:`redis_throttle.testing.ThrottleClock` frozen
  at the server's current time for the test, back to the real clock after
  it. ``throttle_clock.advance(seconds)`` moves time on. The server must
  load the module with ``test-clock yes``.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from .testing import ThrottleClock


@pytest.fixture
def throttle_redis() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    yield client
    client.close()


@pytest.fixture
def throttle_clock(throttle_redis: Any) -> Iterator[ThrottleClock]:
    clock = ThrottleClock(throttle_redis)
    clock.freeze()
    try:
        yield clock
    finally:
        clock.real()
