// rush (the project's load tool) against the Express app: with
// redis-throttle's store the app keeps every window within the token bucket's
// bound (PASS); the same app with rate-limit-redis's fixed window lets twice
// the limit through at the window's edge (FAIL).
//
// The limit: 10 requests per 3 s, i.e. a bucket of capacity 10 refilled at
// 10/3 requests per second. rush runs on loopback with 4-8 connections for
// at most 3 s, at 100-200 requests per second (30-60 times the limit: enough
// to keep every bucket empty, without spending the test machine's cores).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { get, key, sleep, startApp } from "./helpers.mjs";

const RUSH = process.env.RUSH;
const LIMIT = ["--limit-rps", String(10 / 3), "--limit-capacity", "10"];

/** Runs rush with `args`; resolves { code, report } (the JSON report). */
function rush(args) {
  return new Promise((resolve, reject) => {
    execFile(RUSH, [...args, "--json"], { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error ? error.code : 0;
      if (typeof code !== "number") return reject(error);
      try {
        resolve({ code, report: JSON.parse(stdout) });
      } catch {
        reject(new Error(`rush exited ${code} without a report: ${stderr}`));
      }
    });
  });
}

/**
 * One request with `client` right after a multiple of 3 s of wall-clock
 * time (a fixed window then starts there and ends 3 s later), then rush
 * released 150 ms before the next multiple, calling for 1.5 s: across the
 * end of that window, even if the first request took a second to be served.
 */
async function acrossTheEdge(app, client) {
  await sleep(3000 - (Date.now() % 3000) + 5);
  const edge = Date.now() - (Date.now() % 3000) + 3000;
  assert.equal((await get(app.url, { "x-key": client })).status, 200);
  const served = Date.now();
  assert.ok(served < edge - 1000, "the first request was served within 2 s");
  return rush(["http", "-c", "4", "-d", "1500ms", "-r", "100", "--align-to", "3s", "--align-lead", "150ms", "-H", `X-Key: ${client}`, "--verify", ...LIMIT, app.url]);
}

describe("rush --verify against the Express app", { skip: !RUSH && "set RUSH to the rush binary (scripts/node.sh does)" }, () => {
  let throttle;
  let fixedWindow;
  before(async () => {
    [throttle, fixedWindow] = await Promise.all([
      startApp("express", { CLIENT: "node-redis", LIMIT: "10", WINDOW_MS: "3000" }),
      startApp("express", { CLIENT: "node-redis", LIMIT: "10", WINDOW_MS: "3000", STORE: "rate-limit-redis" }),
    ]);
  });
  after(() => Promise.all([throttle.stop(), fixedWindow.stop()]));

  test("PASS: sustained load on three clients stays within the bound, near the ideal", async (t) => {
    const { code, report } = await rush([
      "http", "-c", "8", "-d", "3s", "-r", "200", "--keys", "1..=3", "-H", `X-Key: ${key("rush")}-{n}`, "--verify", ...LIMIT, throttle.url,
    ]);
    const v = report.verification;
    t.diagnostic(`rush: ${report.allowed} allowed, ${report.throttled} throttled, ${report.errors} errors in ${report.elapsed_s.toFixed(2)} s: ${JSON.stringify(v)}`);
    assert.equal(v.verdict, "pass", JSON.stringify(v));
    assert.equal(code, 0);
    assert.equal(report.errors, 0);
    // 3 keys × (10 + 10/3 × ~3 s): about 60; each key at least its capacity
    assert.ok(report.allowed >= 30 && report.allowed <= 3 * (10 + (10 / 3) * (report.elapsed_s + 0.1)), `${report.allowed}`);
    assert.ok(report.throttled > 0);
  });

  test("PASS at the window's edge with redis-throttle; FAIL with rate-limit-redis's fixed window", async (t) => {
    const ours = await acrossTheEdge(throttle, key("edge"));
    t.diagnostic(`redis-throttle: ${ours.report.allowed} allowed: ${JSON.stringify(ours.report.verification)}`);
    assert.equal(ours.report.verification.verdict, "pass", JSON.stringify(ours.report.verification));
    assert.equal(ours.code, 0);
    assert.ok(ours.report.allowed >= 9 && ours.report.allowed <= 15, `${ours.report.allowed}`); // 9 or 10, then 10/3 per s

    const fixed = await acrossTheEdge(fixedWindow, key("edge"));
    const v = fixed.report.verification;
    t.diagnostic(`rate-limit-redis: ${fixed.report.allowed} allowed: ${JSON.stringify(v)}`);
    assert.equal(v.verdict, "fail", JSON.stringify(v));
    assert.equal(fixed.code, 1);
    // 9 left in the first window, then 10 more as soon as it ends
    assert.ok(fixed.report.allowed >= 19, `${fixed.report.allowed} admitted`);
  });
});
