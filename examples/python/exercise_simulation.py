"""The distributed throttle exercise's simulation, on redis_throttle.exercise.

Seven worker threads call a throttled fake_request() in a loop, as the
exercise's main.py does: the decorator takes a permit (PERMIT), sleeps
until it is valid and calls the function, or returns None when no permit
came (max_permits already waiting); a worker that got None sleeps a random
0 to min_interval seconds and tries again. Runs min_interval 0.3 s, then
3 s, max_permits 2, for a few seconds each (`python exercise_simulation.py
[seconds for 0.3] [seconds for 3]`, default 3 and 10).

Checks, on the server's slots (each permit's valid_at, the server's clock):
consecutive permits are at least min_interval apart (to the ms: an
immediate permit's valid_at is rounded down, a reserved one's up), and no permit was
granted with more than max_permits waiting (time_to_wait_ms <= max_permits
x min_interval, which is "at most max_permits waiting, this one included"
on a chain of slots one interval apart). Every permit the decorator got is
seen through its log record ("Received permit: ...").
"""
import logging
import os
import random
import sys
import threading
import time

import redis

from redis_throttle.exercise import redis_throttle

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
NUM_WORKERS = 7
MAX_PERMITS = 2
logging.basicConfig(level=logging.INFO, format="%(thread)d %(asctime)s %(message)s")
log = logging.getLogger("simulation")


class Permits(logging.Handler):
    """Collects the permits the decorator logs."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        if record.getMessage().startswith("Received permit") and record.args:
            self.seen.append(record.args[0])


def simulate(min_interval: float, seconds: float) -> None:
    r = redis.Redis.from_url(URL)
    key = f"example:exercise:{os.getpid()}:{min_interval}"
    permits = Permits()
    logging.getLogger("redis_throttle.exercise").addHandler(permits)
    calls = []
    stop = time.monotonic() + seconds

    @redis_throttle(r, min_interval=min_interval, max_reserved_permits=MAX_PERMITS, key=key)
    def fake_request(tid):
        log.info("fake_request for %d", tid)
        calls.append(tid)
        return "foo"

    def process_task(tid):
        log.info("Starting task: %d", tid)
        while time.monotonic() < stop:
            if fake_request(tid) is None:
                time.sleep(random.uniform(0, min_interval))

    log.info("Simulating num_workers=%d with min_interval=%g, max_permits=%d", NUM_WORKERS, min_interval, MAX_PERMITS)
    threads = [threading.Thread(target=process_task, args=(n,)) for n in range(NUM_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logging.getLogger("redis_throttle.exercise").removeHandler(permits)

    interval_ms = round(min_interval * 1000)
    granted = sorted((p for p in permits.seen if p is not None), key=lambda p: p.valid_at)
    refused = sum(1 for p in permits.seen if p is None)
    gaps = [b.valid_at - a.valid_at for a, b in zip(granted, granted[1:])]
    # an immediate permit's valid_at is the server's ms rounded down, a reserved
    # one's rounded up: 1 ms less between a reserved slot and an immediate one
    short = [(a, b) for a, b in zip(granted, granted[1:]) if b.valid_at - a.valid_at < interval_ms - (b.time_to_wait_ms == 0)]
    assert granted and not short, short
    assert all(p.time_to_wait_ms <= MAX_PERMITS * interval_ms for p in granted), granted
    assert 0 < len(calls) <= len(granted), (len(calls), len(granted))
    print(
        f"exercise_simulation: min_interval {min_interval} s: {len(granted)} permits "
        f"({refused} refused, {len(granted) - len(calls)} expired), slots >= {interval_ms} ms apart "
        f"(smallest gap {min(gaps) if gaps else '-'} ms), longest wait {max(p.time_to_wait_ms for p in granted)} ms "
        f"<= {MAX_PERMITS} x {interval_ms} ms"
    )


if __name__ == "__main__":
    short_s = float(sys.argv[1]) if len(sys.argv) > 1 else 3
    long_s = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    simulate(0.3, short_s)
    simulate(3, long_s)
