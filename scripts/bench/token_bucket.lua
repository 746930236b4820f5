-- A LimitLion-style token bucket in Lua: what people run today through
-- EVALSHA, written to do what THROTTLE does, for scripts/bench.sh.
--
--   EVALSHA <sha> 1 <key> <rps> <burst> <window_s> [tokens]
--   → {allowed, remaining, retry_after_ms, reset_after_ms, limit}
--
-- The bucket is a hash {tokens, ts} (tokens as a float, ts in µs from the
-- server's TIME), read with HMGET, written with HSET and expired with
-- PEXPIRE when it would be full again; capacity = max(1, ceil(rps × burst
-- × window)); tokens accrue continuously; a denied call writes nothing;
-- rps 0 denies and rps -1 allows everything, as THROTTLE. Differences that
-- favour the script: float arithmetic instead of exact integers, no knobs
-- hash to read (LimitLion reads a second key), and only light argument
-- checks. Redis 7 replicates the script's effects (HSET/PEXPIRE), so TIME
-- is allowed.
local key = KEYS[1]
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cost = tonumber(ARGV[4] or "1")
if rps == nil or burst == nil or window == nil or cost == nil then
  return redis.error_reply("ERR rps, burst, window and tokens must be numbers")
end
if rps == 0 then
  return {0, 0, math.ceil(window * 1000), 0, 0}
end
if rps == -1 then
  return {1, -1, 0, 0, -1}
end
local limit = math.max(1, math.ceil(rps * burst * window))

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call("HMGET", key, "tokens", "ts")
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = limit
else
  local elapsed = now - ts
  if elapsed < 0 then
    elapsed = 0 -- the clock went back: accrue nothing
  end
  tokens = math.min(limit, tokens + elapsed * rps / 1000000)
end

local function ms_to_refill(missing)
  return math.ceil(missing * 1000 / rps)
end

if cost > limit then
  return {0, math.floor(tokens), -1, ms_to_refill(limit - tokens), limit}
end
if tokens < cost then
  return {0, math.floor(tokens), ms_to_refill(cost - tokens), ms_to_refill(limit - tokens), limit}
end
tokens = tokens - cost
local reset = ms_to_refill(limit - tokens)
if cost > 0 then
  -- Numbers passed to redis.call become "%.14g" strings: format them so
  -- the µs timestamp keeps all its digits.
  redis.call("HSET", key, "tokens", string.format("%.17g", tokens), "ts", string.format("%.0f", now))
  redis.call("PEXPIRE", key, math.max(1, reset))
end
return {1, math.floor(tokens), 0, reset, limit}
