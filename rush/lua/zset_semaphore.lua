#!lua name=rushsem
-- A sorted-set semaphore, the kind many run today, as a Redis 7 function
-- library for rush's lease scenario (`--rule lease`), and two deliberately
-- WRONG variants that rush must fail. Load it with
--   redis-cli FUNCTION LOAD REPLACE "$(cat rush/lua/zset_semaphore.lua)"
--
--   FCALL zsem_acquire 1 key limit ttl_ms     -> {id, expires_at_ms, in_use, limit} or nil
--   FCALL zsem_release 1 key id               -> 1 (released) or 0 (not held)
--   FCALL zsem_renew 1 key id ttl_ms          -> new expires_at_ms, or nil (lost)
-- WRONG:
--   FCALL zsem_renew_forgetful 1 key id ttl_ms  says it renewed, changes nothing
--   FCALL zsem_acquire_short 1 key limit ttl_ms keeps the lease half the ttl it answers
--
-- Members are lease ids scored by their expiry (server ms): a lease is live
-- while its score is above the server's time. Ids come from a counter in a
-- second key, KEYS[1] .. ':ids' (fine on one server, not on a cluster).
-- The cost of a lease is always 1.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drops the expired leases; returns the time now.
local function trim(key)
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return now
end

-- The key lasts as long as its last lease.
local function expire_with_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', key, last[2])
  end
end

local function grant(keys, args, kept_ms)
  local key, limit, ttl = keys[1], tonumber(args[1]), tonumber(args[2])
  local now = trim(key)
  local n = redis.call('ZCARD', key)
  if n >= limit then
    return false
  end
  local id = redis.call('INCR', key .. ':ids')
  redis.call('ZADD', key, now + kept_ms(ttl), id)
  expire_with_last(key)
  return {id, now + ttl, n + 1, limit}
end

local function acquire(keys, args)
  return grant(keys, args, function(ttl) return ttl end)
end

-- WRONG: answers an expiry `ttl` away but drops the lease after half of it,
-- so a holder that dies frees its place too early.
local function acquire_short(keys, args)
  return grant(keys, args, function(ttl) return math.floor(ttl / 2) end)
end

local function release(keys, args)
  trim(keys[1])
  return redis.call('ZREM', keys[1], args[1])
end

local function renew(keys, args)
  local key, id, ttl = keys[1], args[1], tonumber(args[2])
  local now = trim(key)
  if not redis.call('ZSCORE', key, id) then
    return false
  end
  redis.call('ZADD', key, 'XX', now + ttl, id)
  expire_with_last(key)
  return now + ttl
end

-- WRONG: checks the lease is there and says it lasts `ttl` more, but never
-- moves its expiry, so a long hold loses its place while it still holds.
local function renew_forgetful(keys, args)
  local key, id, ttl = keys[1], args[1], tonumber(args[2])
  local now = trim(key)
  if not redis.call('ZSCORE', key, id) then
    return false
  end
  return now + ttl
end

redis.register_function('zsem_acquire', acquire)
redis.register_function('zsem_acquire_short', acquire_short)
redis.register_function('zsem_release', release)
redis.register_function('zsem_renew', renew)
redis.register_function('zsem_renew_forgetful', renew_forgetful)
