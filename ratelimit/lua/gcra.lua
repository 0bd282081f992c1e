-- GCRA (generic cell rate algorithm): one string key per client holding the theoretical
-- arrival time (TAT) in integer microseconds of the server clock.
--
-- KEYS[1]  the client's key, hash-tagged: <prefix>:{<tier>:<client>}:g
-- ARGV[1]  limit      integer >= 1: units per window
-- ARGV[2]  window_ms  integer >= 1
-- ARGV[3]  cost       integer, 1 <= cost <= burst
-- ARGV[4]  mode       "0" consume, "1" peek (never writes); or, only from multi.lua (no FCALL can
--                     send one), a table: the request's shared clock (`now`) and list of writes;
--                     decide as a hit, append the write there instead of running it, and return
--                     the peek view beside the reply
-- ARGV[5]  burst      integer >= 1, optional (default: limit)
-- returns  {allowed 0|1, remaining, retry_after_us, reset_after_us} (integer replies)
--
-- Time comes from TIME so that every app server shares one clock; Redis >= 5 replicates the
-- script's effects (the SET with its absolute expiry), not the script, so TIME is safe.

local floor, ceil, fmt = math.floor, math.ceil, string.format

local function int_arg(i, name, min, max)
  local v = tonumber(ARGV[i])
  if v == nil or v ~= floor(v) or v < min or v > max then
    return nil, fmt('ERR ratelimit: %s must be an integer in [%d, %d], got %s',
      name, min, max, tostring(ARGV[i]))
  end
  return v
end

-- Bounds keep every intermediate value below 2^53, where Lua doubles are exact integers. One test
-- for the valid arguments of every call; int_arg only names what is wrong.
local limit, window_ms, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if not (limit and window_ms and cost and limit == floor(limit) and limit >= 1 and limit <= 1000000000
    and window_ms == floor(window_ms) and window_ms >= 1 and window_ms <= 31622400000
    and cost == floor(cost) and cost >= 1 and cost <= 1000000000) then
  local e1, e2, e3
  limit, e1 = int_arg(1, 'limit', 1, 1000000000)
  if e1 then return redis.error_reply(e1) end
  window_ms, e2 = int_arg(2, 'window_ms', 1, 31622400000)
  if e2 then return redis.error_reply(e2) end
  cost, e3 = int_arg(3, 'cost', 1, 1000000000)
  if e3 then return redis.error_reply(e3) end
end
local mode, ctx = ARGV[4], nil
if type(mode) == 'table' then ctx, mode = mode, '0' end
if mode ~= '0' and mode ~= '1' then
  return redis.error_reply('ERR ratelimit: mode must be "0" (hit) or "1" (peek)')
end
local burst = limit
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  local b, e5 = int_arg(5, 'burst', 1, 1000000000)
  if e5 then return redis.error_reply(e5) end
  burst = b
end
if cost > burst then
  return redis.error_reply(fmt(
    'ERR ratelimit: cost %d exceeds burst %d and could never be allowed', cost, burst))
end

-- Rounding the emission interval up keeps the long-run rate at or below limit/window.
local interval = ceil(window_ms * 1000 / limit)
local tolerance = burst * interval
if tolerance > 1125899906842624 then  -- 2^50
  return redis.error_reply('ERR ratelimit: burst * window / limit too large')
end

local now = ctx and ctx.now  -- multi.lua's one TIME for the whole request
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end

local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance

if allow_at > now then
  -- Units that would still fit now (a smaller request may pass where this one cannot).
  local remaining = floor((tolerance - (tat - now)) / interval)
  return {0, remaining, allow_at - now, tat - now}
end

if mode == '1' then
  return {1, floor((tolerance - (tat - now)) / interval), 0, tat - now}
end

-- The key lives exactly until the TAT drains (rounded up to Redis' millisecond expiry
-- clock); an expired key and a drained TAT mean the same thing.
local hit = {1, floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
local tat_ms = fmt('%d', ceil(new_tat / 1000))
if ctx then
  -- multi.lua: the write joins the request's (run only if every limit admits); hit and peek view back.
  ctx[#ctx + 1] = {'SET', KEYS[1], fmt('%d', new_tat), 'PXAT', tat_ms}
  return hit, {1, floor((tolerance - (tat - now)) / interval), 0, tat - now}
end
redis.call('SET', KEYS[1], fmt('%d', new_tat), 'PXAT', tat_ms)
return hit
