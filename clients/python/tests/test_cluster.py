"""The package on a 3-master Redis Cluster: sync RedisCluster and the
asyncio cluster client; keys routed to their slot's master, THROTTLE.ALL
needing one slot (hash tags), the test clock on every node, and LimitLion's
functions."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisClusterException

import servers
from redis_throttle import (
    AsyncLimiter,
    AsyncPacer,
    AsyncThrottleClock,
    Limiter,
    Pacer,
    ThrottleClock,
    allow_all,
    allow_all_async,
    limitlion,
)


def slow(client, key, capacity, cls=Limiter):
    return cls(client, key, rps=Decimal("0.001"), burst=capacity * 1000, window=1)


def test_limiters_on_keys_of_every_master(rc):
    keys = [f"user:{i}" for i in range(30)]
    owners = {rc.get_node_from_key(k).name for k in keys}
    assert len(owners) == 3  # the keys are spread over the three masters
    for k in keys:
        lim = slow(rc, k, 3)
        assert [lim.allow().remaining for _ in range(3)] == [2, 1, 0]
        assert not lim.allow()
        assert lim.refund(1) == 1 and lim.get().tokens == 1
    for node in rc.get_primaries():
        held = rc.execute_command("DBSIZE", target_nodes=node)
        assert held == sum(1 for k in keys if rc.get_node_from_key(k).name == node.name)


def test_knobs_and_errors_on_a_cluster(rc):
    lim = slow(rc, "tuned", 10)
    lim.allow()
    lim.set_knobs(rps=1, burst=1, window=2)
    assert lim.get().limit == 2 and lim.allow().limit == 2
    assert lim.reset_knobs() is True
    with pytest.raises(ValueError) as e:
        Limiter(rc, "bad", rps=0.5, burst=-1).allow()
    assert str(e.value) == "burst must be > 0 and <= 1e9"
    rc.set("s", "x")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        slow(rc, "s", 1).allow()


def test_allow_all_needs_one_slot_and_hash_tags_give_it(rc):
    sec, day = slow(rc, "{user:42}:sec", 2), slow(rc, "{user:42}:day", 3)
    assert allow_all([sec, day]).remaining == (1, 2)
    apart = [slow(rc, "user:42:sec", 2), slow(rc, "user:43:day", 3)]
    assert rc.keyslot(apart[0].key) != rc.keyslot(apart[1].key)
    with pytest.raises((RedisClusterException, redis.ResponseError), match="(?i)slot"):
        allow_all(apart)
    assert rc.exists(apart[0].key) == 0 and rc.exists(apart[1].key) == 0  # nothing taken


def test_pacer_on_a_cluster(rc, cluster):
    pacer = Pacer(rc, "partner-api", interval=0.05, max_waiting=3)
    first = pacer.permit()
    moves = servers.slot_moves(cluster.nodes)
    held = pacer.block(timeout=2)
    assert first.time_to_wait_ms == 0 and held.time_to_wait_ms == 0
    servers.assert_next_slot(held.valid_at_ms, first.valid_at_ms, 50, servers.slot_moves(cluster.nodes) - moves)
    with pacer.slot(timeout=2) as permit:
        pass
    servers.assert_next_slot(permit.valid_at_ms, held.valid_at_ms, 50, servers.slot_moves(cluster.nodes) - moves)
    # longer than the client's 10 s socket timeout: held on a connection of its own
    last = pacer.block(timeout=20)
    servers.assert_next_slot(last.valid_at_ms, permit.valid_at_ms, 50, servers.slot_moves(cluster.nodes) - moves)


def test_limitlion_reads_the_time_of_a_cluster(rc):
    limitlion.throttle_configure(rc)
    try:
        # the bucket and its knobs are two keys: a hash tag keeps them in one slot
        limitlion.throttle("{t}", 5, 1, 1)
        tokens, refreshed, rps, burst, window = limitlion.throttle_get("{t}")
        seconds, _ = rc.time()
        assert int(tokens) == 4 and abs(int(refreshed) - seconds) <= 1
        assert (rps, burst, window) == (None, None, None)
        with pytest.raises(RedisClusterException, match="same key slot"):
            limitlion.throttle("t", 5, 1, 1)
    finally:
        limitlion._redis = None


@pytest.mark.needs("clock")
def test_the_clock_is_set_on_every_node(rc, cluster):
    def node_times():
        times = []
        for node in cluster.nodes:
            with node.client() as c:
                times.append(c.execute_command("THROTTLE.CLOCK", "GET"))
        return times

    with ThrottleClock(rc) as clock:
        at = clock.now_us()
        assert node_times() == [at] * 3
        assert clock.advance(1.5) == at + 1_500_000
        assert node_times() == [at + 1_500_000] * 3
        keys = [f"c:{i}" for i in range(9)]
        for k in keys:  # every master reads the frozen time
            lim = Limiter(rc, k, rps=2, burst=1, window=1)
            assert lim.allow(2) and lim.allow().retry_after_ms == 500
        clock.advance(0.5)
        assert all(Limiter(rc, k, rps=2, burst=1, window=1).allow() for k in keys)
    for node in cluster.nodes:  # real again on every node
        with node.client() as c:
            seconds, micros = c.time()
            assert abs(c.execute_command("THROTTLE.CLOCK", "GET") - (seconds * 10**6 + micros)) < 10**6


@pytest.mark.needs("clock")
def test_limitlion_on_a_cluster(rc):
    # LimitLion's testing mode reads two fixed keys (frozen_second, ...),
    # which cannot share every name's slot: on a cluster, the module's test
    # clock (frozen on every node) stands in for it
    limitlion.throttle_configure(rc)
    try:
        ThrottleClock(rc).freeze(1_800_000_000)
        names = [f"{{job:{i}}}" for i in range(6)]
        for name in names:
            assert limitlion.throttle(name, 5, 1, 1)[:2] == (True, 4)
        limitlion.throttle_set(names[0], 1, 1, 1)
        assert limitlion.throttle(names[0], 5, 1, 1) == (True, 0, 1.0)  # LimitLion: the sleep to the next window
        assert limitlion.throttle(names[0], 5, 1, 1) == (False, 0, 1.0)
        tokens, refreshed, rps, burst, window = limitlion.throttle_get(names[0])
        assert (int(tokens), int(refreshed), int(rps)) == (0, 1_800_000_000, 1)
        limitlion.throttle_delete(names[0])
        assert limitlion.throttle_get(names[0]) == [None] * 5
    finally:
        ThrottleClock(rc).real()
        limitlion._redis, limitlion._testing = None, False


def run_async_cluster(cluster, body):
    async def main():
        a = AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(h, p) for h, p in cluster.startup_nodes], socket_timeout=10
        )
        try:
            return await body(a)
        finally:
            await a.aclose()

    return asyncio.run(main())


def test_async_cluster(rc, cluster):
    async def body(a):
        keys = [f"a:{i}" for i in range(12)]
        for k in keys:
            lim = slow(a, k, 2, AsyncLimiter)
            assert [(await lim.allow()).remaining for _ in range(2)] == [1, 0]
            assert not (await lim.allow()).allowed
        tagged = [slow(a, "{t}:x", 2, AsyncLimiter), slow(a, "{t}:y", 2, AsyncLimiter)]
        assert (await allow_all_async(tagged)).remaining == (1, 1)
        with pytest.raises((RedisClusterException, redis.ResponseError), match="(?i)slot"):
            await allow_all_async([slow(a, "x1", 1, AsyncLimiter), slow(a, "x3", 1, AsyncLimiter)])
        pacer = AsyncPacer(a, "ap", interval=0.05, max_waiting=2)
        first = await pacer.permit()
        held = await pacer.block(timeout=2)
        assert held.time_to_wait_ms == 0 and held.valid_at_ms >= first.valid_at_ms + 50
        w = AsyncLimiter(a, "aw", rps=20, burst=1, window=Decimal("0.05"))
        assert (await w.allow()).allowed and (await w.wait(timeout=2)).allowed
        assert (await w.wait(timeout=20)).allowed  # longer than the client's 10 s: its own connection
        return keys

    keys = run_async_cluster(cluster, body)
    owners = {rc.get_node_from_key(k).name for k in keys}
    assert len(owners) == 3


@pytest.mark.needs("clock")
def test_async_cluster_clock(rc, cluster):
    async def body(a):
        async with AsyncThrottleClock(a) as clock:
            at = await clock.freeze(1_900_000_000)
            assert at == 1_900_000_000_000_000
            for k in ("k1", "k2", "k3", "k4", "k5", "k6"):
                permit = await AsyncPacer(a, k, interval=1, max_waiting=1).permit()
                assert permit.valid_at_ms == 1_900_000_000_000

    run_async_cluster(cluster, body)
