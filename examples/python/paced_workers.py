"""Many workers share one paced API through a Pacer (PERMIT ... BLOCK).

Eight threads each make 2 calls to a "partner API" that allows one call
every 100 ms fleet-wide. At most 5 callers may wait for a slot, each for at
most 1 s; a worker told "busy" backs off and asks again, so all 16 calls
happen. Checks, in the main thread: no worker failed, exactly 16 calls,
each released at its slot, and the slots (the server's valid_at) at least
100 ms apart.
"""
import os
import threading
import time

import redis

from redis_throttle import Pacer

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
INTERVAL_MS = 100
r = redis.Redis.from_url(URL, socket_timeout=10)
partner = Pacer(r, f"example:partner-api:{os.getpid()}", interval=INTERVAL_MS / 1000, max_waiting=5)
calls, errors, busy = [], [], [0]
lock = threading.Lock()


def worker(w):
    try:
        for _ in range(2):
            while (permit := partner.block(timeout=1)) is None:  # busy: back off, ask again
                with lock:
                    busy[0] += 1
                time.sleep(INTERVAL_MS / 1000)
            with lock:
                calls.append((permit.valid_at_ms, permit.time_to_wait_ms, w))
    except Exception as e:  # reported by the main thread
        errors.append(e)


threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert errors == [], errors
assert len(calls) == 16, calls
assert all(wait == 0 for _, wait, _ in calls), calls  # BLOCK answers when the slot has come
slots = sorted(v for v, _, _ in calls)
gaps = [b - a for a, b in zip(slots, slots[1:])]
assert all(g >= INTERVAL_MS for g in gaps), gaps
print(f"paced_workers: 16 calls, {busy[0]} times told busy, "
      f"min gap {min(gaps)} ms (interval {INTERVAL_MS} ms)")
