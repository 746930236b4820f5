// Every command through every supported client on one server: typed results
// with exact values, errors, and what the package does about the clients' traps.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  AllResult,
  CellResult,
  Limiter,
  LimiterState,
  NEVER_MS,
  Pacer,
  Permit,
  RedisThrottle,
  ThrottleError,
  ThrottleResult,
} from "redis-throttle";
import { STANDALONE, key, plain } from "./helpers.mjs";

for (const [name, open] of STANDALONE) {
  describe(name, () => {
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

    test("THROTTLE, THROTTLE.PEEK, THROTTLE.GET and THROTTLE.REFUND give typed results", async () => {
      const api = new Limiter(conn.client, key("bucket"), { rps: 5, burst: 2, window: 8 });
      const first = await api.allow();
      assert.ok(first instanceof ThrottleResult);
      assert.deepEqual({ ...first }, { allowed: true, remaining: 79, retryAfterMs: 0, resetAfterMs: 200, limit: 80 });
      assert.deepEqual(first.headers(), { "RateLimit-Limit": "80", "RateLimit-Remaining": "79", "RateLimit-Reset": "1" });

      const peek = await api.peek(0); // tokens held now: 79, or 80 once 200 ms have passed
      assert.equal(peek.allowed, true);
      assert.ok([79, 80].includes(peek.remaining), `${peek.remaining}`);
      assert.equal(peek.limit, 80);

      const state = await api.get();
      assert.ok(state instanceof LimiterState);
      assert.equal(state.source, "last-call");
      assert.equal(state.hasKnobs, false);
      assert.deepEqual([state.limit, state.rps, state.burst, state.window, state.knobsTtlMs], [80, "5", null, null, -1]);
      assert.ok([79, 80].includes(state.tokens));
      assert.ok(state.resetAfterMs >= 0 && state.resetAfterMs <= 200);

      assert.equal(await api.refund(5), 80); // never above the capacity
      assert.equal(await new Limiter(conn.client, key("none"), { rps: 1 }).refund(1), null);
      assert.equal(await new Limiter(conn.client, key("none")).get(), null);
    });

    test("a cost above the capacity is denied for good: retryAfterMs -1 and no Retry-After", async () => {
      const denied = await new Limiter(conn.client, key("big"), { rps: 5, burst: 2, window: 8 }).allow(81n);
      assert.deepEqual([denied.allowed, denied.remaining, denied.retryAfterMs, denied.limit], [false, 80, -1, 80]);
      assert.equal(denied.headers()["Retry-After"], undefined);
    });

    test("a denial says when to retry, in ms and as Retry-After", async () => {
      const login = new Limiter(conn.client, key("login"), { rps: 0.1, burst: 3, window: 10 }); // 3 tokens, one per 10 s
      for (let i = 0; i < 3; i++) assert.equal((await login.allow()).allowed, true);
      const denied = await login.allow();
      assert.equal(denied.allowed, false);
      assert.equal(denied.remaining, 0);
      assert.ok(denied.retryAfterMs > 5000 && denied.retryAfterMs <= 10000, `${denied.retryAfterMs}`);
      assert.equal(denied.headers()["Retry-After"], String(Math.ceil(denied.retryAfterMs / 1000)));
      assert.equal(denied.headers()["RateLimit-Remaining"], "0");
    });

    test("knobs: THROTTLE.SET, the short form, THROTTLE.GET and THROTTLE.RESET", async () => {
      const k = key("knobs");
      const caller = new Limiter(conn.client, k); // no limit: the key's knobs
      await assert.rejects(caller.allow(), {
        name: "ThrottleError",
        message: "no knobs on this key: give rps burst window, or set them with THROTTLE.SET",
      });
      const operator = new Limiter(conn.client, k, { rps: 1 });
      await operator.setKnobs({ rps: 10, burst: 1, window: 8, ttl: 3600 });
      const state = await operator.get();
      assert.deepEqual([state.source, state.rps, state.burst, state.window, state.limit], ["knobs", "10", "1", "8", 80]);
      assert.ok(state.knobsTtlMs > 3590_000 && state.knobsTtlMs <= 3600_000, `${state.knobsTtlMs}`);
      const r = await caller.allow(3);
      assert.deepEqual([r.allowed, r.remaining, r.limit], [true, 77, 80]);
      assert.equal((await operator.allow()).limit, 80, "live knobs win over the caller's limit");
      await operator.setKnobs({ rps: 0 });
      assert.deepEqual({ ...(await caller.allow()) }, { allowed: false, remaining: 0, retryAfterMs: 8000, resetAfterMs: 0, limit: 0 });
      assert.equal(await operator.resetKnobs(), true);
      assert.equal(await operator.resetKnobs(), false);
      assert.equal(await operator.delete(), true);
      assert.equal(await operator.delete(), false);
    });

    test("THROTTLE.ALL: all limits or none, deniedBy 0-based", async () => {
      const user = key("user");
      const limits = [
        [`{${user}}:sec`, { rps: 5, burst: 1, window: 1 }],
        [`{${user}}:min`, { rps: 1, burst: 100, window: 1 }],
      ];
      const throttle = RedisThrottle.of(conn.client);
      const ok = await throttle.allowAll(limits);
      assert.ok(ok instanceof AllResult);
      assert.deepEqual({ ...ok }, { allowed: true, deniedBy: null, retryAfterMs: 0, remaining: [4, 99] });
      const no = await throttle.allowAll(limits, 5);
      assert.deepEqual([no.allowed, no.deniedBy, no.remaining], [false, 0, [4, 99]]);
      assert.ok(no.retryAfterMs > 0 && no.retryAfterMs <= 200, `${no.retryAfterMs}`);
    });

    test("PERMIT: an immediate permit, a reserved one, then the queue is full", async () => {
      const pacer = new Pacer(conn.client, key("permit"), { intervalMs: 1000, maxWaiting: 1 });
      const first = await pacer.permit();
      assert.ok(first instanceof Permit);
      assert.equal(first.timeToWaitMs, 0);
      assert.equal(first.expiresAtMs, NEVER_MS);
      assert.equal(first.neverExpires, true);
      assert.equal(first.expiresAt, null);
      assert.equal(first.expired(), false);
      assert.ok(Math.abs(first.validAtMs - Date.now()) < 60_000);
      const second = await pacer.permit();
      assert.ok([1000, 1001].includes(second.validAtMs - first.validAtMs), `${second.validAtMs - first.validAtMs}`);
      assert.ok(second.timeToWaitMs > 0 && second.timeToWaitMs <= 1001, `${second.timeToWaitMs}`);
      assert.ok([100, 101].includes(second.expiresAtMs - second.validAtMs), "grace: 10% of the interval");
      assert.equal(second.validAt.getTime(), second.validAtMs);
      assert.equal(await pacer.permit(), null, "max_waiting 1: no second waiting permit");
    });

    test("CL.THROTTLE: redis-cell's reply", async () => {
      const r = await RedisThrottle.of(conn.client).cell(key("cell"), { maxBurst: 15, countPerPeriod: 30, period: 60 });
      assert.ok(r instanceof CellResult);
      assert.deepEqual({ ...r }, { limited: false, limit: 16, remaining: 15, retryAfterS: -1, resetAfterS: 2 });
      assert.equal(r.allowed, true);
    });

    test("a bad argument is a ThrottleError with the server's message; WRONGTYPE stays the client's error", async () => {
      const bad = new Limiter(conn.client, key("bad"), { rps: -5 });
      const error = await bad.allow().then(
        () => assert.fail("allowed"),
        (e) => e,
      );
      assert.ok(error instanceof ThrottleError);
      assert.equal(error.message, "rps must be > 0 and <= 1e9 (or 0 to deny all, -1 to allow all)");
      assert.match(error.cause.message, /^ERR rps must be/);
      await assert.rejects(new Limiter(conn.client, key("bad"), { rps: "1.5x" }).allow(), {
        name: "ThrottleError",
        message: "rps is not a valid decimal number",
      });
      await assert.rejects(new Pacer(conn.client, key("bad"), { intervalMs: 0.0001, maxWaiting: 1 }).permit(), {
        message: "interval_ms has too many decimal places (at most 3)",
      });
      await assert.rejects(new Limiter(conn.client, key("bad"), { rps: 1 }).allow(1.5), TypeError);

      const str = key("string");
      await redis.set(str, "x");
      const wrong = await new Limiter(conn.client, str, { rps: 1 }).allow().then(
        () => assert.fail("allowed"),
        (e) => e,
      );
      assert.ok(!(wrong instanceof ThrottleError));
      assert.match(wrong.message, /^WRONGTYPE/);
    });

    test("numbers are sent exactly: shortest decimals, no exponent, bigints", async () => {
      const k = key("exact");
      const r = await new Limiter(conn.client, k, { rps: 0.1, burst: 1e21 / 1e20, window: 1e-7 * 1e8 }).allow();
      assert.equal(r.limit, 10); // 0.1 × 10 × 10
      const small = await new Limiter(conn.client, key("exact"), { rps: 1e-7, burst: 1, window: 1e7 }).allow();
      assert.equal(small.limit, 1);
      assert.equal((await new Limiter(conn.client, key("exact"), { rps: 1 }).peek(9223372036854775807n)).retryAfterMs, -1);
    });
  });
}

describe("ioredis keyPrefix", () => {
  test("is applied to the module's keys, as ioredis applies it to its own commands", async () => {
    const { default: Redis } = await import("ioredis");
    const prefixed = new Redis(process.env.REDIS_URL, { keyPrefix: "app:" });
    const redis = plain();
    try {
      const k = key("prefix");
      // limits that keep their keys a minute or more, however slow the machine
      const slow = { rps: 0.01, window: 100 };
      await new Limiter(prefixed, k, slow).allow();
      await new Pacer(prefixed, `${k}:p`, { intervalMs: 60_000, maxWaiting: 1 }).block({ timeoutMs: 1000 });
      await RedisThrottle.of(prefixed).allowAll([[`{${k}}:a`, slow], [`{${k}}:b`, slow]]);
      assert.deepEqual((await redis.keys(`*${k}*`)).sort(), [`app:${k}`, `app:${k}:p`, `app:{${k}}:a`, `app:{${k}}:b`]);
      await prefixed.set(`${k}:s`, "1");
      assert.equal(await redis.exists(`app:${k}:s`), 1, "the same prefix as ioredis's own commands");
    } finally {
      RedisThrottle.of(prefixed).close();
      prefixed.disconnect();
      redis.disconnect();
    }
  });
});
