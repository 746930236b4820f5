"""redis_throttle.limitlion against LimitLion 1.1 itself, call by call.

LimitLion comes out of ``../shared/peers/limitlion-6411f9f.tar.gz`` (or
``$LIMITLION_TARBALL``) at run time and runs unchanged: its Lua script, on a
plain server. The same seeded random sequence of calls (``throttle`` with
random and changing rps, burst, window, fractional tokens and knobs TTLs;
``throttle_set`` with good and bad values; ``throttle_get``, ``_reset``,
``_delete``; hand-written knob and bucket hashes; frozen-time steps) runs

- through LimitLion on a plain server (the reference),
- through the drop-in on a server with the module, and
- on the same keys of one server with the module, each call through
  LimitLion's script or the drop-in at random: the mixed fleet of a
  rolling deploy.

After every call the three agree: the return value (for an error, its
exception type; for ``throttle_set``, also its message), both hashes, and
both expiry times (each server's expiry minus its own clock before and
after the call must give overlapping ranges, so no timing tolerance is
needed). ``LIMITLION_CALLS`` (default 20,000 ``throttle`` calls) and
``LIMITLION_SEED`` size and repeat a run.

``test_replication`` checks that a replica holds exactly the master's
hashes and expiry times after both kinds of calls.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import redis

import redis_throttle.limitlion as dropin
import servers

CALLS = int(os.environ.get("LIMITLION_CALLS", "20000"))
SEED = int(os.environ.get("LIMITLION_SEED", "20260521"))


def tarball() -> Path:
    env = os.environ.get("LIMITLION_TARBALL")
    return Path(env) if env else servers.REPO.parent / "shared/peers/limitlion-6411f9f.tar.gz"


@pytest.fixture(scope="session")
def limitlion(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """LimitLion's own package, unpacked from the tarball (once per session:
    test_limitlion.py uses this fixture under another name, and Python keeps
    the first `limitlion` it imports)."""
    cached = sys.modules.get("limitlion")
    if cached is not None:
        assert Path(cached.__file__ or "").is_relative_to(tmp_path_factory.getbasetemp()), cached.__file__
        return cached
    path = tarball()
    if not path.is_file():
        pytest.fail(f"no LimitLion tarball at {path} (set LIMITLION_TARBALL)")
    root = tmp_path_factory.mktemp("limitlion")
    with tarfile.open(path) as t:
        members = [m for m in t.getmembers() if m.name.startswith("limitlion/limitlion/")]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        t.extractall(root, members=members, **safe)
    sys.path.insert(0, str(root / "limitlion"))
    try:
        module = importlib.import_module("limitlion")
    finally:
        sys.path.remove(str(root / "limitlion"))
    assert Path(module.__file__).is_relative_to(root), module.__file__
    return module


def plain_server() -> servers.Server:
    """A server without the module (LimitLion needs none)."""
    saved = servers.WITHOUT_MODULE
    servers.WITHOUT_MODULE = True
    try:
        return servers.Server()
    finally:
        servers.WITHOUT_MODULE = saved


@pytest.fixture
def plain() -> Iterator[redis.Redis]:
    s = plain_server()
    client = s.client(socket_timeout=10)
    yield client
    client.close()
    s.stop()


# ---------------------------------------------------------------------------
# Random calls.

RPS = [1, 5, 10, 2, 0.5, 0.2, 0.6, 2.2, 0.0001, 0.3, 1.5, 100, 0.1, 7, 0, -1, 3.3, 0.125, "5", "0.5"]
BURST = [1, 2, 3.3, 10, 1.5, 0.5, 4, 1.1, "2"]
WINDOW = [1, 2, 5, 10, 0.5, 0.25, 3.7, 1.5, 60, 7, "5"]
TOKENS = [1, 1, 1, 1, 2, 0, 0.5, 1.5, 2.2, 3, 10]
KNOBS_TTL = [dropin.DEFAULT_KNOBS_TTL] * 4 + [0, 10, 1, 100000]
BAD_SET = ["a", -100, "-100", -1, float("nan")]
POOLS: Dict[str, List[Any]] = {"rps": RPS, "burst": BURST, "window": WINDOW, "knobs_ttl": KNOBS_TTL}


class Frozen:
    """The frozen clock of a sequence (LimitLion's testing keys)."""

    def __init__(self, rng: random.Random) -> None:
        self.second = 1_700_000_000 + rng.randrange(100_000_000)
        self.micro = rng.randrange(1_000_000)

    def step(self, rng: random.Random, window: float) -> None:
        kind = rng.randrange(10)
        if kind == 0:
            us = 0
        elif kind < 3:
            us = rng.randrange(1_000_000)
        elif kind < 5:
            us = int(rng.randrange(4) * window * 1e6) + rng.randrange(3) - 1
        elif kind == 5:
            us = rng.randrange(30_000_000)
        elif kind == 6:
            us = -rng.randrange(2_000_000)  # the clock steps back
        elif kind == 7:
            us = 1_000_000 - self.micro  # a whole second
        else:
            us = rng.randrange(3_000_000)
        total = self.second * 1_000_000 + self.micro + us
        self.second, self.micro = divmod(total, 1_000_000)

    def keys(self) -> Dict[str, int]:
        return {"frozen_second": self.second, "frozen_microsecond": self.micro}


Op = Tuple[Any, ...]


def random_op(rng: random.Random, name: str, defaults: Dict[str, Any]) -> Op:
    r = rng.randrange(100)
    if r < 72:
        tokens: Any = rng.choice(TOKENS)
        if rng.randrange(12) == 0:
            try:
                tokens = float(defaults["rps"]) * float(defaults["burst"]) * float(defaults["window"])
            except ValueError:
                pass
        return ("throttle", name, defaults["rps"], defaults["burst"], defaults["window"], tokens, defaults["knobs_ttl"])
    if r < 80:
        values = [rng.choice(RPS[:14]), rng.choice(BURST), rng.choice(WINDOW)]
        for i in range(3):
            if rng.randrange(6) == 0:
                values[i] = None
            elif rng.randrange(15) == 0:
                values[i] = rng.choice(BAD_SET)
        ttl = rng.choice([None, None, 10, 1000])
        return ("set", name, *values, ttl)
    if r < 84:
        return ("get", name)
    if r < 86:
        return ("reset", name)
    if r < 87:
        return ("delete", name)
    if r < 94:
        key = dropin.KEY_FORMAT.format(name) + ":knobs"
        field = rng.choice(["rps", "burst", "window"])
        value = rng.choice({"rps": RPS, "burst": BURST, "window": WINDOW}[field])
        return ("hset", key, field, value)
    key = dropin.KEY_FORMAT.format(name)
    if rng.randrange(2):
        return ("hset", key, "tokens", rng.choice([0, 1, 2, 3, 24, 2.5, 0.1, 100000, "junk"]))
    return ("hset", key, "refreshed", rng.choice([0, 1_700_000_000, "junk"]))


def run_op(module: Any, client: redis.Redis, op: Op) -> Any:
    """Runs `op` through `module` (LimitLion or the drop-in) on `client`;
    returns its result, or for an exception ("raised", type, message)."""
    own = sys.modules[module.__name__ + ".throttle"]  # the package's `throttle` is the function
    if own.redis is not client:
        module.throttle_configure(client, testing=True)
    kind, *args = op
    try:
        if kind == "throttle":
            return module.throttle(*args)
        if kind == "set":
            name, rps, burst, window, ttl = args
            return module.throttle_set(name, rps, burst, window, knobs_ttl=ttl)
        if kind == "get":
            return module.throttle_get(*args)
        if kind == "reset":
            return module.throttle_reset(*args)
        if kind == "delete":
            return module.throttle_delete(*args)
        if kind == "hset":
            return client.hset(*args)
        raise AssertionError(op)
    except redis.ResponseError:
        return ("raised", "ResponseError", None)  # the text is the script's or the module's
    except (ValueError, IndexError, TypeError) as e:
        return ("raised", type(e).__name__, str(e))


Observed = Tuple[Any, Dict[str, Any], int]


class Side:
    """One server (and database) that runs the sequence.

    A call takes two round trips besides its own: `prepare` reads what the
    previous call left (each key's fields and expiry, the clock, then takes
    the expiry off, so that real time, which passes differently on each
    server, decides nothing later), then sets this call's frozen clock and
    reads the clock before it, all in one pipeline; `call` runs it."""

    def __init__(self, label: str, client: redis.Redis, choose: Callable[[], Any]) -> None:
        self.label = label
        self.client = client
        self.choose = choose
        self.t0 = 0
        self.pending: Optional[Tuple[Any, List[str], int]] = None  # result, keys, t0 of the last call

    def prepare(self, clock: Optional[Dict[str, int]]) -> Optional[Observed]:
        """Returns the last call's result, each of its keys' (fields,
        expiry, expiry minus the clock after and before the call), and how
        long the call and the reads took (ms); then sets the frozen clock's
        keys to `clock` (if given) and reads the clock."""
        keys = self.pending[1] if self.pending else []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
            pipe.execute_command("PEXPIRETIME", key)
        pipe.time()
        for key in keys:
            pipe.persist(key)
        if clock is not None:
            pipe.mset(clock)
        pipe.time()
        replies = pipe.execute()
        seconds, micros = replies[-1]
        self.t0 = seconds * 1000 + micros // 1000
        if self.pending is None:
            return None
        result, keys, t0 = self.pending
        self.pending = None
        t1 = replies[2 * len(keys)][0] * 1000 + replies[2 * len(keys)][1] // 1000
        state: Dict[str, Any] = {}
        for i, key in enumerate(keys):
            fields, expire_at = replies[2 * i], replies[2 * i + 1]
            state[key] = (fields, expire_at, (expire_at - t1, expire_at - t0))
        return result, state, t1 - t0

    def call(self, op: Op, keys: List[str]) -> None:
        """Runs the op (after `prepare`); `prepare` returns what it did."""
        self.pending = (run_op(self.choose(), self.client, op), keys, self.t0)

    def copy_from(self, reference: "Side", keys: List[str]) -> None:
        for key in keys:
            dump = reference.client.dump(key)
            self.client.delete(key)
            if dump is not None:
                self.client.restore(key, 0, dump)


def _time_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def same_expiry(a: Tuple[Any, ...], b: Tuple[Any, ...]) -> bool:
    """Both without expiry (or key), or expiring the same time after their
    own calls (every expiry is taken off after each call, so one that is
    there was set by this call)."""
    _, at_a, (lo_a, hi_a) = a
    _, at_b, (lo_b, hi_b) = b
    if at_a < 0 or at_b < 0:
        return at_a == at_b
    return lo_a <= hi_b and lo_b <= hi_a


#: A call (with its reads) this slow may have outlived a 1 s expiry it set:
#: its state is not compared (its result still is), and the other servers
#: take the reference's state. The test counts these and allows a few (a
#: loaded machine).
STALL_MS = 1000


def check(reference: Observed, other: Observed, context: str) -> bool:
    """Compares; False when a stall made the state incomparable."""
    assert other[0] == reference[0], f"result: {context}"
    if max(reference[2], other[2]) >= STALL_MS:
        return False
    for key, ref in reference[1].items():
        got = other[1][key]
        assert got[0] == ref[0], f"{key} fields {got[0]}: {context}"
        assert same_expiry(ref, got), f"{key} expiry {ref[1:3]} vs {got[1:3]}: {context}"
    return True


def test_differential_and_mixed_fleet(limitlion: ModuleType, plain: redis.Redis, r: redis.Redis, server: servers.Server) -> None:
    rng = random.Random(SEED)
    mixed = server.client(db=2, socket_timeout=10)
    mixed.flushdb()
    reference = Side("LimitLion on a plain server", plain, lambda: limitlion)
    module_only = Side("the drop-in", r, lambda: dropin)
    fleet = Side("mixed fleet", mixed, lambda: rng.choice([limitlion, dropin]))
    sides = [reference, module_only, fleet]
    calls = sequence = stalls = 0
    outcomes: Dict[str, int] = {}
    last: Optional[Tuple[Op, List[str], str]] = None  # the call each side ran last

    def compare(clock: Optional[Dict[str, int]]) -> None:
        """Reads what the last call did on each side (setting the next
        call's clock in the same round trip) and compares."""
        nonlocal calls, stalls
        ref, module, fleet = (side.prepare(clock) for side in sides)
        if last is None:
            return
        op, keys, context = last
        context += f": LimitLion gave {ref}"
        compared = check(ref, module, "drop-in, " + context)
        compared &= check(ref, fleet, "mixed fleet, " + context)
        if not compared:
            stalls += 1
            module_only.copy_from(reference, keys)
            fleet.copy_from(reference, keys)
        if op[0] == "throttle":
            calls += 1
            res = ref[0]
            kind = "error" if res[0] == "raised" else ("allowed" if res[0] else "denied")
            outcomes[kind] = outcomes.get(kind, 0) + 1

    try:
        while calls < CALLS:
            sequence += 1
            name = f"seq{sequence}"
            keys = [dropin.KEY_FORMAT.format(name), dropin.KEY_FORMAT.format(name) + ":knobs"]
            frozen = Frozen(rng)
            defaults = {field: rng.choice(pool) for field, pool in POOLS.items()}
            for _ in range(20 + rng.randrange(100)):
                clock: Optional[Dict[str, int]] = None
                if rng.randrange(100) < 55:
                    frozen.step(rng, float(defaults["window"]))
                    clock = frozen.keys()  # each side writes it just before its call
                if rng.randrange(100) < 3:  # the callers' defaults change (a deploy)
                    field = rng.choice(list(POOLS))
                    defaults[field] = rng.choice(POOLS[field])
                op = random_op(rng, name, defaults)
                compare(clock)
                for side in sides:
                    side.call(op, keys)
                last = (op, keys, f"seed {SEED}, sequence {sequence}, {op}, frozen {frozen.keys()}")
        compare(None)
    finally:
        mixed.close()
        unconfigure(limitlion)
    print(f"{calls} throttle calls in {sequence} sequences agree: {outcomes}; {stalls} stalls")
    assert stalls <= CALLS // 100, f"{stalls} calls took over {STALL_MS} ms: the machine is too slow to compare"
    # The sequence must exercise each outcome, or agreeing proves little.
    assert outcomes.get("allowed", 0) > CALLS / 10 and outcomes.get("denied", 0) > CALLS / 20, outcomes


def test_replication(limitlion: ModuleType) -> None:
    master = servers.start_module_server()
    replica = servers.start_module_server("--replicaof", "127.0.0.1", str(master.port))
    m = master.client(socket_timeout=10)
    s = replica.client(socket_timeout=10)
    try:
        deadline = time.monotonic() + 30
        while s.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync within 30 s"
            time.sleep(0.05)
        rng = random.Random(SEED + 1)
        frozen = Frozen(rng)
        m.mset(frozen.keys())
        answered = 0  # drop-in throttle calls that answered (not an error)
        for _ in range(2000):
            name = f"r{rng.randrange(20)}"
            defaults = {field: rng.choice(pool) for field, pool in POOLS.items()}
            if rng.randrange(2):
                frozen.step(rng, 1.0)
                m.mset(frozen.keys())
            module = rng.choice([limitlion, dropin])
            op = random_op(rng, name, defaults)
            result = run_op(module, m, op)
            if module is dropin and op[0] == "throttle" and result[0] != "raised":
                answered += 1
        # A snapshot of the master (one transaction: one instant), then of
        # the replica once it has applied everything up to it.
        keys = sorted(set(m.scan_iter(count=1000)))
        master_before, _, master_state = _snapshot(m, keys)
        offset = m.info("replication")["master_repl_offset"]
        while s.info("replication")["master_repl_offset"] != offset:
            assert time.monotonic() < deadline + 60, "the replica did not catch up"
            time.sleep(0.05)
        _, replica_after, replica_state = _snapshot(s, keys)
        hashes = between = 0
        for key in keys:
            expire_at = master_state[key][2]
            if master_before <= expire_at <= replica_after:
                between += 1  # expired while the snapshots were taken: either is right
                continue
            assert replica_state[key] == master_state[key], key
            hashes += master_state[key][0] == b"hash"
        assert hashes >= 20 and between <= len(keys) // 10, (hashes, between, len(keys))
        assert answered > 300, answered
    finally:
        unconfigure(limitlion)
        m.close()
        s.close()
        replica.stop()
        master.stop()


def _snapshot(client: redis.Redis, keys: List[Any]) -> Tuple[int, int, Dict[Any, Tuple[Any, ...]]]:
    """Each key's type, fields and expiry, in one transaction (one
    instant), and the clock (ms) before and after it. A key whose expiry
    has passed reads as gone (a replica too)."""
    before = _time_ms(client)
    pipe = client.pipeline(transaction=True)
    for key in keys:
        pipe.type(key)
        pipe.execute_command("HGETALL", key)  # an error for a non-hash: not compared
        pipe.execute_command("PEXPIRETIME", key)
    pipe.time()
    replies = pipe.execute(raise_on_error=False)
    after = replies[-1][0] * 1000 + replies[-1][1] // 1000
    state = {}
    for i, key in enumerate(keys):
        kind, fields, expire_at = replies[3 * i : 3 * i + 3]
        state[key] = (kind, fields if kind == b"hash" else None, expire_at)
    return before, after, state


def unconfigure(limitlion: ModuleType) -> None:
    """Both packages back to "not configured" (LimitLion's own
    throttle_configure cannot take None)."""
    own = sys.modules[limitlion.__name__ + ".throttle"]
    own.redis = own.throttle_script = None
    dropin.throttle_configure(None)

