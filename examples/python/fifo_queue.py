"""A per-service FIFO pacing queue (the API Rate Limiter seed) in Redis.

One Pacer per service: every thread of every process that uses the same
key joins the same queue. Ten threads call through the "ec2" queue (one call
every 50 ms) and five through "s3" (one every 20 ms), all at once. Checks,
in the main thread: no thread failed, every call ran exactly once, and each
queue's slots (the server's valid_at) are at least its interval apart.
"""
import os
import threading

import redis

from redis_throttle import Pacer

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
RATES_MS = {"ec2": 50, "s3": 20}  # one call every N ms per service
r = redis.Redis.from_url(URL, socket_timeout=None)  # held up to max_waiting intervals
queues = {
    # grace=1: released up to 1 s late (a busy server), a caller still goes
    service: Pacer(r, f"example:queue:{service}:{os.getpid()}", interval=ms / 1000, max_waiting=1000, grace=1)
    for service, ms in RATES_MS.items()
}
released, errors = [], []
lock = threading.Lock()


def paced(service, fn, *args):
    with queues[service].slot() as permit:  # waits for this caller's turn
        return fn(service, permit, *args)


def describe_instances(service, permit, i):
    with lock:
        released.append((service, permit.valid_at_ms, i))


def caller(service, i):
    try:
        paced(service, describe_instances, i)
    except Exception as e:  # reported by the main thread
        errors.append(e)


threads = [threading.Thread(target=caller, args=("ec2", i)) for i in range(10)]
threads += [threading.Thread(target=caller, args=("s3", i)) for i in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert errors == [], errors
for service, count in (("ec2", 10), ("s3", 5)):
    mine = sorted((v, i) for s, v, i in released if s == service)
    assert sorted(i for _, i in mine) == list(range(count)), mine
    gaps = [b[0] - a[0] for a, b in zip(mine, mine[1:])]
    assert all(g >= RATES_MS[service] for g in gaps), (service, gaps)
    print(f"fifo_queue: {count} {service} calls, one at a time, gaps {gaps} ms")
