/**
 * A Store for express-rate-limit (v7, v8) backed by THROTTLE.
 *
 *     import { rateLimit } from "express-rate-limit";
 *     import { RedisStore } from "redis-throttle/express"; // was: from "rate-limit-redis"
 *
 *     app.use(rateLimit({ windowMs: 60_000, limit: 5, store: new RedisStore({ client }) }));
 *
 * `limit` requests per `windowMs` become a token bucket of `limit` requests
 * refilled continuously over `windowMs` (see window.ts): one THROTTLE per
 * request, no fixed window, so no double burst at a window's edge.
 */

import * as commands from "./commands.js";
import { RedisThrottle } from "./throttle.js";
import type { Client, SendCommandFunctions } from "./transport.js";
import { hits, windowBucket, type WindowBucket } from "./window.js";

export interface ThrottleStoreOptions extends SendCommandFunctions {
  /** the Redis client (node-redis or ioredis, standalone or cluster); or give
   * rate-limit-redis's `sendCommand` / `sendCommandCluster` instead */
  client?: Client | RedisThrottle;
  /** prefix of every key (default "rlt:") */
  prefix?: string;
  /** the limit, when express-rate-limit's `limit` is a function (the bucket needs a fixed number) */
  limit?: number;
}

/** The parts of express-rate-limit's options this store reads. */
export interface RateLimitOptions {
  windowMs: number;
  limit?: unknown;
  max?: unknown;
  skipFailedRequests?: boolean;
}

export interface ClientRateLimitInfo {
  totalHits: number;
  resetTime: Date | undefined;
}

export class ThrottleStore {
  readonly prefix: string;
  /** keys are shared by every process using the same Redis */
  readonly localKeys = false;
  readonly #throttle: RedisThrottle;
  readonly #limit: number | undefined;
  #bucket: WindowBucket | undefined;
  /** Denied increments in this process whose decrement is still to come (skipFailedRequests):
   * a denied call took nothing, so its decrement must give nothing back. */
  #denied: Map<string, number> | undefined;

  constructor(options: ThrottleStoreOptions) {
    const client = options.client ?? (options.sendCommand || options.sendCommandCluster ? options : undefined);
    if (!client) throw new TypeError("ThrottleStore needs { client } or { sendCommand } / { sendCommandCluster }");
    this.#throttle = RedisThrottle.of(client);
    this.prefix = options.prefix ?? "rlt:";
    this.#limit = options.limit;
  }

  /** Called by express-rate-limit with its options: reads `windowMs` and `limit`. */
  init(options: RateLimitOptions): void {
    const limit = typeof options.limit === "number" ? options.limit : typeof options.max === "number" ? options.max : this.#limit;
    if (limit === undefined) {
      throw new TypeError("ThrottleStore needs a fixed limit: give express-rate-limit a number, or the store { limit }");
    }
    this.#bucket = windowBucket(limit, options.windowMs);
    this.#denied = options.skipFailedRequests ? new Map() : undefined;
  }

  #ready(): WindowBucket {
    if (!this.#bucket) throw new Error("ThrottleStore.init() was not called: use the store through express-rate-limit");
    return this.#bucket;
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    const bucket = this.#ready();
    const result = await this.#throttle.run(commands.throttle(this.prefix + key, bucket.limit, bucket.cost));
    if (!result.allowed && this.#denied) this.#denied.set(key, (this.#denied.get(key) ?? 0) + 1);
    const { totalHits, ms } = hits(bucket, result);
    return { totalHits, resetTime: new Date(Date.now() + ms) };
  }

  /** Gives one request back (THROTTLE.REFUND), unless it answers a denied increment. */
  async decrement(key: string): Promise<void> {
    const bucket = this.#ready();
    const denied = this.#denied?.get(key) ?? 0;
    if (denied > 0) {
      if (denied === 1) this.#denied!.delete(key);
      else this.#denied!.set(key, denied - 1);
      return;
    }
    await this.#throttle.run(commands.refund(this.prefix + key, bucket.cost));
  }

  async resetKey(key: string): Promise<void> {
    await this.#throttle.run(commands.del(this.prefix + key));
  }

  /** The hits counted now (THROTTLE.PEEK; writes nothing). */
  async get(key: string): Promise<ClientRateLimitInfo> {
    const bucket = this.#ready();
    const result = await this.#throttle.run(commands.peek(this.prefix + key, bucket.limit, 0));
    const held = Math.floor(Math.max(result.remaining, 0) / bucket.cost);
    return { totalHits: Math.max(bucket.requests - held, 0), resetTime: new Date(Date.now() + result.resetAfterMs) };
  }
}

/** The same class under rate-limit-redis's name: switching is the import line. */
export { ThrottleStore as RedisStore };
