"""LimitLion's loop on THROTTLE: do work while allowed, sleep retry_after.

Runs for ~1.5 s against a limit of 5/s with a burst of 2 x 5 x 1 s = 10
tokens, and checks that no more than limit + rps * elapsed calls got through.
"""
import os
import time

import redis

r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
key = f"example:limitlion:{os.getpid()}"
start = time.monotonic()
done = 0
while time.monotonic() - start < 1.5:
    allowed, remaining, retry_after_ms, reset_after_ms, limit = r.execute_command(
        "THROTTLE", key, 5, 2, 1)
    if allowed:
        done += 1                      # do work here
    else:
        time.sleep(retry_after_ms / 1000)
elapsed = time.monotonic() - start
bound = 10 + 5 * elapsed
assert 10 <= done <= bound + 1, (done, bound)
# The same without polling: WAIT returns when the token is due.
t = time.monotonic()
reply = r.execute_command("THROTTLE", key, 5, 2, 1, 1, "WAIT", 5000)
assert reply[0] == 1, reply
print(f"limitlion_loop: {done} calls in {elapsed:.2f}s (bound {bound:.1f}); "
      f"WAIT held {1000 * (time.monotonic() - t):.0f} ms")
