/**
 * Pacer: paced permits on one key (PERMIT). One stream of calls at least
 * `intervalMs` apart, shared by every process that uses the key. `block()`
 * lets the server hold the caller until its slot, so callers are released in
 * order: a FIFO queue in Redis; `slot(fn)` runs `fn` there.
 */

import * as commands from "./commands.js";
import type { PermitSpec } from "./commands.js";
import type { Permit } from "./results.js";
import { RedisThrottle } from "./throttle.js";
import type { Client } from "./transport.js";

export interface BlockOptions {
  /** how long the server may hold the call, ms; omitted: as long as the slot needs (BLOCK 0) */
  timeoutMs?: number;
  /** aborts the wait from this side: its connection closes; the slot the server reserved stays taken */
  signal?: AbortSignal;
}

/** No permit: the queue is full, the slot is further than the timeout, or a held
 * caller was released after its permit expired (the server stalled longer than the grace). */
export class PermitRefused extends Error {
  override name = "PermitRefused";
  constructor(readonly key: string) {
    super(`no permit on ${JSON.stringify(key)}: the queue is full or the slot is too far away`);
  }
}

export class Pacer {
  readonly throttle: RedisThrottle;

  constructor(
    client: Client | RedisThrottle,
    readonly key: string,
    readonly spec: PermitSpec,
  ) {
    this.throttle = RedisThrottle.of(client);
  }

  /** PERMIT: a permit (wait `permit.timeToWaitMs`, or `await permit.sleep()`, before acting),
   * or null when `maxWaiting` permits are already waiting. */
  async permit(): Promise<Permit | null> {
    return this.throttle.run(commands.permit(this.key, this.spec));
  }

  /** PERMIT ... BLOCK: resolves when the slot has come (`timeToWaitMs` 0), or
   * with null at once when the queue is full or the slot is more than `timeoutMs` away. */
  async block(options: BlockOptions = {}): Promise<Permit | null> {
    return this.throttle.run(commands.permit(this.key, this.spec, options.timeoutMs ?? 0), options.signal);
  }

  /** Waits for this caller's slot (`block`), then runs `fn` and returns its result.
   * Rejects with PermitRefused when there is no permit. */
  async slot<T>(fn: (permit: Permit) => T | Promise<T>, options: BlockOptions = {}): Promise<T> {
    const permit = await this.block(options);
    if (permit === null) throw new PermitRefused(this.key);
    return fn(permit);
  }
}
