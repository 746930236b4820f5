"""LimitLion 1.1, as a drop-in: the same package layout, functions, return
values, exceptions and Redis keys, on the module's ``THROTTLE.LIMITLION``.

Switching is one import line::

    import limitlion                                # before
    import redis_throttle.limitlion as limitlion    # after

    from limitlion.throttle import DEFAULT_KNOBS_TTL                 # before
    from redis_throttle.limitlion.throttle import DEFAULT_KNOBS_TTL  # after

- :mod:`redis_throttle.limitlion.throttle`: ``throttle``,
  ``throttle_wait``, ``throttle_configure`` (with ``testing=True``),
  ``throttle_set``, ``throttle_get``, ``throttle_reset``,
  ``throttle_delete`` and the constants. ``throttle()`` answers exactly as
  LimitLion's Lua script, on the same hashes (``throttle:<name>`` and
  ``throttle:<name>:knobs``), so hand-edited knobs keep working and the
  script and this package can serve the same throttles side by side.
- :mod:`redis_throttle.limitlion.running_counter`: ``RunningCounter``.

For the module's own token bucket (continuous refill, one typed key,
waiting on the server) with LimitLion's call shape, see
:mod:`redis_throttle.limitlion_args`.
"""

# LimitLion's ``from .throttle import *`` also made KEY_FORMAT and
# DEFAULT_KNOBS_TTL top-level names.
from .running_counter import BucketCount, RunningCounter
from .throttle import (
    DEFAULT_KNOBS_TTL,
    KEY_FORMAT,
    THROTTLE_BURST_DEFAULT,
    THROTTLE_REQUESTED_TOKENS_DEFAULT,
    THROTTLE_WINDOW_DEFAULT,
    throttle,
    throttle_configure,
    throttle_delete,
    throttle_get,
    throttle_reset,
    throttle_set,
    throttle_wait,
)

__all__ = [
    "RunningCounter",
    "throttle",
    "throttle_configure",
    "throttle_delete",
    "throttle_get",
    "throttle_reset",
    "throttle_set",
    "throttle_wait",
    "THROTTLE_BURST_DEFAULT",
    "THROTTLE_WINDOW_DEFAULT",
    "THROTTLE_REQUESTED_TOKENS_DEFAULT",
]
