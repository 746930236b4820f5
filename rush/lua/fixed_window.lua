-- A deliberately WRONG limiter for rush's tests and docs: a fixed-window
-- counter aligned to the wall clock. KEYS[1] = counter name, ARGV[1] = window
-- in ms. Returns the count in the current window; classify with
-- `--rule int<=LIMIT`. It lets up to 2 x LIMIT through around a window edge.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = math.floor(now_ms / tonumber(ARGV[1]))
local k = KEYS[1] .. ':' .. w
local n = redis.call('INCR', k)
if n == 1 then redis.call('PEXPIRE', k, 2 * tonumber(ARGV[1])) end
return n
