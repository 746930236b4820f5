// Held calls (THROTTLE ... WAIT, PERMIT ... BLOCK) run on dedicated
// connections: they never stall the application's connection, each call in
// flight has its own, and an AbortSignal ends one from this side.
// Timing: the checks compare the order of events whose times differ by
// hundreds of ms or more, never how long something took.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Limiter, Pacer, PermitRefused, RedisThrottle } from "redis-throttle";
import { STANDALONE, key, plain, sleep } from "./helpers.mjs";

const KINDS = ["node-redis 6 RESP3", "node-redis 5 RESP2", "ioredis 6 RESP3", "ioredis 5"];

/** Resolves once the server holds at least `n` clients (bounded: 10 s). */
async function heldClients(redis, predicate) {
  for (let i = 0; i < 200; i++) {
    const m = /blocked_clients:(\d+)/.exec(await redis.info("clients"));
    if (predicate(Number(m[1]))) return;
    await sleep(50);
  }
  assert.fail("the server's blocked_clients never got there");
}

for (const [name, open] of STANDALONE.filter(([n]) => KINDS.includes(n))) {
  describe(`held calls, ${name}`, () => {
    let conn;
    let redis;
    before(async () => {
      conn = await open();
      redis = plain();
    });
    after(() => {
      RedisThrottle.of(conn.client).close();
      conn.close();
      redis.disconnect();
    });

    test("a held BLOCK does not stall the client's own connection", async () => {
      const pacer = new Pacer(conn.client, key("hol"), { intervalMs: 1000, maxWaiting: 5, graceMs: 5000 });
      await pacer.permit(); // the next slot is 1 s away
      const order = [];
      const held = pacer.block({ timeoutMs: 10_000 }).then((p) => {
        order.push("BLOCK");
        return p;
      });
      await heldClients(redis, (n) => n >= 1);
      await new Limiter(conn.client, key("hol"), { rps: 1 }).allow().then(() => order.push("THROTTLE"));
      const permit = await held;
      assert.deepEqual(order, ["THROTTLE", "BLOCK"]);
      assert.equal(permit.timeToWaitMs, 0, "answered when its slot came");
    });

    test("each held call in flight has its own connection", async () => {
      const slow = new Pacer(conn.client, key("slow"), { intervalMs: 1500, maxWaiting: 5, graceMs: 5000 });
      const fast = new Pacer(conn.client, key("fast"), { intervalMs: 100, maxWaiting: 5, graceMs: 5000 });
      await slow.permit();
      await fast.permit();
      const order = [];
      const a = slow.block({ timeoutMs: 10_000 }).then(() => order.push("slow"));
      await heldClients(redis, (n) => n >= 1);
      const b = fast.block({ timeoutMs: 10_000 }).then(() => order.push("fast"));
      await Promise.all([a, b]);
      assert.deepEqual(order, ["fast", "slow"]);
    });

    test("THROTTLE ... WAIT: allowed when the tokens accrue; denied at once when they cannot in time", async () => {
      const api = new Limiter(conn.client, key("wait"), { rps: 5, burst: 1, window: 1 }); // 5 tokens, 5 per second
      assert.equal((await api.allow(5)).allowed, true);
      const waited = await api.wait({ timeoutMs: 5000 });
      assert.equal(waited.allowed, true);
      assert.equal(waited.retryAfterMs, 0);
      const slow = new Limiter(conn.client, key("wait"), { rps: 0.1, burst: 1, window: 10 }); // 1 token per 10 s
      assert.equal((await slow.allow()).allowed, true);
      const denied = await slow.wait({ timeoutMs: 100 });
      assert.equal(denied.allowed, false);
      assert.ok(denied.retryAfterMs > 100, `${denied.retryAfterMs}`);
    });

    test("an AbortSignal ends a held call: it rejects with the reason, the server lets the client go, the slot stays taken", async () => {
      const pacer = new Pacer(conn.client, key("abort"), { intervalMs: 60_000, maxWaiting: 5 });
      const first = await pacer.permit();
      const before = Number(/blocked_clients:(\d+)/.exec(await redis.info("clients"))[1]);
      const controller = new AbortController();
      const held = pacer.block({ timeoutMs: 120_000, signal: controller.signal });
      await heldClients(redis, (n) => n > before);
      const reason = new Error("no longer needed");
      controller.abort(reason);
      await assert.rejects(held, (e) => e === reason);
      await heldClients(redis, (n) => n <= before);
      const third = await pacer.permit();
      assert.ok(third.validAtMs - first.validAtMs >= 120_000, "the aborted call's slot was reserved and stays taken");
      assert.equal((await new Limiter(conn.client, key("after"), { rps: 1 }).allow()).allowed, true, "the client still works");
    });

    test("AbortSignal.timeout() bounds a WAIT from this side; an aborted signal sends nothing", async () => {
      const api = new Limiter(conn.client, key("timeout"), { rps: 0.1, burst: 1, window: 10 });
      await api.allow();
      await assert.rejects(api.wait({ timeoutMs: 60_000, signal: AbortSignal.timeout(200) }), { name: "TimeoutError" });

      const pacer = new Pacer(conn.client, key("pre-aborted"), { intervalMs: 60_000, maxWaiting: 5 });
      await assert.rejects(pacer.block({ signal: AbortSignal.abort() }), { name: "AbortError" });
      assert.equal((await pacer.permit()).timeToWaitMs, 0, "nothing was reserved");
    });

    test("Pacer.slot(fn) runs each fn in its slot, in order, and refuses when the queue is full", async () => {
      const pacer = new Pacer(conn.client, key("slot"), { intervalMs: 100, maxWaiting: 10, graceMs: 5000 });
      const ran = await Promise.all(
        Array.from({ length: 5 }, (_, i) => pacer.slot((permit) => ({ i, validAtMs: permit.validAtMs }), { timeoutMs: 10_000 })),
      );
      const slots = ran.map((r) => r.validAtMs).sort((a, b) => a - b);
      for (let i = 1; i < slots.length; i++) assert.ok(slots[i] - slots[i - 1] >= 100, `${slots}`);
      assert.deepEqual(ran.map((r) => r.i), [0, 1, 2, 3, 4], "fn's results come back to each caller");

      const full = new Pacer(conn.client, key("full"), { intervalMs: 60_000, maxWaiting: 0 });
      assert.equal(await full.slot(() => "first"), "first");
      await assert.rejects(full.slot(() => "second"), PermitRefused);
    });
  });
}

describe("held calls need a client", () => {
  test("sendCommand functions cannot hold a call", async () => {
    const redis = plain();
    try {
      const fns = { sendCommand: (...args) => redis.call(...args) };
      const api = new Limiter(fns, key("fns"), { rps: 1 });
      assert.equal((await api.allow()).allowed, true, "plain calls work");
      await assert.rejects(api.wait({ timeoutMs: 10 }), /held calls \(WAIT, BLOCK\) need a client/);
    } finally {
      redis.disconnect();
    }
  });
});

describe("held calls and the client's timeouts", () => {
  test("an ioredis commandTimeout or a node-redis socketTimeout does not cut a held call short", async () => {
    const { default: Redis } = await import("ioredis");
    const { createClient } = await import("redis");
    const io = new Redis(process.env.REDIS_URL, { commandTimeout: 200 });
    const nr = createClient({ url: process.env.REDIS_URL, socket: { socketTimeout: 200 } });
    nr.on("error", () => {});
    await nr.connect();
    try {
      for (const client of [nr, io]) { // node-redis first: its own socket closes once idle 200 ms
        const pacer = new Pacer(client, key("timeouts"), { intervalMs: 1000, maxWaiting: 5, graceMs: 5000 });
        await pacer.permit();
        const permit = await pacer.block({ timeoutMs: 5000 }); // held about 1 s, far beyond 200 ms
        assert.equal(permit?.timeToWaitMs, 0);
      }
    } finally {
      RedisThrottle.of(io).close();
      RedisThrottle.of(nr).close();
      io.disconnect();
      if (nr.isOpen) nr.destroy();
    }
  });
});
