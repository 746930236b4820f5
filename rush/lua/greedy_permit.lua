-- A deliberately WRONG pacer with PERMIT's reply shape: every call is
-- granted at once ({time_to_wait_ms, valid_at_ms, expires_at_ms}), so
-- `--rule permit --verify --limit-interval-ms N` must fail it.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {0, now_ms, now_ms + 1000}
