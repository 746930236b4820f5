// @fastify/rate-limit with redis-throttle's store: real Fastify apps on
// loopback (two of them in processes of their own), driven over HTTP.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { get, key, startApp } from "./helpers.mjs";

for (const CLIENT of ["ioredis", "node-redis", "node-redis-cluster", "ioredis-cluster"]) {
  describe(`Fastify, ${CLIENT}`, () => {
    let app;
    before(async () => {
      app = await startApp("fastify", { CLIENT, MAX: "5", TIME_WINDOW: "60000" });
    });
    after(() => app.stop());

    test("the first 5 requests pass with x-ratelimit headers, the 6th gets 429 and retry-after", async () => {
      const client = { "x-key": key("client") };
      for (let i = 1; i <= 5; i++) {
        const r = await get(app.url, client);
        assert.equal(r.status, 200, `request ${i}`);
        assert.equal(r.headers.get("x-ratelimit-limit"), "5");
        assert.equal(r.headers.get("x-ratelimit-remaining"), String(5 - i));
        const reset = Number(r.headers.get("x-ratelimit-reset"));
        assert.ok(reset > 12 * (i - 1) && reset <= 12 * i, `x-ratelimit-reset ${reset} after ${i}`);
      }
      const denied = await get(app.url, client);
      assert.equal(denied.status, 429);
      const retry = Number(denied.headers.get("retry-after"));
      assert.ok(retry >= 1 && retry <= 12, `retry-after ${retry}`);
      assert.equal(denied.headers.get("x-ratelimit-remaining"), "0");
      assert.equal((await get(app.url, { "x-key": key("other") })).status, 200);
    });

    test("a route's own limit has its own keys (the store's child)", async () => {
      const client = { "x-key": key("route") };
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await get(`${app.url}/strict`, client)).status);
      assert.deepEqual(statuses, [200, 200, 429]);
      assert.equal((await get(app.url, client)).status, 200, "the global limit is untouched");
    });
  });
}

test("Fastify: two app processes share one limit", async () => {
  const [a, b] = await Promise.all([
    startApp("fastify", { CLIENT: "ioredis", MAX: "5", TIME_WINDOW: "60000" }, { process: true }),
    startApp("fastify", { CLIENT: "node-redis", MAX: "5", TIME_WINDOW: "60000" }, { process: true }),
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
