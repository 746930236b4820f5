"""ApiQueue's interface, with one queue shared by two processes, and a live
reset_rate.

This process and a child process each start an ApiQueue named
"example:apiqueue:<pid>" at one caller every 300 ms, and each enqueues 10
callers from threads. Once all 20 are queued, and 0.7 s later, this process
calls reset_rate(20): every caller still waiting, in either process, is re-spaced
to 20 ms at once.

Checks, on the server's slots (each released caller's valid_at): the 20
callers of both processes form one queue (no two slots closer than 20 ms),
slots before the reset are at least 300 ms apart, and the callers still
waiting after the reset are all released within 20 ms each after it,
instead of 300 ms each.
"""
import json
import os
import subprocess
import sys
import threading
import time

import redis

from redis_throttle.apiqueue import ApiQueue

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CALLERS = 10


def server_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def run_callers(queue: ApiQueue, enqueued: threading.Barrier) -> list:
    waiters = []
    lock = threading.Lock()

    def caller():
        waiter = queue.enqueue()
        with lock:
            waiters.append(waiter)
        enqueued.wait()
        while waiter.waiting is True:  # ApiQueue's way; waiter.wait() blocks instead
            time.sleep(0.001)

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(w.permit.valid_at_ms for w in waiters)


def child(name: str) -> None:
    queue = ApiQueue(300, name=name)
    queue.start()
    enqueued = threading.Barrier(CALLERS + 1)
    slots = []
    callers = threading.Thread(target=lambda: slots.extend(run_callers(queue, enqueued)))
    callers.start()
    enqueued.wait()
    print("enqueued", flush=True)
    callers.join()
    queue.stop(True)
    print(json.dumps(slots))


def main() -> None:
    name = f"example:apiqueue:{os.getpid()}"
    queue = ApiQueue(300, name=name)  # connects to $REDIS_URL
    queue.start()
    other = subprocess.Popen([sys.executable, __file__, "--child", name], stdout=subprocess.PIPE, text=True)
    mine = []
    enqueued = threading.Barrier(CALLERS + 1)
    callers = threading.Thread(target=lambda: mine.extend(run_callers(queue, enqueued)))
    callers.start()
    enqueued.wait()
    assert other.stdout.readline() == "enqueued\n"  # all 20 callers are in the queue
    time.sleep(0.7)
    r = redis.Redis.from_url(URL)
    late_before = r.info("throttle")["throttle_blocked_late"]
    before = server_ms(r)
    queue.reset_rate(20)  # every waiting caller, in both processes, re-spaced now
    after = server_ms(r)
    callers.join()
    theirs = json.loads(other.stdout.readline())
    other.wait(60)
    assert other.returncode == 0
    queue.stop(True)

    slots = sorted(mine + theirs)
    assert len(slots) == 2 * CALLERS
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    # one queue for both processes (to the ms: a caller released at once has
    # the server's ms rounded down, a held one rounded up)
    assert all(g >= 20 - 1 for g in gaps), gaps
    old = [s for s in slots if s <= before]
    assert all(b - a >= 300 - 1 for a, b in zip(old, old[1:])), old
    respaced = [s for s in slots if s > after]
    assert len(respaced) >= 5, (len(respaced), slots)  # most were still waiting at the reset
    if r.info("throttle")["throttle_blocked_late"] == late_before:
        # the k-th re-spaced caller within k + 1 new intervals of the reset
        assert all(s <= after + (k + 1) * 20 + 1 for k, s in enumerate(respaced)), (after, respaced)
    else:
        # a busy server released someone late: everyone behind moved as much
        assert respaced[-1] - after < len(respaced) * 300, (after, respaced)
    print(
        f"apiqueue_queue: {len(slots)} callers from 2 processes in one queue; {len(old)} at 300 ms, "
        f"then reset_rate(20): {len(respaced)} re-spaced, the last {respaced[-1] - after} ms after the reset "
        f"(at 300 ms: {len(respaced) * 300} ms)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
