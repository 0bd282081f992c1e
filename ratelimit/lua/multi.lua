-- hit_many, all or nothing: see ratelimit/multi.py and docs/rate-limiter.md (kept terse: this
-- text travels in the Sentinel hosts' 16 KB user data).
local n, mode, str = #KEYS, ARGV[1], true
-- "0s"/"1s" answer one flat string (clients >= 1.2.5); "0"/"1" the 1.1.0 list of integers, which
-- 1.1.0 clients still read while a rolling upgrade mixes releases.
if mode == '0s' then mode = '0' elseif mode == '1s' then mode = '1' else str = false end
if n == 0 or #ARGV ~= n + 1 or (mode ~= '0' and mode ~= '1') then
  return redis.error_reply('ERR ratelimit: hit_many wants a mode "0"|"1" and one spec per key')
end
-- Per limit its algorithm and the ARGV its body takes (ARGV[4], the mode, may become the context).
-- Every table here costs the server an allocation and its collection: kept to the few needed.
local fns, args, seen = {}, {}, {}
for i = 1, n do
  local l, a, b, c, d = string.match(ARGV[i + 1], '^(%a) (%d+) (%d+) (%d+) ?(%d*)$')
  local f = l == 'g' and gcra or l == 's' and sliding_log or l == 'f' and fixed_window
  if not f then
    return redis.error_reply('ERR ratelimit: bad limit spec ' .. ARGV[i + 1])
  end
  if seen[KEYS[i]] then
    return redis.error_reply('ERR ratelimit: key ' .. KEYS[i] .. ' appears twice; each limit needs its own key')
  end
  seen[KEYS[i]] = true
  fns[i], args[i] = f, {a, b, c, mode, d}
end
if n == 1 then
  -- One limit (the async client's hit): its own hit or peek is the whole decision.
  local r = fns[1](KEYS, args[1])
  if r.err then return r end
  if not str then return {r[1], r[1], r[2], r[3], r[4]} end
  return string.format('%d %d %d %d %d', r[1], r[1], r[2], r[3], r[4])
end
-- Mode "0": every limit is decided as a hit on one clock (one TIME), reading its key once; the
-- context `ctx` (in place of the mode) carries the clock and collects the limits' writes
-- (commands), which run only when every limit admits, else the admitting limits report their
-- peek view.
local ctx = mode
if mode == '0' then
  local t = redis.call('TIME')
  ctx = {now = tonumber(t[1]) * 1000000 + tonumber(t[2])}
end
-- One KEYS table for every body: each reads its key before it returns.
local out, peeks, key, all = {}, {}, {}, 1
for i = 1, n do
  local a = args[i]
  a[4], key[1] = ctx, KEYS[i]
  local r, p = fns[i](key, a)
  if r.err then return r end
  out[i], peeks[i] = r, p
  if r[1] ~= 1 then all = 0 end
end
if mode == '0' then
  if all == 1 then
    for i = 1, #ctx do redis.call(unpack(ctx[i])) end
  else
    for i = 1, n do
      if out[i][1] == 1 then
        local p = peeks[i]
        if type(p) == 'function' then p = p() end
        out[i] = p
      end
    end
  end
end
if not str then
  local flat = {all}
  for i = 1, n do
    local r = out[i]
    flat[4 * i - 2], flat[4 * i - 1], flat[4 * i], flat[4 * i + 1] = r[1], r[2], r[3], r[4]
  end
  return flat
end
-- One flat string "all a1 r1 ra1 rs1 a2 ...": one bulk reply parses far cheaper than 1 + 4n
-- nested integers. Formatted per limit (unpack() of ~8000 values, n >= 2000, overflows Lua's C
-- stack); an admitting limit's 1 and 0 are written as text: each number formatted is a sprintf.
local flat, fmt = {all == 1 and '1' or '0'}, string.format
for i = 1, n do
  local r = out[i]
  if r[1] == 1 and r[3] == 0 then
    flat[i + 1] = fmt('1 %d 0 %d', r[2], r[4])
  else
    flat[i + 1] = fmt('%d %d %d %d', r[1], r[2], r[3], r[4])
  end
end
return table.concat(flat, ' ')
