// express-rate-limit with redis-throttle's store: real Express apps on
// loopback (two of them in processes of their own), driven over HTTP.
// Limits are long (12 s per request) so that no token comes back during a
// test on a slow machine; where a refill matters, only lower bounds on time
// are used.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RedisThrottle } from "redis-throttle";
import { RedisStore, ThrottleStore } from "redis-throttle/express";
import { get, key, plain, startApp } from "./helpers.mjs";

const CONFIGS = [
  ["node-redis, rate-limit-redis's options ({ sendCommand })", { CLIENT: "node-redis" }],
  ["ioredis, { client }", { CLIENT: "ioredis", STORE_OPTIONS: "client" }],
  ["node-redis cluster, { client }", { CLIENT: "node-redis-cluster", STORE_OPTIONS: "client" }],
  ["ioredis cluster, { client }", { CLIENT: "ioredis-cluster", STORE_OPTIONS: "client" }],
  ["express-rate-limit 7", { CLIENT: "node-redis", ERL: "7" }],
];

for (const [name, env] of CONFIGS) {
  describe(`Express, ${name}`, () => {
    let app;
    before(async () => {
      app = await startApp("express", { ...env, LIMIT: "5", WINDOW_MS: "60000" });
    });
    after(() => app.stop());

    test("the first 5 requests pass with RateLimit headers, the 6th gets 429 and Retry-After", async () => {
      const client = { "x-key": key("client") };
      for (let i = 1; i <= 5; i++) {
        const r = await get(app.url, client);
        assert.equal(r.status, 200, `request ${i}`);
        assert.equal(r.headers.get("ratelimit-limit"), "5");
        assert.equal(r.headers.get("ratelimit-remaining"), String(5 - i));
        assert.equal(r.headers.get("ratelimit-policy"), "5;w=60");
        // full again after i × 12 s, less the time since the first request
        const reset = Number(r.headers.get("ratelimit-reset"));
        assert.ok(reset > 12 * (i - 1) && reset <= 12 * i, `RateLimit-Reset ${reset} after ${i}`);
        assert.equal(r.headers.get("retry-after"), null);
      }
      const denied = await get(app.url, client);
      assert.equal(denied.status, 429);
      assert.equal(denied.headers.get("ratelimit-remaining"), "0");
      const retry = Number(denied.headers.get("retry-after"));
      assert.ok(retry >= 1 && retry <= 12, `Retry-After ${retry}: one request comes back every 12 s`);
      assert.equal(denied.headers.get("ratelimit-reset"), String(retry));
      assert.equal((await get(app.url, { "x-key": key("other") })).status, 200, "another client has its own limit");
    });
  });
}

describe("Express, refunds and sharing", () => {
  test("skipFailedRequests refunds failed requests through decrement, but a 429 gives nothing back", async () => {
    const app = await startApp("express", { CLIENT: "node-redis", LIMIT: "3", WINDOW_MS: "60000", SKIP_FAILED: "1" });
    try {
      const client = { "x-key": key("refund") };
      for (let i = 0; i < 4; i++) assert.equal((await get(`${app.url}/fail`, client)).status, 500, "failures are refunded");
      for (let i = 0; i < 3; i++) assert.equal((await get(app.url, client)).status, 200);
      for (let i = 0; i < 3; i++) {
        // each 429 is a failed request too: express-rate-limit decrements it,
        // and the store must not give back the tokens it never took
        assert.equal((await get(app.url, client)).status, 429);
      }
    } finally {
      await app.stop();
    }
  });

  test("two app processes share one limit", async () => {
    const [a, b] = await Promise.all([
      startApp("express", { CLIENT: "node-redis", LIMIT: "5", WINDOW_MS: "60000" }, { process: true }),
      startApp("express", { CLIENT: "ioredis", STORE_OPTIONS: "client", LIMIT: "5", WINDOW_MS: "60000" }, { process: true }),
    ]);
    try {
      const client = { "x-key": key("shared") };
      const statuses = [];
      for (let i = 0; i < 8; i++) statuses.push((await get((i % 2 ? b : a).url, client)).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test("a request comes back after limit / window: 2 per second", async () => {
    const app = await startApp("express", { CLIENT: "node-redis", LIMIT: "2", WINDOW_MS: "1000" });
    try {
      const client = { "x-key": key("refill") };
      assert.deepEqual([(await get(app.url, client)).status, (await get(app.url, client)).status], [200, 200]);
      const denied = await get(app.url, client);
      assert.equal(denied.status, 429);
      assert.equal(denied.headers.get("retry-after"), "1");
      await new Promise((r) => setTimeout(r, 600)); // one request back every 500 ms
      assert.equal((await get(app.url, client)).status, 200);
    } finally {
      await app.stop();
    }
  });
});

describe("ThrottleStore, in process", () => {
  let redis;
  before(() => {
    redis = plain();
  });
  after(() => {
    RedisThrottle.of(redis).close();
    redis.disconnect();
  });

  test("increment, get, decrement and resetKey in requests; keys under the prefix", async () => {
    const store = new ThrottleStore({ client: redis, prefix: "app:" });
    assert.equal(RedisStore, ThrottleStore, "rate-limit-redis's name for the same class");
    assert.equal(store.localKeys, false);
    store.init({ windowMs: 60_000, limit: 5 });
    const k = key("store");
    for (let i = 1; i <= 5; i++) assert.equal((await store.increment(k)).totalHits, i);
    const denied = await store.increment(k);
    assert.equal(denied.totalHits, 6, "above the limit when denied");
    const wait = denied.resetTime.getTime() - Date.now();
    assert.ok(wait > 0 && wait <= 12_000, `${wait}`);
    assert.equal((await store.get(k)).totalHits, 5);
    await store.decrement(k);
    assert.equal((await store.get(k)).totalHits, 4);
    assert.equal((await store.increment(k)).totalHits, 5);
    const state = await RedisThrottle.of(redis).limiter(`app:${k}`).get();
    assert.deepEqual([state.rps, state.limit], ["1", 60], "5 per minute: 1 token per second, 12 per request");
    await store.resetKey(k);
    assert.equal(await redis.exists(`app:${k}`), 0);
    assert.equal((await store.get(k)).totalHits, 0);
  });

  test("needs a fixed limit, and init() first", async () => {
    const store = new ThrottleStore({ client: redis });
    await assert.rejects(store.increment("x"), /init\(\) was not called/);
    assert.throws(() => store.init({ windowMs: 1000, limit: () => 5 }), /needs a fixed limit/);
    const fixed = new ThrottleStore({ client: redis, limit: 2 });
    fixed.init({ windowMs: 1000, limit: () => 2 });
    assert.equal((await fixed.increment(key("fixed"))).totalHits, 1);
    assert.throws(() => new ThrottleStore({}), /needs \{ client \}/);
  });
});
