// A 3-master cluster: every call goes straight to the master of its key's
// slot (no MOVED), from node-redis and ioredis alike, held calls included.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Limiter, Pacer, RedisThrottle, ThrottleError } from "redis-throttle";
import { keySlot } from "../dist/esm/slot.js";
import { CLUSTER, CLUSTER_NODES, key, movedTotal, plain } from "./helpers.mjs";

for (const [name, open] of CLUSTER) {
  describe(name, () => {
    let conn;
    before(async () => {
      conn = await open();
    });
    after(() => {
      RedisThrottle.of(conn.client).close();
      conn.close();
    });

    test("every command reaches its key's master directly, on every master", async () => {
      const moved = await movedTotal();
      const owners = new Set();
      for (const k of spreadKeys()) {
        const api = new Limiter(conn.client, k, { rps: 5, burst: 2, window: 8 });
        assert.deepEqual({ ...(await api.allow()) }, { allowed: true, remaining: 79, retryAfterMs: 0, resetAfterMs: 200, limit: 80 });
        assert.equal((await api.peek(0)).limit, 80);
        assert.equal((await api.get()).limit, 80);
        assert.equal(await api.refund(1), 80);
        owners.add(await ownerOf(k));
      }
      assert.equal(owners.size, 3, "the keys live on all three masters");
      const user = key("user");
      const all = await RedisThrottle.of(conn.client).allowAll([
        [`{${user}}:sec`, { rps: 5 }],
        [`{${user}}:min`, { rps: 1, burst: 100 }],
      ]);
      assert.deepEqual({ ...all }, { allowed: true, deniedBy: null, retryAfterMs: 0, remaining: [4, 99] });
      const pacer = new Pacer(conn.client, key("pacer"), { intervalMs: 200, maxWaiting: 5, graceMs: 5000 });
      const first = await pacer.permit();
      const held = await pacer.block({ timeoutMs: 5000 });
      assert.ok(held.validAtMs >= first.validAtMs + 200 && held.timeToWaitMs === 0);
      assert.equal((await RedisThrottle.of(conn.client).cell(key("cell"), { maxBurst: 1, countPerPeriod: 1, period: 1 })).limit, 2);
      assert.equal(await movedTotal(), moved, "no MOVED: routed by key");
    });

    test("THROTTLE.ALL across slots is refused by the cluster (CROSSSLOT), not as an argument error", async () => {
      const error = await RedisThrottle.of(conn.client)
        .allowAll([[key("a"), { rps: 1 }], [key("b"), { rps: 1 }]])
        .then(
          () => assert.fail("allowed"),
          (e) => e,
        );
      assert.ok(!(error instanceof ThrottleError));
      assert.match(error.message, /CROSSSLOT/);
    });

    test("a bad argument is a ThrottleError in a cluster too", async () => {
      await assert.rejects(new Limiter(conn.client, key("bad"), { rps: 1, burst: 0 }).allow(), {
        name: "ThrottleError",
        message: "burst must be > 0 and <= 1e9",
      });
    });
  });
}

/** 12 keys, at least 4 in each third of the slots (one third per master). */
function spreadKeys() {
  const keys = [];
  const per = [0, 0, 0];
  for (let i = 0; keys.length < 12; i++) {
    const k = key(`spread:${i}`);
    const third = Math.floor((keySlot(k) * 3) / 16384);
    if (per[third] < 4) {
      per[third]++;
      keys.push(k);
    }
  }
  return keys;
}

async function ownerOf(k) {
  const c = plain(`redis://${CLUSTER_NODES[0].host}:${CLUSTER_NODES[0].port}`);
  try {
    const slot = await c.cluster("KEYSLOT", k);
    for (const [start, end, [host, port]] of await c.cluster("SLOTS")) {
      if (slot >= start && slot <= end) return `${host}:${port}`;
    }
  } finally {
    c.disconnect();
  }
}

describe("cluster routing", () => {
  test("the package's slot function agrees with CLUSTER KEYSLOT", async () => {
    const c = plain(`redis://${CLUSTER_NODES[0].host}:${CLUSTER_NODES[0].port}`);
    try {
      const keys = ["foo", "{user1000}.following", "a{}b", "{}x", "{a}{b}", "x{y", "ünïcødé", "", ...Array.from({ length: 50 }, (_, i) => key(`s${i}`))];
      for (const k of keys) assert.equal(keySlot(k), await c.cluster("KEYSLOT", k), k);
    } finally {
      c.disconnect();
    }
  });

  test("ioredis Cluster with keyPrefix: routed by the prefixed key", async () => {
    const { Cluster } = await import("ioredis");
    const cluster = new Cluster(CLUSTER_NODES, { keyPrefix: "app:" });
    try {
      await new Promise((ok) => cluster.once("ready", ok));
      const moved = await movedTotal();
      const k = key("prefixed");
      for (let i = 0; i < 6; i++) assert.equal((await new Limiter(cluster, `${k}:${i}`, { rps: 1 }).allow()).allowed, true);
      assert.equal(await movedTotal(), moved);
      assert.equal(await cluster.exists(`${k}:0`), 1, "ioredis's own EXISTS (prefixed) finds the key");
    } finally {
      cluster.disconnect();
    }
  });
});
