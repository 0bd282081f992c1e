-- hit_many, all or nothing: see ratelimit/multi.py and docs/rate-limiter.md (kept terse: this
-- text travels in the Sentinel hosts' 16 KB user data).
local fns = {g = gcra, s = sliding_log, f = fixed_window}
local n, mode = #KEYS, ARGV[1]
-- "0s"/"1s" answer one flat string (clients >= 1.2.5); "0"/"1" the 1.1.0 list of integers, which
-- 1.1.0 clients still read while a rolling upgrade mixes releases.
local str = mode == '0s' or mode == '1s'
if str then mode = string.sub(mode, 1, 1) end
if n == 0 or #ARGV ~= n + 1 or (mode ~= '0' and mode ~= '1') then
  return redis.error_reply('ERR ratelimit: hit_many wants a mode "0"|"1" and one spec per key')
end
local specs, seen = {}, {}
for i = 1, n do
  local l, a, b, c, d = string.match(ARGV[i + 1], '^(%a) (%d+) (%d+) (%d+) ?(%d*)$')
  if fns[l or ''] == nil then
    return redis.error_reply('ERR ratelimit: bad limit spec ' .. ARGV[i + 1])
  end
  if seen[KEYS[i]] then
    return redis.error_reply('ERR ratelimit: key ' .. KEYS[i] .. ' appears twice; each limit needs its own key')
  end
  seen[KEYS[i]] = true
  specs[i] = {fns[l], a, b, c, d}
end
if n == 1 then
  -- One limit (the async client's hit): its own hit or peek is the whole decision.
  local s = specs[1]
  local r = s[1]({KEYS[1]}, {s[2], s[3], s[4], mode, s[5]})
  if r.err then return r end
  if not str then return {r[1], r[1], r[2], r[3], r[4]} end
  return string.format('%d %d %d %d %d', r[1], r[1], r[2], r[3], r[4])
end
-- Mode "0": every limit is decided as a hit on one clock (one TIME), reading its key once and
-- handing back its writes (commands) and its peek view (the table `ctx` in place of the mode); the writes
-- run only when every limit admits, else the admitting limits report their peek view.
local ctx = '1'
if mode == '0' then
  local t = redis.call('TIME')
  ctx = {now = tonumber(t[1]) * 1000000 + tonumber(t[2])}
end
local out, peeks, writes, all = {}, {}, {}, 1
for i = 1, n do
  local s = specs[i]
  local r, p, w = s[1]({KEYS[i]}, {s[2], s[3], s[4], ctx, s[5]})
  if r.err then return r end
  out[i], peeks[i], writes[i] = r, p, w
  if r[1] ~= 1 then all = 0 end
end
if mode == '0' then
  for i = 1, n do
    if all == 1 then
      for _, c in ipairs(writes[i]) do redis.call(unpack(c)) end
    elseif out[i][1] == 1 then
      local p = peeks[i]
      if type(p) == 'function' then p = p() end
      out[i] = p
    end
  end
end
-- One flat string "all a1 r1 ra1 rs1 a2 ...": one bulk reply parses far cheaper than 1 + 4n
-- nested integers. Formatted per limit: unpack() of ~8000 values (n >= 2000) overflows Lua's C stack.
local flat = {all}
for i = 1, n do
  local r = out[i]
  if str then
    flat[i + 1] = string.format('%d %d %d %d', r[1], r[2], r[3], r[4])
  else
    flat[4 * i - 2], flat[4 * i - 1], flat[4 * i], flat[4 * i + 1] = r[1], r[2], r[3], r[4]
  end
end
if not str then return flat end
return table.concat(flat, ' ')
