/**
 * RedisThrottle: the module's commands on one client. `run(command)` sends
 * any command built by `commands`; `limiter()` and `pacer()` give the
 * helpers, which share this object's dedicated connections for held calls.
 */

import * as commands from "./commands.js";
import type { CellLimit, Command, Limit, PermitSpec } from "./commands.js";
import { Limiter } from "./limiter.js";
import { Pacer } from "./pacer.js";
import type { AllResult, CellResult } from "./results.js";
import { Transport, type Client, type SendCommandFunctions, type TransportOptions } from "./transport.js";

const shared = new WeakMap<object, RedisThrottle>();

export class RedisThrottle {
  readonly #transport: Transport;

  constructor(client: Client | SendCommandFunctions, options: TransportOptions = {}) {
    this.#transport = new Transport(client, options);
  }

  /** The RedisThrottle of `client` (one per client, made on first use), or `client` itself if it is one. */
  static of(client: Client | SendCommandFunctions | RedisThrottle): RedisThrottle {
    if (client instanceof RedisThrottle) return client;
    let throttle = shared.get(client);
    if (!throttle) {
      throttle = new RedisThrottle(client);
      shared.set(client, throttle);
    }
    return throttle;
  }

  /** Sends one command (see `commands`) and returns its typed result. `signal` aborts a held call. */
  run<T>(command: Command<T>, signal?: AbortSignal): Promise<T> {
    return this.#transport.send(command, signal);
  }

  /** A token bucket on `key`; without `limit`, it uses the key's knobs. */
  limiter(key: string, limit?: Limit): Limiter {
    return new Limiter(this, key, limit);
  }

  /** Paced permits on `key`. */
  pacer(key: string, spec: PermitSpec): Pacer {
    return new Pacer(this, key, spec);
  }

  /** THROTTLE.ALL: takes `tokens` from every limit, or from none. In a cluster the keys must share a slot (a `{hash tag}`). */
  async allowAll(limits: ReadonlyArray<readonly [key: string, limit: Limit]>, tokens: number | bigint = 1): Promise<AllResult> {
    return this.run(commands.all(limits, tokens));
  }

  /** CL.THROTTLE, redis-cell's command and reply. */
  async cell(key: string, limit: CellLimit, quantity: number | bigint = 1): Promise<CellResult> {
    return this.run(commands.cell(key, limit, quantity));
  }

  /** Closes the connections opened for held calls (the client itself stays open). */
  close(): void {
    this.#transport.close();
  }
}
