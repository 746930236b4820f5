"""LimitLion 1.1's ``RunningCounter``: counts per time interval, kept for a
number of intervals, in plain Redis strings (same keys as LimitLion, so
both can share them).

A counter adds each increment to the bucket of the current interval,
``floor(unix seconds / interval)``, stored at ``<prefix>:<name>:<bucket>``
(``<prefix>:<group>:<name>:<bucket>`` in a group) with ``INCRBYFLOAT``,
and expires it ``num_buckets × interval + 15`` seconds later. The count is
the sum of the last ``num_buckets`` buckets (or fewer, ``recent_buckets``).
A group also keeps the names of its counters in the sorted set
``<prefix>:<group>:group_keys``, scored by the time of their last
increment and trimmed to the window.

Time is this process's clock (``time.time()``), as in LimitLion.
"""

from __future__ import annotations

import itertools
import time
from collections import namedtuple
from typing import Any, Dict, List, Optional

#: One bucket of a counter: its id and its count (a field named ``count``,
#: as LimitLion's, hides ``tuple.count``).
BucketCount = namedtuple("BucketCount", ["bucket", "count"])


class RunningCounter:
    """Counts per ``interval`` seconds, over ``num_buckets`` intervals.

    Give exactly one of ``name`` (one counter) or ``group_name`` (a group of
    counters, named at each call); ValueError otherwise.
    """

    def __init__(
        self,
        redis: Any,
        interval: int,
        num_buckets: int,
        name: Optional[str] = None,
        name_prefix: str = "rc",
        group_name: Optional[str] = None,
    ) -> None:
        if (name is None) == (group_name is None):
            raise ValueError("Either name xor group must be set in __init__")
        self.redis = redis
        self.interval = interval
        self.num_buckets = num_buckets
        self.name = name
        self.name_prefix = name_prefix
        self.group_name = group_name

    @property
    def window(self) -> int:
        """The seconds the counter covers: ``interval × num_buckets``."""
        return self.interval * self.num_buckets

    def _key(self, name: str, bucket: int) -> str:
        parts = [self.name_prefix, name, bucket]
        if self.group_name:
            parts.insert(1, self.group_name)
        return ":".join(str(p) for p in parts)

    def _group_key(self) -> str:
        if self.group_name is None:
            raise AssertionError("the counter has no group")
        return f"{self.name_prefix}:{self.group_name}:group_keys"

    def _get_name(self, name: Optional[str]) -> str:
        if self.name:
            if name and name != self.name:
                raise ValueError("Cannot specify different name when already set in __init__")
            return self.name
        if name is None:
            raise ValueError("Name not specified")
        return name

    def _get_buckets(self, recent_buckets: Optional[int] = None, now: Optional[float] = None) -> range:
        """The bucket ids in the window (or the ``recent_buckets`` newest),
        newest first."""
        now = now or time.time()
        newest = int(now) // self.interval
        if recent_buckets is None:
            span = self.num_buckets
        elif recent_buckets > self.num_buckets:
            raise ValueError("recent_buckets must be less or equal to num_buckets in __init__")
        else:
            span = recent_buckets
        return range(newest, newest - span, -1)

    def buckets_counts(
        self, name: Optional[str] = None, recent_buckets: Optional[int] = None, now: Optional[float] = None
    ) -> List[BucketCount]:
        """Each bucket of the window with its count (0 when missing),
        newest first. ``now`` pins the time across calls."""
        now = now or time.time()
        name = self._get_name(name)
        buckets = self._get_buckets(recent_buckets=recent_buckets, now=now)
        values = self.redis.mget([self._key(name, b) for b in buckets])
        return [BucketCount(b, 0 if v is None else float(v)) for b, v in zip(buckets, values)]

    def count(self, name: Optional[str] = None, recent_buckets: Optional[int] = None, now: Optional[float] = None) -> float:
        """The sum of the window's buckets (or the ``recent_buckets`` newest)."""
        name = self._get_name(name)
        total: float = sum(bc.count for bc in self.buckets_counts(name=name, recent_buckets=recent_buckets, now=now))
        return total

    def inc(self, increment: float = 1, name: Optional[str] = None) -> None:
        """Adds ``increment`` to the current bucket (and records the name in
        the group)."""
        now = time.time()
        name = self._get_name(name)
        key = self._key(name, int(now) // self.interval)
        ttl = self.num_buckets * self.interval + 15
        pipe = self.redis.pipeline()
        pipe.incrbyfloat(key, increment)
        pipe.expire(key, ttl)
        if self.group_name is not None:
            group = self._group_key()
            pipe.zadd(group, {name: now})
            pipe.expire(group, ttl)
            # names not incremented within the window leave the group
            pipe.zremrangebyscore(group, "-inf", now - self.window - 1)
        pipe.execute()

    def group(self) -> List[str]:
        """The names of the group's counters incremented within the window."""
        group = self._group_key()
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(group, "-inf", time.time() - self.window - 1)
        pipe.zrange(group, 0, -1)
        _trimmed, names = pipe.execute()
        return [n.decode() if isinstance(n, bytes) else n for n in names]

    def group_counts(self, recent_buckets: Optional[int] = None) -> Dict[str, float]:
        """``{name: count}`` for each counter of the group, at one time."""
        now = time.time()
        return {n: self.count(n, recent_buckets=recent_buckets, now=now) for n in self.group()}

    def group_buckets_counts(self, recent_buckets: Optional[int] = None) -> Dict[str, List[BucketCount]]:
        """``{name: buckets_counts}`` for each counter of the group."""
        now = time.time()
        return {n: self.buckets_counts(n, recent_buckets=recent_buckets, now=now) for n in self.group()}

    def delete(self, name: Optional[str] = None) -> None:
        """Deletes a counter's buckets (and its name from the group)."""
        name = self._get_name(name)
        keys = [self._key(name, b) for b in self._get_buckets(now=time.time())]
        pipe = self.redis.pipeline()
        pipe.delete(*keys)
        if self.group_name:
            pipe.zrem(self._group_key(), name)
        pipe.execute()

    def delete_group(self) -> None:
        """Deletes every counter of the group, and the group."""
        now = time.time()
        names = self.group()
        buckets = self._get_buckets(now=now)
        keys = [self._key(n, b) for n, b in itertools.product(names, buckets)]
        self.redis.delete(self._group_key(), *keys)
