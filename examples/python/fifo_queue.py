"""A per-service FIFO pacing queue (the API Rate Limiter seed) in Redis.

Ten threads join the "ec2" queue (one call every 50 ms); each is released
in turn, one interval apart, in the order the server queued them.
"""
import os
import threading
import time

import redis

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
RATES_MS = {"ec2": 50, "s3": 20}      # one call every N ms per service
released = []
lock = threading.Lock()


def paced(service, fn, *args):
    r = redis.Redis.from_url(URL, socket_timeout=30)
    permit = r.execute_command("PERMIT", f"example:queue:{service}:{os.getpid()}",
                               RATES_MS[service], 1000, "BLOCK", 0)
    if permit is None:
        raise RuntimeError("queue full")
    return fn(permit[1], *args)


def call(valid_at_ms, i):
    with lock:
        released.append((time.monotonic(), valid_at_ms, i))


threads = [threading.Thread(target=paced, args=("ec2", call, i)) for i in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
released.sort()
valid = [v for _, v, _ in released]
assert valid == sorted(valid), "released out of slot order"
gaps = [b - a for a, b in zip(valid, valid[1:])]
assert all(g >= RATES_MS["ec2"] for g in gaps), gaps
print(f"fifo_queue: 10 callers released in slot order, gaps {gaps} ms")
