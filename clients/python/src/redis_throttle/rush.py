"""Rush's ``Rusher``: rush a resource with N threads at once, count outcomes.

The same interface as Rush (``from rush import Rusher``); only the import
changes::

    from redis_throttle.rush import Rusher

A worker is a generator function ``worker(index, thread_count)``: it
prepares (opens its connection, builds its request), ``yield``\\ s once to
say it is ready, then does its one call and ``yield``\\ s a string naming
the outcome (``'attempted'``, ``'throttled'``, ...). ``Rusher(worker,
thread_count)`` runs ``thread_count`` of them on threads: every worker
prepares, they all wait at a barrier, then all are released at once.
``rush_and_report()`` prints how long the rush took and how many workers had
each outcome, and returns ``(duration, results)``.

Outcomes that are not a string are counted too: a worker that ends without
a second ``yield`` as ``'(no outcome)'``, one that raises as
``'error: <ExceptionType>'`` (while preparing or rushing).

For load at a sustained rate, latency percentiles, many connections or a
verdict on a limit, use the ``rush`` command-line tool (``rush/``), which
rushes Redis commands and HTTP endpoints without Python.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO, Tuple

__all__ = ["NO_OUTCOME", "Rusher", "Worker"]

#: The outcome counted for a worker that ends without naming one.
NO_OUTCOME = "(no outcome)"

Worker = Callable[[int, int], Iterator[Any]]
_PENDING = object()


def _error(e: BaseException) -> str:
    return f"error: {type(e).__name__}"


class Rusher:
    """Runs ``thread_count`` workers at once; ``thread_count`` may be
    changed between rushes.

    :param worker: a generator function ``worker(index, thread_count)``
    :param thread_count: how many workers rush together (>= 1)
    :param timeout: seconds a worker may take to prepare, and then to rush;
        None: no limit. A worker over it is counted as ``'error: timeout'``
        (its thread is left to finish on its own).
    """

    def __init__(self, worker: Worker, thread_count: int, timeout: Optional[float] = None):
        if not callable(worker):
            raise TypeError("worker must be a generator function worker(index, thread_count)")
        self.worker = worker
        self.thread_count = thread_count
        self.timeout = timeout

    @property
    def thread_count(self) -> int:
        return self._thread_count

    @thread_count.setter
    def thread_count(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"thread_count must be an int, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"thread_count must be >= 1, not {value}")
        self._thread_count = value

    def __repr__(self) -> str:
        name = getattr(self.worker, "__name__", repr(self.worker))
        return f"Rusher({name}, thread_count={self.thread_count})"

    def rush(self) -> Tuple[timedelta, Dict[str, int]]:
        """One rush: ``(duration, results)``, where ``duration`` runs from
        the barrier's release to the last worker's outcome and ``results``
        counts the outcomes, sorted by name."""
        n = self.thread_count
        outcomes: List[Any] = [_PENDING] * n
        barrier = threading.Barrier(n + 1)  # every worker, and this thread

        def run(index: int) -> None:
            gen: Optional[Iterator[Any]] = None
            try:
                gen = iter(self.worker(index, n))
                next(gen)  # prepare, then say "ready"
            except StopIteration:
                gen, outcomes[index] = None, NO_OUTCOME
            except Exception as e:  # noqa: BLE001 - counted as an outcome
                gen, outcomes[index] = None, _error(e)
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass  # the others waited `timeout` for us: rush anyway
            if gen is None:
                return
            try:
                outcomes[index] = next(gen)
            except StopIteration:
                outcomes[index] = NO_OUTCOME
            except Exception as e:  # noqa: BLE001
                outcomes[index] = _error(e)
            finally:
                close = getattr(gen, "close", None)
                if close is not None:
                    close()

        threads = [threading.Thread(target=run, args=(i,), daemon=True, name=f"rush-{i}") for i in range(n)]
        for t in threads:
            t.start()
        try:
            barrier.wait(self.timeout)  # every worker is ready: go
        except threading.BrokenBarrierError:
            pass  # some are still preparing: the ready ones go now
        start = time.perf_counter()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        duration = timedelta(seconds=time.perf_counter() - start)
        results: Counter[str] = Counter()
        for outcome in outcomes:
            if outcome is _PENDING:
                outcome = "error: timeout"
            results[outcome if isinstance(outcome, str) else str(outcome)] += 1
        return duration, dict(sorted(results.items()))

    def rush_and_report(self, file: Optional[TextIO] = None) -> Tuple[timedelta, Dict[str, int]]:
        """:meth:`rush`, then prints the report (to ``file``, default stdout)::

            9 threads completed in .747115, results:
                attempted: 9
        """
        duration, results = self.rush()
        print(self.report(duration, results), file=file or sys.stdout)
        return duration, results

    def report(self, duration: timedelta, results: Dict[str, int]) -> str:
        seconds = f"{duration.total_seconds():.6f}"
        if seconds.startswith("0."):
            seconds = seconds[1:]  # Rush prints ".747115"
        lines = [f"{self.thread_count} threads completed in {seconds}, results:"]
        lines += [f"    {outcome}: {count}" for outcome, count in results.items()]
        return "\n".join(lines)
