/**
 * How commands reach Redis through the client the application already has:
 * node-redis (`createClient`, `createCluster`; redis 5 and 6), ioredis
 * (`Redis`, `Cluster`; ioredis 5 and 6), or bare `sendCommand` functions as
 * rate-limit-redis takes them.
 *
 * - Cluster calls are always routed by the command's first key: node-redis
 *   gets it as `sendCommand(firstKey, ...)`, ioredis as the command's slot
 *   (it knows no module command's keys and would otherwise pick a random
 *   master and follow MOVED).
 * - ioredis's `keyPrefix` is applied to the keys, as ioredis applies it to
 *   its own commands (it cannot for module commands: it does not know where
 *   their keys are).
 * - Held calls (WAIT, BLOCK) run on dedicated connections (duplicates of the
 *   client, one per call in flight, kept for reuse while idle), so they never
 *   stall the commands multiplexed on the application's connection. Their
 *   duplicates have no command or socket timeout: the server answers every
 *   held call by its own timeout. An AbortSignal closes the call's dedicated
 *   connection; whatever the server reserved for the call stays taken.
 */

import type { Command } from "./commands.js";
import type { Reply } from "./results.js";
import { keySlot } from "./slot.js";

/* Minimal shapes of the supported clients: only what is used here, so that
 * the published types need neither package. */

/** node-redis `createClient()` (redis 5, 6). */
export interface NodeRedisClientLike {
  sendCommand(args: any[], options?: any): Promise<any>;
  duplicate(overrides?: any): any;
  connect(): Promise<any>;
}
/** node-redis `createCluster()` (redis 5, 6). */
export interface NodeRedisClusterLike {
  sendCommand(firstKey: any, isReadonly: any, args: any[], options?: any): Promise<any>;
  duplicate(overrides?: any): any;
  connect(): Promise<any>;
  getSlotMaster(slot: number): any;
}
/** ioredis `new Redis()` and `new Cluster()` (ioredis 5, 6). */
export interface IORedisLike {
  call(...args: any[]): Promise<any>;
  sendCommand(command: any, ...rest: any[]): any;
  duplicate(...args: any[]): any;
  disconnect(...args: any[]): any;
  readonly isCluster: boolean;
  options: any;
}
/** rate-limit-redis's way in: `sendCommand(...args)`, or for a cluster `sendCommandCluster({ key, isReadOnly, command })`. */
export interface SendCommandFunctions {
  sendCommand?: (...args: string[]) => Promise<unknown> | unknown;
  sendCommandCluster?: (details: { key: string; isReadOnly: boolean; command: string[] }) => Promise<unknown> | unknown;
}
/** Any client this package works with. */
export type Client = NodeRedisClientLike | NodeRedisClusterLike | IORedisLike;

/** An ERR reply from the module: a bad argument (the message names it), or a missing limit. */
export class ThrottleError extends Error {
  override name = "ThrottleError";
}

/** One way to send a command: the application's client, or a dedicated duplicate of it. */
interface Conn {
  call(args: readonly string[], key: string, readonly: boolean): Promise<Reply>;
  /** a new connection of the same kind, for held calls; undefined when the client cannot be duplicated */
  dedicated?(): Promise<Conn>;
  close(): void;
  readonly keyPrefix: string;
}

const noop = () => {};

/** Closes a client, ignoring that it may be closed already. */
function closeQuietly(close: () => unknown): void {
  try {
    Promise.resolve(close()).catch(noop);
  } catch {
    // already closed
  }
}

function nodeRedisClient(c: any): Conn {
  return {
    keyPrefix: "",
    call: (args) => c.sendCommand([...args]),
    dedicated: async () => {
      const socket = { ...c.options?.socket, socketTimeout: undefined };
      const dup = c.duplicate({ socket });
      dup.on("error", noop); // reported through the pending command
      await dup.connect();
      return nodeRedisClient(dup);
    },
    close: () => closeQuietly(() => (typeof c.destroy === "function" ? c.destroy() : c.disconnect())),
  };
}

function nodeRedisCluster(c: any): Conn {
  return {
    keyPrefix: "",
    call: (args, key, readonly) => c.sendCommand(key, readonly, [...args]),
    dedicated: async () => {
      const options = c._options ?? {};
      const defaults = { ...options.defaults, socket: { ...options.defaults?.socket, socketTimeout: undefined } };
      const dup = c.duplicate({ defaults, minimizeConnections: true });
      dup.on("error", noop);
      await dup.connect();
      return nodeRedisCluster(dup);
    },
    close: () => closeQuietly(() => (typeof c.destroy === "function" ? c.destroy() : c.disconnect())),
  };
}

const HELD_IOREDIS_OPTIONS = { commandTimeout: undefined, socketTimeout: undefined, autoResendUnfulfilledCommands: false };

function ioredis(c: any): Conn {
  return {
    keyPrefix: c.options?.keyPrefix ?? "",
    call: (args) => c.call(...args),
    dedicated: async () => ioredis(c.duplicate(HELD_IOREDIS_OPTIONS).on("error", noop)),
    close: () => closeQuietly(() => c.disconnect()),
  };
}

function ioredisCluster(c: any): Conn {
  return {
    keyPrefix: c.options?.keyPrefix ?? "",
    call: (args, key) => {
      // ioredis builds the Command through call(); we hand it to the cluster
      // with its slot set from our key (Command.getSlot is what Cluster routes by).
      const slot = keySlot(key);
      const routed = Object.create(c, {
        options: { value: { ...c.options, enableAutoPipelining: false } },
        sendCommand: {
          value: (cmd: { getSlot: () => number }) => {
            cmd.getSlot = () => slot;
            return c.sendCommand(cmd);
          },
        },
      });
      return c.call.apply(routed, args);
    },
    dedicated: async () =>
      ioredisCluster(c.duplicate([], { redisOptions: { ...c.options?.redisOptions, ...HELD_IOREDIS_OPTIONS } }).on("error", noop)),
    close: () => closeQuietly(() => c.disconnect()),
  };
}

function functions(f: SendCommandFunctions): Conn {
  const { sendCommand, sendCommandCluster } = f;
  return {
    keyPrefix: "",
    call: async (args, key, readonly) =>
      sendCommandCluster
        ? sendCommandCluster({ key, isReadOnly: readonly, command: [...args] })
        : sendCommand!(...args),
    close: noop,
  };
}

function connFor(client: Client | SendCommandFunctions): Conn {
  const c = client as any;
  if (c && typeof c.call === "function" && typeof c.isCluster === "boolean") {
    return c.isCluster ? ioredisCluster(c) : ioredis(c);
  }
  if (c && typeof c.sendCommand === "function" && typeof c.duplicate === "function") {
    return typeof c.getSlotMaster === "function" ? nodeRedisCluster(c) : nodeRedisClient(c);
  }
  if (c && (typeof c.sendCommand === "function" || typeof c.sendCommandCluster === "function")) {
    return functions(c);
  }
  throw new TypeError(
    "expected a node-redis client or cluster (createClient, createCluster), an ioredis Redis or Cluster, " +
      "or { sendCommand } / { sendCommandCluster } functions",
  );
}

function translate(error: unknown): unknown {
  const message = error instanceof Error ? error.message : "";
  if (message.startsWith("ERR ") && !/^ERR unknown (sub)?command/.test(message)) {
    return new ThrottleError(message.slice(4), { cause: error });
  }
  return error;
}

export interface TransportOptions {
  /** how long an idle dedicated connection is kept for the next held call (ms, default 5000) */
  idleMs?: number;
}

/** Sends commands; held ones on dedicated connections. */
export class Transport {
  readonly #conn: Conn;
  readonly #idle: Conn[] = [];
  readonly #busy = new Set<Conn>();
  readonly #idleMs: number;
  #reaper: ReturnType<typeof setTimeout> | undefined;

  constructor(client: Client | SendCommandFunctions, options: TransportOptions = {}) {
    this.#conn = connFor(client);
    this.#idleMs = options.idleMs ?? 5000;
  }

  /** Sends `cmd` and reads its reply. A held command goes on a dedicated
   * connection, and `signal` aborts it (rejecting with the signal's reason). */
  async send<T>(cmd: Command<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    const prefix = this.#conn.keyPrefix;
    const args = prefix ? cmd.args.map((a, i) => (cmd.keys.includes(i) ? prefix + a : a)) : cmd.args;
    const key = args[cmd.keys[0]!]!;
    let reply: Reply;
    try {
      reply = cmd.held ? await this.#held(args, key, signal) : await this.#conn.call(args, key, cmd.readonly);
    } catch (e) {
      throw translate(e);
    }
    return cmd.parse(reply);
  }

  async #held(args: readonly string[], key: string, signal?: AbortSignal): Promise<Reply> {
    if (!this.#conn.dedicated) {
      throw new TypeError("held calls (WAIT, BLOCK) need a client this package can duplicate, not sendCommand functions");
    }
    const conn = this.#idle.pop() ?? (await this.#conn.dedicated());
    if (signal?.aborted) {
      this.#release(conn);
      throw signal.reason;
    }
    this.#busy.add(conn);
    let aborted = false;
    let failed = false;
    let onAbort = noop;
    const abort = new Promise<never>((_, reject) => {
      onAbort = () => {
        aborted = true;
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    const call = conn.call(args, key, false);
    call.catch(noop); // rejected after an abort, when its connection closes
    try {
      return await Promise.race([call, abort]);
    } catch (e) {
      failed = true; // the connection may be broken: do not reuse it
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.#busy.delete(conn);
      if (aborted || failed) conn.close();
      else this.#release(conn);
    }
  }

  #release(conn: Conn): void {
    this.#idle.push(conn);
    clearTimeout(this.#reaper);
    this.#reaper = setTimeout(() => this.#closeIdle(), this.#idleMs);
    this.#reaper.unref();
  }

  #closeIdle(): void {
    for (const conn of this.#idle.splice(0)) conn.close();
  }

  /** Closes the dedicated connections (idle ones now, busy ones too: their held calls fail).
   * The application's own client stays open. */
  close(): void {
    clearTimeout(this.#reaper);
    this.#closeIdle();
    for (const conn of this.#busy) conn.close();
    this.#busy.clear();
  }
}
