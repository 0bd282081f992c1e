-- Fixed window: one integer counter per client, created with a TTL of one window by the
-- first admitted request. The window is the key's lifetime, so its clock is Redis' own
-- expiry clock (no TIME needed). Cheapest algorithm; a client can get 2*limit - 1 units
-- through within one window length across a window boundary.
--
-- KEYS[1]  the client's key, hash-tagged: <prefix>:{<tier>:<client>}:f
-- ARGV[1]  limit      integer >= 1
-- ARGV[2]  window_ms  integer >= 1
-- ARGV[3]  cost       integer, 1 <= cost <= limit
-- ARGV[4]  mode       "0" consume, "1" peek (never writes); or a table from multi.lua (see gcra.lua)
-- returns  {allowed 0|1, remaining, retry_after_us, reset_after_us} (integer replies)

local function int_arg(i, name, min, max)
  local v = tonumber(ARGV[i])
  if v == nil or v ~= math.floor(v) or v < min or v > max then
    return nil, string.format('ERR ratelimit: %s must be an integer in [%d, %d], got %s',
      name, min, max, tostring(ARGV[i]))
  end
  return v
end

local limit, e1 = int_arg(1, 'limit', 1, 1000000000)
if e1 then return redis.error_reply(e1) end
local window_ms, e2 = int_arg(2, 'window_ms', 1, 31622400000)
if e2 then return redis.error_reply(e2) end
local cost, e3 = int_arg(3, 'cost', 1, 1000000000)
if e3 then return redis.error_reply(e3) end
local mode, ctx = ARGV[4], nil
if type(mode) == 'table' then ctx, mode = mode, '0' end
if mode ~= '0' and mode ~= '1' then
  return redis.error_reply('ERR ratelimit: mode must be "0" (hit) or "1" (peek)')
end
if cost > limit then
  return redis.error_reply(string.format(
    'ERR ratelimit: cost %d exceeds limit %d and could never be allowed', cost, limit))
end

local key = KEYS[1]
local used = tonumber(redis.call('GET', key) or '0')
local pttl = redis.call('PTTL', key)
if pttl == -1 then
  -- Someone wrote this key without a TTL: never let a counter become immortal.
  if mode == '0' then redis.call('PEXPIRE', key, window_ms) end
  pttl = window_ms
end
if pttl < 0 then pttl = 0 end

if used + cost > limit then
  local remaining = limit - used
  if remaining < 0 then remaining = 0 end
  return {0, remaining, pttl * 1000, pttl * 1000}
end

if mode == '1' then
  return {1, limit - used, 0, pttl * 1000}
end

if ctx then
  -- The script runs alone, so the INCRBY handed over makes exactly used + cost (a new key when used is 0).
  ctx[#ctx + 1] = {'INCRBY', key, cost}
  if used == 0 then ctx[#ctx + 1] = {'PEXPIRE', key, window_ms} end
  return {1, limit - used - cost, 0, (used == 0 and window_ms or pttl) * 1000}, {1, limit - used, 0, pttl * 1000}
end
local n = redis.call('INCRBY', key, cost)
if n == cost then
  -- Created just now: the TTL is set once, on creation, which is what makes it a window.
  redis.call('PEXPIRE', key, window_ms)
  pttl = window_ms
end
return {1, limit - n, 0, pttl * 1000}
