// The parts that need no server: argument formatting, the window arithmetic
// behind the framework stores, headers, and reply parsing.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { commands, ThrottleResult, windowBucket, Permit, LimiterState } from "redis-throttle";

describe("arguments", () => {
  test("decimals are written exactly, exponents expanded", () => {
    const rps = (v) => commands.throttle("k", { rps: v }).args[2];
    assert.equal(rps(0.1), "0.1");
    assert.equal(rps(5), "5");
    assert.equal(rps(1e21), "1000000000000000000000");
    assert.equal(rps(1.5e-7), "0.00000015");
    assert.equal(rps(1e-7), "0.0000001");
    assert.equal(rps(-2.5e-3), "-0.0025");
    assert.equal(rps(1.25e22), "12500000000000000000000");
    assert.equal(rps("7.50"), "7.50", "strings are sent as they are");
    assert.deepEqual(commands.throttle("k", { rps: 5 }).args, ["THROTTLE", "k", "5", "1", "1", "1"]);
  });

  test("integers are checked before anything is sent", () => {
    assert.throws(() => commands.throttle("k", undefined, 1.5), TypeError);
    assert.throws(() => commands.throttle("k", undefined, 2 ** 60), RangeError);
    assert.equal(commands.throttle("k", undefined, 2n ** 62n).args[2], "4611686018427387904");
    assert.throws(() => commands.permit("k", { intervalMs: 10, maxWaiting: 1 }, -1), RangeError);
    assert.equal(commands.permit("k", { intervalMs: 10, maxWaiting: 1 }, 0.2).args.at(-1), "1", "timeouts round up");
  });

  test("commands know their keys, whether they read only, and whether the server holds them", () => {
    const all = commands.all([["{u}:a", { rps: 1 }], ["{u}:b", { rps: 2, burst: 3, window: 4 }]], 2);
    assert.deepEqual(all.args, ["THROTTLE.ALL", "2", "{u}:a", "1", "1", "1", "{u}:b", "2", "3", "4"]);
    assert.deepEqual(all.keys, [2, 6]);
    assert.equal(commands.peek("k", undefined).readonly, true);
    assert.equal(commands.getState("k").readonly, true);
    assert.equal(commands.throttle("k", undefined).held, false);
    assert.equal(commands.throttle("k", undefined, 1, 100).held, true);
    assert.equal(commands.permit("k", { intervalMs: 1, maxWaiting: 1 }, 0).held, true);
    assert.throws(() => commands.all([]), RangeError);
  });
});

describe("windowBucket: limit per windowMs as an exact token bucket", () => {
  test("capacity ceil(rps × 1 × window) is exactly limit × cost, and the rate is limit per window", () => {
    const windows = [1, 7, 999, 1000, 1500, 2000, 3000, 60_000, 900_000, 3_600_000, 86_400_000, 86_400_001];
    const limits = [1, 2, 3, 5, 7, 10, 60, 100, 999, 1000, 12_345, 1_000_000];
    for (const windowMs of windows) {
      for (const limit of limits) {
        const b = windowBucket(limit, windowMs);
        const rps = BigInt(b.limit.rps);
        const [whole, frac = ""] = b.limit.window.split(".");
        assert.ok(frac.length <= 3 && b.limit.burst === 1);
        const windowMsBack = BigInt(whole) * 1000n + BigInt(frac.padEnd(3, "0"));
        assert.equal(windowMsBack, BigInt(windowMs));
        // capacity = rps × windowMs / 1000 tokens, a whole number: limit requests of `cost` tokens
        assert.equal((rps * BigInt(windowMs)) % 1000n, 0n, `${limit}/${windowMs}`);
        assert.equal((rps * BigInt(windowMs)) / 1000n, BigInt(limit) * BigInt(b.cost), `${limit}/${windowMs}`);
        // requests per second = rps / cost = limit / (windowMs / 1000)
        assert.equal(rps * BigInt(windowMs), BigInt(limit) * BigInt(b.cost) * 1000n);
        assert.ok(rps <= 1_000_000_000n && (rps < 1_000_000_000n || rps === 1_000_000_000n), "THROTTLE takes it: <= 1e9, at most 9 significant digits");
      }
    }
    assert.deepEqual(windowBucket(5, 60_000), { requests: 5, windowMs: 60_000, limit: { rps: "1", burst: 1, window: "60" }, cost: 12 });
    assert.deepEqual(windowBucket(100, 1000).limit, { rps: "100", burst: 1, window: "1" });
    assert.equal(windowBucket(100, 1000).cost, 1);
    assert.equal(windowBucket(10, 1500).limit.window, "1.5");
  });

  test("refuses what it cannot express", () => {
    assert.throws(() => windowBucket(0, 1000), RangeError);
    assert.throws(() => windowBucket(1.5, 1000), RangeError);
    assert.throws(() => windowBucket(5, 0), RangeError);
    assert.throws(() => windowBucket(5, 100.5), RangeError);
    assert.throws(() => windowBucket(2_000_000, 1), /beyond what THROTTLE can hold/);
  });
});

describe("results", () => {
  test("replies from every client shape parse the same", () => {
    const want = { allowed: true, remaining: 79, retryAfterMs: 0, resetAfterMs: 200, limit: 80 };
    for (const reply of [[1, 79, 0, 200, 80], [1n, 79n, 0n, 200n, 80n], ["1", "79", "0", "200", "80"]]) {
      assert.deepEqual({ ...ThrottleResult.fromReply(reply) }, want);
    }
    assert.throws(() => ThrottleResult.fromReply([1, 2, 3]), TypeError);
    assert.throws(() => ThrottleResult.fromReply([1, 2, 3, 4, 9007199254740993n]), TypeError);
    const flat = ["tokens", 1, "limit", 2, "rps", "7/3", "burst", null, "window", null, "source", "last-call", "knobs_ttl_ms", -1, "reset_after_ms", 5];
    const obj = Object.fromEntries(flat.reduce((a, v, i) => (i % 2 ? a : [...a, [v, flat[i + 1]]]), []));
    for (const reply of [flat, obj, new Map(Object.entries(obj)), flat.map((v) => (typeof v === "string" ? Buffer.from(v) : v))]) {
      assert.deepEqual({ ...LimiterState.fromReply(reply) }, {
        tokens: 1, limit: 2, rps: "7/3", burst: null, window: null, source: "last-call", knobsTtlMs: -1, resetAfterMs: 5,
      });
    }
    assert.equal(Permit.fromReply(null), null);
  });

  test("headers", () => {
    assert.deepEqual(new ThrottleResult(false, 0, 1, 2001, 10).headers(), {
      "RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "3", "Retry-After": "1",
    });
    assert.deepEqual(new ThrottleResult(false, 0, 4500, 9000, 10).headers()["Retry-After"], "5");
    assert.deepEqual(new ThrottleResult(true, -1, 0, 0, -1).headers(), {}, "rps -1: no limit, no headers");
  });
});
