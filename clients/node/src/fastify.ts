/**
 * A store for @fastify/rate-limit backed by THROTTLE.
 *
 *     import rateLimit from "@fastify/rate-limit";
 *     import { throttleStore } from "redis-throttle/fastify";
 *
 *     await app.register(rateLimit, { max: 5, timeWindow: 60_000, store: throttleStore(redis) });
 *
 * `max` requests per `timeWindow` become a token bucket of `max` requests
 * refilled continuously over `timeWindow` (see window.ts). The plugin's
 * fixed-window options `continueExceeding` and `exponentialBackoff` do not
 * apply (a denied request takes nothing from the bucket), and `ban` counts
 * nothing: a denied request reports `max + 1` hits.
 */

import * as commands from "./commands.js";
import { RedisThrottle } from "./throttle.js";
import type { Client } from "./transport.js";
import { hits, windowBucket, type WindowBucket } from "./window.js";

type Callback = (error: Error | null, result?: { current: number; ttl: number }) => void;

export interface FastifyStoreOptions {
  /** prefix of every key (default "rlt:"); route stores add `METHOD/url-` */
  prefix?: string;
}

/** The store class @fastify/rate-limit instantiates (`new Store(options)`), bound to `client`. */
export function throttleStore(client: Client | RedisThrottle, options: FastifyStoreOptions = {}) {
  const throttle = RedisThrottle.of(client);
  const prefix = options.prefix ?? "rlt:";
  return class extends FastifyThrottleStore {
    constructor() {
      super(throttle, prefix);
    }
  };
}

export class FastifyThrottleStore {
  readonly #buckets = new Map<string, WindowBucket>();

  constructor(
    readonly throttle: RedisThrottle,
    readonly prefix: string,
  ) {}

  #bucket(max: number, timeWindow: number): WindowBucket {
    const id = `${max}/${timeWindow}`;
    let bucket = this.#buckets.get(id);
    if (!bucket) {
      bucket = windowBucket(max, timeWindow);
      if (this.#buckets.size > 100) this.#buckets.clear();
      this.#buckets.set(id, bucket);
    }
    return bucket;
  }

  /** One request: `current` is the hits in the plugin's sense (above `max` when denied),
   * `ttl` the ms until the client may come back (denied) or until the bucket is full (allowed). */
  incr(key: string, callback: Callback, timeWindow: number, max: number): void {
    this.#answer(key, callback, timeWindow, max, true);
  }

  /** The same, without taking anything (THROTTLE.PEEK). */
  read(key: string, callback: Callback, timeWindow: number, max: number): void {
    this.#answer(key, callback, timeWindow, max, false);
  }

  #answer(key: string, callback: Callback, timeWindow: number, max: number, take: boolean): void {
    let bucket: WindowBucket;
    try {
      bucket = this.#bucket(max, timeWindow);
    } catch (e) {
      return callback(e as Error);
    }
    const command = take
      ? commands.throttle(this.prefix + key, bucket.limit, bucket.cost)
      : commands.peek(this.prefix + key, bucket.limit, 0);
    this.throttle.run(command).then(
      (result) => {
        if (take) {
          const { totalHits, ms } = hits(bucket, result);
          return callback(null, { current: totalHits, ttl: ms });
        }
        const held = Math.floor(Math.max(result.remaining, 0) / bucket.cost);
        callback(null, { current: Math.max(bucket.requests - held, 0), ttl: result.resetAfterMs });
      },
      (error) => callback(error),
    );
  }

  /** The store of one route (its own keys: the prefix, then `METHOD/url-`). */
  child(routeOptions: object): FastifyThrottleStore {
    type Route = { method?: unknown; url?: unknown; routeInfo?: { method?: unknown; url?: unknown } };
    const route = (routeOptions as Route).routeInfo ?? (routeOptions as Route);
    return new FastifyThrottleStore(this.throttle, `${this.prefix}${String(route.method)}${String(route.url)}-`);
  }
}
