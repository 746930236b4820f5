/**
 * Node.js client for the redis-throttle Redis module.
 *
 * - `Limiter`: token buckets (THROTTLE, WAIT, PEEK, REFUND, knobs).
 * - `Pacer`: paced permits (PERMIT, BLOCK), `slot(fn)` runs fn in its slot.
 * - `RedisThrottle`: every command on one client (`run(commands.x(...))`),
 *   THROTTLE.ALL (`allowAll`) and CL.THROTTLE (`cell`).
 * - Typed results; `ThrottleResult.headers()` gives RateLimit headers.
 * - Stores for express-rate-limit (`redis-throttle/express`) and
 *   @fastify/rate-limit (`redis-throttle/fastify`).
 */

export * as commands from "./commands.js";
export type { CellLimit, Command, Knobs, Limit, PermitSpec } from "./commands.js";
export type { Decimal } from "./args.js";
export { Limiter, type WaitOptions } from "./limiter.js";
export { Pacer, PermitRefused, type BlockOptions } from "./pacer.js";
export { AllResult, CellResult, LimiterState, NEVER_MS, Permit, ThrottleResult } from "./results.js";
export { RedisThrottle } from "./throttle.js";
export {
  ThrottleError,
  type Client,
  type IORedisLike,
  type NodeRedisClientLike,
  type NodeRedisClusterLike,
  type SendCommandFunctions,
  type TransportOptions,
} from "./transport.js";
export { windowBucket, type WindowBucket } from "./window.js";
