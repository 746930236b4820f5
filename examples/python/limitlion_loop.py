"""LimitLion's loop on the module: the same code, one import line changed.

Calls throttle(name, 5, 2, 1) (5 per second, a burst of 2 x 5 x 1 s = 10
tokens) for about 1.5 s, sleeping `sleep` seconds when denied, and checks
the limit's guarantee on the server's clock: at most 10 + 5 x elapsed calls
got through, and at least the 10 of the full bucket. Then waits for one
more token with throttle_wait (the server holds the call until it is due).
"""
import os
import time

import redis

from redis_throttle.limitlion import throttle, throttle_configure, throttle_wait

r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
throttle_configure(r)
name = f"example:{os.getpid()}"


def server_seconds():
    seconds, micros = r.time()
    return seconds + micros / 1e6


start, t0 = time.monotonic(), server_seconds()
done = 0
while time.monotonic() - start < 1.5:
    allowed, tokens, sleep = throttle(name, 5, 2, 1)
    if allowed:
        done += 1  # do work here
    else:
        time.sleep(sleep)
elapsed = server_seconds() - t0
bound = 10 + 5 * elapsed
assert 10 <= done <= bound, (done, bound)

t = time.monotonic()
allowed, tokens, sleep = throttle_wait(name, 5, 2, 1)()
assert allowed, (allowed, tokens, sleep)
print(f"limitlion_loop: {done} calls in {elapsed:.2f} s (bound {bound:.1f}); "
      f"throttle_wait held {1000 * (time.monotonic() - t):.0f} ms")
