/**
 * Limiter: a token bucket on one key (THROTTLE, WAIT, PEEK, REFUND and the
 * knobs). The capacity is `max(1, ceil(rps × burst × window))` tokens,
 * refilled continuously at `rps` per second. Without a limit, every call
 * uses the key's knobs (THROTTLE.SET).
 */

import * as commands from "./commands.js";
import type { Knobs, Limit } from "./commands.js";
import type { LimiterState, ThrottleResult } from "./results.js";
import { RedisThrottle } from "./throttle.js";
import type { Client } from "./transport.js";

export interface WaitOptions {
  /** how long the server may hold the call for its tokens, ms (THROTTLE ... WAIT) */
  timeoutMs: number;
  tokens?: number | bigint;
  /** aborts the wait from this side: its connection closes; tokens the server reserved stay taken */
  signal?: AbortSignal;
}

export class Limiter {
  readonly throttle: RedisThrottle;

  constructor(
    client: Client | RedisThrottle,
    readonly key: string,
    readonly limit?: Limit,
  ) {
    this.throttle = RedisThrottle.of(client);
  }

  /** THROTTLE: takes `tokens` if the bucket holds them. */
  async allow(tokens: number | bigint = 1): Promise<ThrottleResult> {
    return this.throttle.run(commands.throttle(this.key, this.limit, tokens));
  }

  /**
   * THROTTLE ... WAIT: takes the tokens, the server holding the call until
   * they accrue if that is within `timeoutMs` (waiters are served in order);
   * denied at once, reserving nothing, if they will not have accrued by then.
   * A denial with `retryAfterMs` 0 means the server released the call later
   * than its tokens were due (it stalled): call again.
   */
  async wait(options: WaitOptions): Promise<ThrottleResult> {
    const { timeoutMs, tokens = 1, signal } = options;
    return this.throttle.run(commands.throttle(this.key, this.limit, tokens, timeoutMs), signal);
  }

  /** THROTTLE.PEEK: what `allow(tokens)` would answer now; writes nothing. `peek(0).remaining` is the tokens held now. */
  async peek(tokens: number | bigint = 1): Promise<ThrottleResult> {
    return this.throttle.run(commands.peek(this.key, this.limit, tokens));
  }

  /** THROTTLE.REFUND: gives back tokens taken for work that did not happen
   * (never above the capacity). The whole tokens now held, or null for a missing key. */
  async refund(tokens: number | bigint): Promise<number | null> {
    return this.throttle.run(commands.refund(this.key, tokens));
  }

  /** THROTTLE.SET: settings that override every caller's limit while they live. The first call gives rps, burst and window. */
  async setKnobs(knobs: Knobs): Promise<void> {
    return this.throttle.run(commands.setKnobs(this.key, knobs));
  }

  /** THROTTLE.GET: the state now, or null for a missing key. */
  async get(): Promise<LimiterState | null> {
    return this.throttle.run(commands.getState(this.key));
  }

  /** THROTTLE.RESET: removes the knobs (keeps the tokens); true if there were knobs. */
  async resetKnobs(): Promise<boolean> {
    return this.throttle.run(commands.resetKnobs(this.key));
  }

  /** DEL: forgets the bucket and its knobs; true if the key existed. */
  async delete(): Promise<boolean> {
    return this.throttle.run(commands.del(this.key));
  }
}
