"""At most 10 concurrent calls to a partner API across a fleet (LEASE).

A fleet of 3 processes (servers of one service, here on one machine), each
with 8 worker threads, makes 48 calls to a partner API that must never see
more than 10 calls in flight. Every worker of every process shares one
Semaphore(limit=10) on one key: each call runs in ``partner.hold()``, which
waits on the server (first come first served) for one of the 10 places,
renews the lease in the background while the call runs, and releases it
after. A process that died holding a place would free it within the ttl.

The calls count themselves fleet-wide in Redis (INCR as a call starts,
DECR as it ends): the highest count is the concurrency the partner saw.
Checks: all 48 calls made, the peak at most 10, and reached: the 24
workers start together (a fleet-wide barrier in Redis, so a slow process
start does not serialise them) and each call lasts 0.5 to 1 s.
"""
import multiprocessing
import os
import random
import sys
import threading
import time

import redis

from redis_throttle import Semaphore

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
LIMIT, PROCESSES, WORKERS, CALLS = 10, 3, 8, 2


def process(fleet):
    """One process of the fleet: WORKERS threads, CALLS calls each.
    Returns (calls made, the highest in-flight count this process saw)."""
    r = redis.Redis.from_url(URL, socket_timeout=10)
    partner = Semaphore(r, f"example:partner-api:{fleet}", limit=LIMIT, ttl=5)
    in_flight = f"example:partner-api:{fleet}:in-flight"
    ready = f"example:partner-api:{fleet}:ready"
    made, peak, errors = [0], [0], []
    lock = threading.Lock()

    def worker(seed):
        rng = random.Random(seed)
        try:
            r.incr(ready)  # the barrier: every worker of the fleet starts together
            deadline = time.monotonic() + 60
            while int(r.get(ready) or 0) < PROCESSES * WORKERS and time.monotonic() < deadline:
                time.sleep(0.01)
            for _ in range(CALLS):
                with partner.hold(timeout=60):  # LEASE ... 10 5000 BLOCK 60000
                    now = r.incr(in_flight)  # the partner's view: calls in flight fleet-wide
                    time.sleep(rng.uniform(0.5, 1.0))  # the call to the partner
                    r.decr(in_flight)
                with lock:
                    made[0] += 1
                    peak[0] = max(peak[0], now)
        except Exception as e:  # reported to the parent
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(os.getpid() * 100 + w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r.close()
    if errors:
        raise RuntimeError(errors)
    return made[0], peak[0]


if __name__ == "__main__":
    fleet = os.getpid()
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.map(process, [fleet] * PROCESSES)
    calls = sum(made for made, _ in results)
    peak = max(p for _, p in results)
    print(f"partner_concurrency: {PROCESSES} processes x {WORKERS} workers, {calls} calls, "
          f"peak {peak} in flight (limit {LIMIT})")
    assert calls == PROCESSES * WORKERS * CALLS, results
    assert peak <= LIMIT, results
    if peak != LIMIT:  # 24 workers for 10 places: the limit is reached unless something serialises
        sys.exit(f"the peak {peak} never reached the limit {LIMIT}")
