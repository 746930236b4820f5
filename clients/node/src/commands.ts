/**
 * Every module command as data: the arguments to send, where its keys are
 * (for cluster routing and key prefixes), whether it only reads, whether the
 * server may hold it, and how to read its reply. Nothing here talks to
 * Redis. A new command is one builder here and its result type in results.ts.
 */

import { decimalArg, intArg, msArg, type Decimal } from "./args.js";
import { AllResult, CellResult, LimiterState, Permit, ThrottleResult, int, type Reply } from "./results.js";

export interface Command<T> {
  /** the command as sent, name first */
  readonly args: readonly string[];
  /** positions of the keys in `args`; the first routes the call in a cluster */
  readonly keys: readonly number[];
  /** true for commands that never write (they may run on replicas) */
  readonly readonly: boolean;
  /** true for WAIT / BLOCK calls, which the server may hold: they run on a dedicated connection */
  readonly held: boolean;
  parse(reply: Reply): T;
}

/** A token bucket's limit: `rps` tokens per second, capacity `max(1, ceil(rps × burst × window))`. */
export interface Limit {
  /** tokens per second; 0 denies every call, -1 allows every call */
  rps: Decimal;
  /** capacity factor (default 1) */
  burst?: Decimal;
  /** seconds (default 1) */
  window?: Decimal;
}

/** Settings stored in the key (THROTTLE.SET) that override every caller's limit while they live. */
export interface Knobs {
  rps?: Decimal;
  burst?: Decimal;
  window?: Decimal;
  /** seconds the knobs live (default: the module's knobs-ttl, 7 days) */
  ttl?: number;
}

/** A paced stream: slots at least `intervalMs` apart, at most `maxWaiting` permits waiting. */
export interface PermitSpec {
  /** minimum spacing between permits, ms (µs resolution: up to 3 decimal places) */
  intervalMs: Decimal;
  /** how many granted permits may wait for their slot at once */
  maxWaiting: number;
  /** how long a reserved permit stays usable after its slot, ms (default: 10% of the interval) */
  graceMs?: number;
}

/** redis-cell's limit: capacity `maxBurst + 1`, refilled at `countPerPeriod / period` per second. */
export interface CellLimit {
  maxBurst: number;
  countPerPeriod: number;
  /** seconds */
  period: number;
}

function command<T>(args: string[], parse: (r: Reply) => T, opts: { readonly?: boolean; held?: boolean; keys?: number[] } = {}): Command<T> {
  return { args, keys: opts.keys ?? [1], readonly: opts.readonly ?? false, held: opts.held ?? false, parse };
}

function limitArgs(limit: Limit | undefined): string[] {
  if (limit === undefined) return [];
  return [decimalArg(limit.rps, "rps"), decimalArg(limit.burst ?? 1, "burst"), decimalArg(limit.window ?? 1, "window")];
}

/** THROTTLE key [rps burst window] tokens [WAIT timeout_ms]; without `limit`, the key's knobs. */
export function throttle(key: string, limit: Limit | undefined, tokens: number | bigint = 1, waitMs?: number): Command<ThrottleResult> {
  const args = ["THROTTLE", key, ...limitArgs(limit), intArg(tokens, "tokens")];
  if (waitMs !== undefined) args.push("WAIT", msArg(waitMs, "timeoutMs"));
  return command(args, ThrottleResult.fromReply, { held: waitMs !== undefined });
}

/** THROTTLE.PEEK key [rps burst window] tokens: what THROTTLE would answer now; writes nothing. */
export function peek(key: string, limit: Limit | undefined, tokens: number | bigint = 1): Command<ThrottleResult> {
  return command(["THROTTLE.PEEK", key, ...limitArgs(limit), intArg(tokens, "tokens")], ThrottleResult.fromReply, { readonly: true });
}

/** THROTTLE.REFUND key tokens: the whole tokens now held, or null for a missing key. */
export function refund(key: string, tokens: number | bigint): Command<number | null> {
  return command(["THROTTLE.REFUND", key, intArg(tokens, "tokens")], (r) => (r === null ? null : int(r, "THROTTLE.REFUND")));
}

/** THROTTLE.SET key [RPS r] [BURST b] [WINDOW w] [TTL s]. */
export function setKnobs(key: string, knobs: Knobs): Command<void> {
  const args = ["THROTTLE.SET", key];
  if (knobs.rps !== undefined) args.push("RPS", decimalArg(knobs.rps, "rps"));
  if (knobs.burst !== undefined) args.push("BURST", decimalArg(knobs.burst, "burst"));
  if (knobs.window !== undefined) args.push("WINDOW", decimalArg(knobs.window, "window"));
  if (knobs.ttl !== undefined) args.push("TTL", intArg(knobs.ttl, "ttl"));
  return command(args, () => undefined);
}

/** THROTTLE.GET key: the state now, or null for a missing key. */
export function getState(key: string): Command<LimiterState | null> {
  return command(["THROTTLE.GET", key], LimiterState.fromReply, { readonly: true });
}

/** THROTTLE.RESET key: removes the knobs (keeps the tokens); true if there were knobs. */
export function resetKnobs(key: string): Command<boolean> {
  return command(["THROTTLE.RESET", key], (r) => int(r, "THROTTLE.RESET") === 1);
}

/** DEL key: forgets the limiter; true if the key existed. */
export function del(key: string): Command<boolean> {
  return command(["DEL", key], (r) => int(r, "DEL") === 1);
}

/** THROTTLE.ALL tokens key rps burst window [...]: all limits or none. */
export function all(limits: ReadonlyArray<readonly [key: string, limit: Limit]>, tokens: number | bigint = 1): Command<AllResult> {
  if (limits.length === 0) throw new RangeError("THROTTLE.ALL needs at least one limit");
  const args = ["THROTTLE.ALL", intArg(tokens, "tokens")];
  const keys: number[] = [];
  for (const [key, limit] of limits) {
    keys.push(args.length);
    args.push(key, ...limitArgs(limit));
  }
  return command(args, AllResult.fromReply, { keys });
}

/** PERMIT key interval_ms max_waiting [GRACE ms] [BLOCK timeout_ms]. */
export function permit(key: string, spec: PermitSpec, blockMs?: number): Command<Permit | null> {
  const args = ["PERMIT", key, decimalArg(spec.intervalMs, "intervalMs"), intArg(spec.maxWaiting, "maxWaiting")];
  if (spec.graceMs !== undefined) args.push("GRACE", msArg(spec.graceMs, "graceMs"));
  if (blockMs !== undefined) args.push("BLOCK", msArg(blockMs, "timeoutMs"));
  return command(args, Permit.fromReply, { held: blockMs !== undefined });
}

/** CL.THROTTLE key max_burst count_per_period period [quantity] (redis-cell's command). */
export function cell(key: string, limit: CellLimit, quantity: number | bigint = 1): Command<CellResult> {
  const args = [
    "CL.THROTTLE",
    key,
    intArg(limit.maxBurst, "maxBurst"),
    intArg(limit.countPerPeriod, "countPerPeriod"),
    intArg(limit.period, "period"),
    intArg(quantity, "quantity"),
  ];
  return command(args, CellResult.fromReply);
}
