-- hit_many, all or nothing: see ratelimit/multi.py and docs/rate-limiter.md (kept terse: this
-- text travels in the Sentinel hosts' 16 KB user data).
local fns = {g = gcra, s = sliding_log, f = fixed_window}
local n, mode = #KEYS, ARGV[1]
if n == 0 or #ARGV ~= n + 1 or (mode ~= '0' and mode ~= '1') then
  return redis.error_reply('ERR ratelimit: hit_many wants a mode "0"|"1" and one spec per key')
end
local specs = {}
for i = 1, n do
  local l, a, b, c, d = string.match(ARGV[i + 1], '^(%a) (%d+) (%d+) (%d+) ?(%d*)$')
  if fns[l or ''] == nil then
    return redis.error_reply('ERR ratelimit: bad limit spec ' .. ARGV[i + 1])
  end
  specs[i] = {fns[l], a, b, c, d}
end
local function decide(i, m)
  local s = specs[i]
  return s[1]({KEYS[i]}, {s[2], s[3], s[4], m, s[5]})
end
local out, all = {}, 1
for i = 1, n do
  -- Peek all but the last; the last is asked for real only if all others admit.
  local r = decide(i, (i == n and all == 1) and mode or '1')
  if r.err then return r end
  out[i] = r
  if r[1] ~= 1 then all = 0 end
end
if all == 1 and mode == '0' then
  for i = 1, n - 1 do
    local r = decide(i, '0')
    if r.err then return r end
    if r[1] ~= 1 then return redis.error_reply('ERR ratelimit: limit ' .. i .. ' changed between peek and hit') end
    out[i] = r
  end
end
local flat = {all}
for i = 1, n do
  for j = 1, 4 do flat[#flat + 1] = out[i][j] end
end
return flat
