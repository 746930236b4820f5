"""Many workers share one paced API through PERMIT BLOCK.

Eight threads each make 2 calls to a "partner API" that allows one call
every 200 ms fleet-wide. At most 5 may wait for a slot; each waits at most
3 s. Checks that the calls really are >= 200 ms apart (by the server's
valid_at) and prints the schedule.
"""
import os
import threading
import time

import redis

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
KEY = f"example:partner-api:{os.getpid()}"
INTERVAL_MS = 200
slots, busy, lock = [], [0], threading.Lock()


def call_partner_api(worker):
    r = redis.Redis.from_url(URL, socket_timeout=10)
    for _ in range(2):
        permit = r.execute_command("PERMIT", KEY, INTERVAL_MS, 5, "BLOCK", 3000)
        if permit is None:             # queue full, or slot too far away
            with lock:
                busy[0] += 1
            time.sleep(0.2)
            continue
        wait_ms, valid_at_ms, expires_at_ms = permit
        assert wait_ms == 0            # BLOCK replies when the slot has come
        with lock:
            slots.append((valid_at_ms, worker))


threads = [threading.Thread(target=call_partner_api, args=(w,)) for w in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
slots.sort()
gaps = [b[0] - a[0] for a, b in zip(slots, slots[1:])]
assert slots and all(g >= INTERVAL_MS for g in gaps), gaps
print(f"paced_workers: {len(slots)} calls, {busy[0]} told busy, "
      f"min gap {min(gaps) if gaps else '-'} ms (interval {INTERVAL_MS} ms)")
