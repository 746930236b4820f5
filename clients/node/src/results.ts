/**
 * Typed replies of the module's commands. Field names are the Python
 * package's (`redis_throttle.results`) in camelCase: `retry_after_ms` is
 * `retryAfterMs`. Every `...Ms` field is the server's integer, exact (the
 * module never replies an integer beyond 9e15, so JavaScript reads each one
 * exactly); times (`validAtMs`, `expiresAtMs`) are Unix ms on the server's clock.
 */

/** PERMIT's `expires_at_ms` for a permit that never expires: 9999-12-31T23:59:59.999Z. */
export const NEVER_MS = 253_402_300_799_999;

/** A reply as the clients give it: numbers, strings, Buffers, arrays, maps, null. */
export type Reply = unknown;

function unexpected(what: string, reply: Reply): TypeError {
  return new TypeError(`unexpected reply for ${what}: ${describe(reply)}`);
}

function describe(reply: Reply): string {
  try {
    return JSON.stringify(reply, (_, v) => (typeof v === "bigint" ? `${v}n` : v));
  } catch {
    return String(reply);
  }
}

/** A reply string (string or Buffer) as a string. */
export function text(reply: Reply, what = "a string"): string {
  if (typeof reply === "string") return reply;
  if (Buffer.isBuffer(reply)) return reply.toString();
  throw unexpected(what, reply);
}

/** A reply integer as a number: numbers, bigints and digit strings (ioredis `stringNumbers`). */
export function int(reply: Reply, what = "an integer"): number {
  let n: number;
  if (typeof reply === "number") n = reply;
  else if (typeof reply === "bigint") n = Number(reply);
  else if (typeof reply === "string" || Buffer.isBuffer(reply)) {
    const s = reply.toString();
    if (!/^-?\d+$/.test(s)) throw unexpected(what, reply);
    n = Number(s);
  } else throw unexpected(what, reply);
  if (!Number.isSafeInteger(n)) throw unexpected(what, reply);
  return n;
}

function array(reply: Reply, length: number, what: string): Reply[] {
  if (!Array.isArray(reply) || reply.length !== length) throw unexpected(what, reply);
  return reply;
}

/** A map reply: a RESP3 map as an object or a Map, or RESP2's flat field/value array. */
export function fields(reply: Reply, what: string): Map<string, Reply> {
  if (Array.isArray(reply)) {
    if (reply.length % 2 !== 0) throw unexpected(what, reply);
    const m = new Map<string, Reply>();
    for (let i = 0; i < reply.length; i += 2) m.set(text(reply[i], what), reply[i + 1]);
    return m;
  }
  if (reply instanceof Map) return new Map([...reply].map(([k, v]) => [text(k, what), v]));
  if (reply && typeof reply === "object" && !Buffer.isBuffer(reply)) return new Map(Object.entries(reply));
  throw unexpected(what, reply);
}

/** Seconds, rounded up, from milliseconds. */
const ceilSeconds = (ms: number): number => Math.ceil(ms / 1000);

/** THROTTLE and THROTTLE.PEEK: `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`. */
export class ThrottleResult {
  constructor(
    /** whether the call was allowed (its tokens taken) */
    readonly allowed: boolean,
    /** whole tokens left after this call (-1 under `rps -1`, "allow all") */
    readonly remaining: number,
    /** 0 when allowed; else ms until a call of the same cost would be allowed
     * (rounded up); -1 when the cost exceeds the limit (it never will be) */
    readonly retryAfterMs: number,
    /** ms until the bucket is full again (rounded up) */
    readonly resetAfterMs: number,
    /** the bucket's capacity (0 under `rps 0`, -1 under `rps -1`) */
    readonly limit: number,
  ) {}

  static fromReply(reply: Reply): ThrottleResult {
    const [allowed, remaining, retry, reset, limit] = array(reply, 5, "THROTTLE").map((v) => int(v, "THROTTLE"));
    return new ThrottleResult(allowed === 1, remaining, retry, reset, limit);
  }

  /** True under `rps -1` (every call allowed, nothing counted). */
  get unlimited(): boolean {
    return this.limit < 0;
  }

  /**
   * The rate-limit headers an HTTP service sends with this result:
   * `RateLimit-Limit` (capacity), `RateLimit-Remaining` (tokens left),
   * `RateLimit-Reset` (whole seconds until the bucket is full, rounded up),
   * and on a denial that a retry can cure, `Retry-After` (whole seconds,
   * rounded up, at least 1). A denial that can never succeed (cost above the
   * limit) has no `Retry-After`: answer it with an error rather than 429.
   * Under `rps -1` (no limit) there are no headers.
   */
  headers(): Record<string, string> {
    if (this.unlimited) return {};
    const headers: Record<string, string> = {
      "RateLimit-Limit": String(this.limit),
      "RateLimit-Remaining": String(Math.max(this.remaining, 0)),
      "RateLimit-Reset": String(ceilSeconds(this.resetAfterMs)),
    };
    if (!this.allowed && this.retryAfterMs >= 0) {
      headers["Retry-After"] = String(Math.max(1, ceilSeconds(this.retryAfterMs)));
    }
    return headers;
  }
}

/** THROTTLE.ALL: `[allowed, denied_by, retry_after_ms, [remaining...]]`. */
export class AllResult {
  constructor(
    readonly allowed: boolean,
    /** 0-based position of the first limit that refused; null when allowed */
    readonly deniedBy: number | null,
    /** longest wait among the limits that refused (ms, rounded up); 0 when
     * allowed; -1 when one of them can never allow this cost */
    readonly retryAfterMs: number,
    /** each limit's whole tokens (after the call when allowed, as they stand
     * when denied), in the order given */
    readonly remaining: readonly number[],
  ) {}

  static fromReply(reply: Reply): AllResult {
    const [allowed, deniedBy, retry, remaining] = array(reply, 4, "THROTTLE.ALL");
    if (!Array.isArray(remaining)) throw unexpected("THROTTLE.ALL", reply);
    const by = int(deniedBy, "THROTTLE.ALL");
    return new AllResult(
      int(allowed, "THROTTLE.ALL") === 1,
      by > 0 ? by - 1 : null,
      int(retry, "THROTTLE.ALL"),
      remaining.map((r) => int(r, "THROTTLE.ALL")),
    );
  }
}

/** PERMIT: a slot on a paced stream. */
export class Permit {
  /** performance.now() when the reply arrived: `sleep()` and `expired()` count from it */
  readonly receivedAt = performance.now();

  constructor(
    /** ms to wait before acting (0 for an immediate permit, and for a permit
     * answered by BLOCK when its slot came) */
    readonly timeToWaitMs: number,
    /** the slot, Unix ms on the server's clock (rounded up: never early) */
    readonly validAtMs: number,
    /** end of the slot's grace, Unix ms; NEVER_MS for "never" */
    readonly expiresAtMs: number,
  ) {}

  /** null (the queue is full, or the slot is further than BLOCK's timeout) or a Permit. */
  static fromReply(reply: Reply): Permit | null {
    if (reply === null || reply === undefined) return null;
    const [wait, validAt, expiresAt] = array(reply, 3, "PERMIT").map((v) => int(v, "PERMIT"));
    return new Permit(wait, validAt, expiresAt);
  }

  get validAt(): Date {
    return new Date(this.validAtMs);
  }

  /** An immediate permit never expires. */
  get neverExpires(): boolean {
    return this.expiresAtMs >= NEVER_MS;
  }

  /** null when the permit never expires. */
  get expiresAt(): Date | null {
    return this.neverExpires ? null : new Date(this.expiresAtMs);
  }

  /** Resolves at the slot (timeToWaitMs after the reply arrived); rejects if `signal` aborts first. */
  sleep(signal?: AbortSignal): Promise<void> {
    const left = this.timeToWaitMs - (performance.now() - this.receivedAt);
    return sleep(left, signal);
  }

  /** Whether the slot's grace is over, on this process's monotonic clock from the reply. */
  expired(): boolean {
    if (this.neverExpires) return false;
    const serverNowMs = this.validAtMs - this.timeToWaitMs;
    return performance.now() - this.receivedAt > this.expiresAtMs - serverNowMs;
  }
}

/** Resolves after `ms` (at once if `ms` <= 0); rejects with the signal's reason if it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    if (ms <= 0) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** THROTTLE.GET: a limiter's state now. */
export class LimiterState {
  constructor(
    /** whole tokens now (0 under `RPS 0`, -1 under `RPS -1`) */
    readonly tokens: number,
    /** capacity (0 under a switch) */
    readonly limit: number,
    /** the rate in force, exact, as the server writes it: "5", "0.25", "7/3" */
    readonly rps: string,
    /** the knobs' burst and window (exact decimals); null when `source` is "last-call" */
    readonly burst: string | null,
    readonly window: string | null,
    /** "knobs" (THROTTLE.SET) or "last-call" (the last THROTTLE's limit) */
    readonly source: string,
    /** the knobs' remaining life in ms; -1 without knobs */
    readonly knobsTtlMs: number,
    /** ms until the bucket is full again */
    readonly resetAfterMs: number,
  ) {}

  static fromReply(reply: Reply): LimiterState | null {
    if (reply === null || reply === undefined) return null;
    const m = fields(reply, "THROTTLE.GET");
    const get = (k: string) => {
      if (!m.has(k)) throw unexpected(`THROTTLE.GET (no ${k})`, reply);
      return m.get(k);
    };
    const decimal = (k: string) => {
      const v = get(k);
      return v === null || v === undefined ? null : text(v, "THROTTLE.GET");
    };
    return new LimiterState(
      int(get("tokens")),
      int(get("limit")),
      text(get("rps")),
      decimal("burst"),
      decimal("window"),
      text(get("source")),
      int(get("knobs_ttl_ms")),
      int(get("reset_after_ms")),
    );
  }

  get hasKnobs(): boolean {
    return this.source === "knobs";
  }
}

/** CL.THROTTLE (redis-cell's reply): `[limited, limit, remaining, retry_after_s, reset_after_s]`. */
export class CellResult {
  constructor(
    /** true when the call was refused */
    readonly limited: boolean,
    /** max_burst + 1 */
    readonly limit: number,
    readonly remaining: number,
    /** whole seconds until the same call would be allowed; -1 when allowed
     * or when the quantity exceeds the limit */
    readonly retryAfterS: number,
    /** whole seconds until the bucket is full again */
    readonly resetAfterS: number,
  ) {}

  static fromReply(reply: Reply): CellResult {
    const [limited, limit, remaining, retry, reset] = array(reply, 5, "CL.THROTTLE").map((v) => int(v, "CL.THROTTLE"));
    return new CellResult(limited === 1, limit, remaining, retry, reset);
  }

  get allowed(): boolean {
    return !this.limited;
  }
}
