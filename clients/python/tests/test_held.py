"""Held calls (PERMIT ... BLOCK) longer than the client's socket timeout.

A hold that may outlast the client's socket timeout runs on a connection of
its own, opened with the client's settings for that one call: sync and
asyncio, standalone and cluster (following MOVED and ASK itself). Each test
holds a call longer than a deliberately short socket timeout, so it fails if
the call went through the client's own connection (and, before this
existed, the package refused such a call with ValueError).

Waits are checked only as lower bounds, on the server's slots.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

import servers
from redis_throttle import AsyncPacer, Pacer

SHORT_S = 0.4  # the clients' socket timeout
HOLD_MS = 1200  # each held call waits this long for its slot: 3 x SHORT_S


def test_the_clients_own_connection_would_time_out(server):
    """The premise of this file: a 0.4 s socket timeout cuts a 1.2 s hold."""
    short = server.client(socket_timeout=SHORT_S, retry=Retry(NoBackoff(), 0))
    try:
        Pacer(short, "premise", interval=HOLD_MS / 1000, max_waiting=1).permit()
        with pytest.raises(redis.TimeoutError):
            short.execute_command("PERMIT", "premise", HOLD_MS, 1, "BLOCK", 5000)
    finally:
        short.close()


def test_a_hold_longer_than_the_socket_timeout_runs_on_its_own_connection(server):
    short = server.client(socket_timeout=SHORT_S)
    try:
        pacer = Pacer(short, "own", interval=HOLD_MS / 1000, max_waiting=2)
        first = pacer.permit()
        moves = servers.slot_moves([server])
        held = pacer.block(timeout=5)  # 1.2 s away
        assert held.time_to_wait_ms == 0
        servers.assert_next_slot(held.valid_at_ms, first.valid_at_ms, HOLD_MS, servers.slot_moves([server]) - moves)
        with pacer.slot() as permit:  # BLOCK 0: no client-side bound at all
            pass
        servers.assert_next_slot(permit.valid_at_ms, held.valid_at_ms, HOLD_MS, servers.slot_moves([server]) - moves)
        assert short.ping()  # the client itself is untouched
    finally:
        short.close()


def test_the_readme_example_on_redis_pys_defaults(server):
    """`slot(timeout=20)` on `redis.Redis()` (5 s socket timeout in redis-py 8)."""
    r = redis.Redis(port=server.port)
    try:
        partner = Pacer(r, "partner-api", interval=0.2, max_waiting=5)
        partner.permit()
        with partner.slot(timeout=20) as permit:
            assert permit.time_to_wait_ms == 0
    finally:
        r.close()


@pytest.mark.parametrize(
    "kwargs",
    [dict(decode_responses=True), dict(protocol=3), dict(db=5, client_name="held")],
    ids=["decoded", "resp3", "db5"],
)
def test_the_own_connection_carries_the_clients_settings(server, kwargs):
    short = server.client(socket_timeout=SHORT_S, **kwargs)
    try:
        short.flushall()
        pacer = Pacer(short, "settings", interval=HOLD_MS / 1000, max_waiting=1)
        first = pacer.permit()
        held = pacer.block(timeout=5)
        assert isinstance(held.valid_at_ms, int) and held.valid_at_ms >= first.valid_at_ms + HOLD_MS
        db = kwargs.get("db", 0)
        with server.client(db=db) as same_db:
            assert same_db.exists("settings") == 1
        if db:
            with server.client(db=0) as db0:
                assert db0.exists("settings") == 0
    finally:
        short.close()


def test_errors_on_the_own_connection_are_the_packages_errors(server):
    short = server.client(socket_timeout=SHORT_S)
    try:
        short.set("a-string", "x")
        with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
            Pacer(short, "a-string", interval=1, max_waiting=1).block(timeout=5)
        with pytest.raises(ValueError, match="^interval_ms must be > 0"):
            Pacer(short, "bad", interval=0, max_waiting=1).block(timeout=5)
    finally:
        short.close()


def test_asyncio_hold_longer_than_the_socket_timeout(server):
    moves = servers.slot_moves([server])

    async def main():
        short = redis.asyncio.Redis(port=server.port, socket_timeout=SHORT_S)
        try:
            pacer = AsyncPacer(short, "async-own", interval=HOLD_MS / 1000, max_waiting=2)
            first = await pacer.permit()
            held = await pacer.block(timeout=5)
            async with pacer.slot() as permit:
                pass
            assert await short.ping()
            return first, held, permit
        finally:
            await short.aclose()

    first, held, permit = asyncio.run(main())
    moved = servers.slot_moves([server]) - moves - 1  # less its own first permit, immediate
    assert held.time_to_wait_ms == 0
    servers.assert_next_slot(held.valid_at_ms, first.valid_at_ms, HOLD_MS, moved)
    servers.assert_next_slot(permit.valid_at_ms, held.valid_at_ms, HOLD_MS, moved)


def short_cluster(cluster) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes], socket_timeout=SHORT_S
    )


def keys_on_every_master(client, count=3):
    keys, owners = [], set()
    for i in range(100):
        key = f"held:{i}"
        owner = client.get_node_from_key(key).name
        if owner not in owners:
            owners.add(owner)
            keys.append(key)
        if len(keys) == count:
            return keys
    raise AssertionError("no key on every master")


def moved_count(node_client) -> int:
    """MOVED replies the node has sent (INFO errorstats)."""
    stat = node_client.info("errorstats").get("errorstat_MOVED", {"count": 0})
    if isinstance(stat, str):  # redis-py 5.0 leaves "count=N" unparsed
        stat = dict(kv.split("=") for kv in stat.split(","))
    return int(stat["count"])


def test_cluster_holds_longer_than_the_socket_timeout_on_every_master(rc, cluster):
    short = short_cluster(cluster)
    try:
        keys = keys_on_every_master(short)
        results, errors = {}, []

        def hold(key):
            try:
                pacer = Pacer(short, key, interval=HOLD_MS / 1000, max_waiting=1)
                first = pacer.permit()
                results[key] = (first, pacer.block(timeout=5))
            except Exception as e:  # asserted in the main thread
                errors.append(e)

        threads = [threading.Thread(target=hold, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for first, held in results.values():
            assert held.time_to_wait_ms == 0 and held.valid_at_ms >= first.valid_at_ms + HOLD_MS
    finally:
        short.close()


def node_client(cluster, name):
    port = int(name.rsplit(":", 1)[1])
    return next(n for n in cluster.nodes if n.port == port).client()


def test_cluster_hold_follows_moved_from_a_stale_slot_map(rc, cluster):
    key = "held:moved"
    slot = rc.keyslot(key)
    right = rc.get_node_from_key(key)
    wrong = next(n for n in rc.get_primaries() if n.name != right.name)
    saved = rc.nodes_manager.slots_cache[slot]
    with node_client(cluster, wrong.name) as w:
        before = moved_count(w)
        rc.nodes_manager.slots_cache[slot] = [wrong]  # the client's map is stale
        try:
            held = Pacer(rc, key, interval=0.05, max_waiting=1).block(timeout=20)  # 20 s > rc's 10 s
        finally:
            rc.nodes_manager.slots_cache[slot] = saved
        assert moved_count(w) == before + 1  # asked the wrong node, was told MOVED
    assert held is not None and held.time_to_wait_ms == 0
    with node_client(cluster, right.name) as r:
        assert r.exists(key) == 1


def test_cluster_hold_follows_ask_during_a_slot_migration(rc, cluster):
    key = "held:ask"
    slot = rc.keyslot(key)
    src = rc.get_node_from_key(key)
    dst = next(n for n in rc.get_primaries() if n.name != src.name)
    with node_client(cluster, src.name) as s, node_client(cluster, dst.name) as d:
        src_id, dst_id = s.execute_command("CLUSTER", "MYID"), d.execute_command("CLUSTER", "MYID")
        d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        try:
            # the key is not on src, so src answers ASK dst: ASKING + PERMIT there
            held = Pacer(rc, key, interval=0.05, max_waiting=1).block(timeout=20)
            assert held is not None and held.time_to_wait_ms == 0
            assert d.execute_command("ASKING") and d.exists(key) == 1
            with pytest.raises(redis.ResponseError):  # src does not have it: ASK again
                s.exists(key)
        finally:
            d.execute_command("ASKING")
            d.delete(key)
            for c in (s, d):
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", src_id)


def test_asyncio_cluster_holds_and_follows_moved(rc, cluster):
    moves = servers.slot_moves(cluster.nodes)
    key = "held:async"
    right = rc.get_node_from_key(key)

    async def main():
        a = AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(h, p) for h, p in cluster.startup_nodes], socket_timeout=SHORT_S
        )
        try:
            pacer = AsyncPacer(a, key, interval=HOLD_MS / 1000, max_waiting=2)
            first = await pacer.permit()  # the client's first command: it has the slot map after
            held = await pacer.block(timeout=5)
            slot = a.keyslot(key)
            wrong = next(n for n in a.get_primaries() if n.name != right.name)
            saved = a.nodes_manager.slots_cache[slot]
            with node_client(cluster, wrong.name) as w:
                before = moved_count(w)
                a.nodes_manager.slots_cache[slot] = [wrong]  # the client's map is stale
                try:
                    again = await pacer.block(timeout=5)
                finally:
                    a.nodes_manager.slots_cache[slot] = saved
                moved = moved_count(w) - before
            return first, held, again, moved
        finally:
            await a.aclose()

    first, held, again, moved = asyncio.run(main())
    slots_moved = servers.slot_moves(cluster.nodes) - moves - 1  # less its own first permit, immediate
    assert held.time_to_wait_ms == 0
    servers.assert_next_slot(held.valid_at_ms, first.valid_at_ms, HOLD_MS, slots_moved)
    servers.assert_next_slot(again.valid_at_ms, held.valid_at_ms, HOLD_MS, slots_moved)
    assert moved == 1  # asked the wrong node, was told MOVED, followed it
