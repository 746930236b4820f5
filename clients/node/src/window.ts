/**
 * "`limit` requests per `windowMs`" (what express-rate-limit and
 * @fastify/rate-limit are configured with) as a token bucket, exactly: a
 * bucket of `limit` requests refilled continuously at `limit` per window.
 *
 * The rate `limit / window` is often no finite decimal (5 per minute is
 * 1/12 per second), and THROTTLE's rps is a decimal. So a request costs
 * `cost` tokens, chosen so that the token rate is a whole number: with
 * `limit × 1000 / windowMs` reduced to `rps / cost`, the bucket is
 * `THROTTLE key rps 1 window cost` (window = windowMs / 1000 s), whose
 * capacity `ceil(rps × 1 × window)` is exactly `limit × cost` tokens.
 * 5 per minute: rps 1, cost 12, capacity 60 tokens (5 requests), one request
 * back every 12 s. 100 per second: rps 100, cost 1.
 */

import type { Limit } from "./commands.js";
import type { ThrottleResult } from "./results.js";

export interface WindowBucket {
  /** requests per window */
  readonly requests: number;
  readonly windowMs: number;
  /** THROTTLE's limit: whole tokens per second, burst 1, the window in seconds */
  readonly limit: Limit;
  /** tokens per request */
  readonly cost: number;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Milliseconds as an exact decimal number of seconds ("60", "1.5", "0.001"). */
function msToSeconds(ms: number): string {
  const whole = Math.floor(ms / 1000);
  const frac = String(ms % 1000).padStart(3, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : String(whole);
}

export function windowBucket(requests: number, windowMs: number): WindowBucket {
  if (!Number.isSafeInteger(requests) || requests < 1) {
    throw new RangeError(`the limit must be a whole number of requests >= 1, got ${String(requests)}`);
  }
  if (!Number.isSafeInteger(windowMs) || windowMs < 1) {
    throw new RangeError(`the window must be a whole number of milliseconds >= 1, got ${String(windowMs)}`);
  }
  const perSecond = BigInt(requests) * 1000n; // requests per second = perSecond / windowMs
  const g = gcd(perSecond, BigInt(windowMs));
  const rps = perSecond / g;
  const cost = BigInt(windowMs) / g;
  if (rps > 1_000_000_000n || BigInt(requests) * cost > 1_000_000_000_000_000n) {
    throw new RangeError(`${requests} requests per ${windowMs} ms is beyond what THROTTLE can hold exactly`);
  }
  return {
    requests,
    windowMs,
    limit: { rps: rps.toString(), burst: 1, window: msToSeconds(windowMs) },
    cost: Number(cost),
  };
}

/** A THROTTLE reply in requests: hits so far in the framework's sense (above
 * `requests` when denied) and the ms until the client may come back (when
 * denied) or until the bucket is full (when allowed). */
export function hits(bucket: WindowBucket, result: ThrottleResult): { totalHits: number; ms: number } {
  if (!result.allowed) return { totalHits: bucket.requests + 1, ms: Math.max(result.retryAfterMs, 0) };
  const left = Math.floor(Math.max(result.remaining, 0) / bucket.cost);
  return { totalHits: Math.min(Math.max(bucket.requests - left, 1), bucket.requests), ms: result.resetAfterMs };
}
