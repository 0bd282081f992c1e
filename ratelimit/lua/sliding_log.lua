-- Sliding log: a sorted set per client with one member per admitted unit, scored by its
-- server time in integer microseconds. Exact: at most `limit` units in any window of
-- window_ms. Memory grows with the limit (one member per unit in the window), so it is
-- meant for small, security-sensitive tiers.
--
-- KEYS[1]  the client's key, hash-tagged: <prefix>:{<tier>:<client>}:s
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

-- A log longer than this would make one call O(limit) in time and memory: use GCRA instead.
local limit, e1 = int_arg(1, 'limit', 1, 10000)
if e1 then return redis.error_reply(e1) end
local window_ms, e2 = int_arg(2, 'window_ms', 1, 31622400000)
if e2 then return redis.error_reply(e2) end
local cost, e3 = int_arg(3, 'cost', 1, 10000)
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
local window_us = window_ms * 1000
local now = ctx and ctx.now  -- multi.lua's one TIME for the whole request
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An entry scored s counts while now < s + window; trimming in peek mode too would be a
-- write, so peek (and multi.lua, until every limit admits) counts only the live entries.
local floor_score = string.format('%d', now - window_us)
local look = mode == '1' or ctx ~= nil
local count
if look then
  count = redis.call('ZCOUNT', key, '(' .. floor_score, '+inf')
else
  redis.call('ZREMRANGEBYSCORE', key, '-inf', floor_score)
  count = redis.call('ZCARD', key)
end

local function reset_after()
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if newest[2] == nil then return 0 end
  local r = tonumber(newest[2]) + window_us - now
  if r < 0 then return 0 end
  return r
end

if count + cost > limit then
  -- The request fits once the (count + cost - limit) oldest live entries have left.
  local stale = 0
  if look then
    stale = redis.call('ZCOUNT', key, '-inf', floor_score)
  end
  local idx = stale + count + cost - limit - 1
  local e = redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')
  return {0, limit - count, tonumber(e[2]) + window_us - now, reset_after()}
end

if mode == '1' then
  return {1, limit - count, 0, reset_after()}
end

-- Members only need to be unique among live entries: within one microsecond the count
-- grows with every admission, so (now, count + i) never repeats. Below 1000 the pair is
-- packed into one 19-digit integer (now * 1000 + n), which a small sorted set (listpack)
-- stores in 9 bytes instead of a 20-byte string.
local member_fmt = '%d.%d'
if limit < 1000 then member_fmt = '%d%03d' end
local score = string.format('%d', now)
local expire_at = string.format('%d', math.ceil((now + window_us) / 1000))
if ctx then
  -- multi.lua: the writes join the request's (commands: trim, ZADDs of at most 1000 members,
  -- expiry; run only if every limit admits); the hit and the peek view come back.
  ctx[#ctx + 1] = {'ZREMRANGEBYSCORE', key, '-inf', floor_score}
  local c = {'ZADD', key}
  ctx[#ctx + 1] = c
  for i = 1, cost do
    if #c >= 2002 then c = {'ZADD', key}; ctx[#ctx + 1] = c end
    c[#c + 1], c[#c + 2] = score, string.format(member_fmt, now, count + i)
  end
  ctx[#ctx + 1] = {'PEXPIREAT', key, expire_at}
  return {1, limit - count - cost, 0, window_us}, function() return {1, limit - count, 0, reset_after()} end
end
-- ZADD in chunks: unpack() of more than ~8000 values overflows Lua's C stack.
for first = 1, cost, 1000 do
  local args = {}
  for i = first, math.min(cost, first + 999) do
    args[#args + 1] = score
    args[#args + 1] = string.format(member_fmt, now, count + i)
  end
  redis.call('ZADD', key, unpack(args))
end
-- The key dies when its newest entry leaves the window (rounded up to the ms clock).
redis.call('PEXPIREAT', key, expire_at)
return {1, limit - count - cost, 0, window_us}
