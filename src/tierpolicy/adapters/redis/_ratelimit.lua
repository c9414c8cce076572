-- tierpolicy rate-limit script: check every window of every counter, write all or none.
--
-- A transcription of tierpolicy.engine._ratelimit_store.apply_hits (GCRA and the
-- sliding-window counter) that reads the clock with TIME, so every replica shares the
-- server's clock. Times are integer microseconds, exact in Lua's doubles below 2^53.
--
-- KEYS: the counters (one cluster slot: they share a hash tag).
-- ARGV[1]: "hit" or "refund". ARGV[2]: "" (read TIME) or the time in microseconds
--   from an injected test clock (keys then live at least a minute of real time).
--   ARGV[2 + i]: the spec of KEYS[i], one string (fewer arguments are cheaper for
--   clients to encode): "<algorithm> <shadow> <cost> <n>" then n pairs, algorithm "g"
--   (GCRA: emission interval, tolerance) or "s" (sliding window: period, quota),
--   shadow "1" or "0".
-- Stored value: "<algorithm>,<int>,<int>,..." (GCRA: one TAT per window; sliding:
--   start, previous, current per window), written with its TTL in one SET ... PX.
-- Returns one string (one reply element is cheaper for clients to parse):
--   "<now> <1 if written (or refunded) else 0>|<stored value of KEYS[1] before>|...",
--   "" for a key that held nothing; the client recomputes the results from these.

local now
local injected = ARGV[2] ~= ''
if not injected then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])  -- an injected clock, for tests and simulations only
end
local mode = ARGV[1]
local hits = {}
local before = {}

local function encode(algo, values)
  local parts = {algo}
  for i = 1, #values do parts[i + 1] = string.format('%.0f', values[i]) end
  return table.concat(parts, ',')
end

for i = 1, #KEYS do
  local spec = {}
  for item in string.gmatch(ARGV[2 + i], '%S+') do spec[#spec + 1] = item end
  local h = {algo = spec[1], shadow = spec[2] == '1', cost = tonumber(spec[3]), n = tonumber(spec[4]), a = {}, b = {}}
  for w = 1, h.n do
    h.a[w] = tonumber(spec[3 + 2 * w])
    h.b[w] = tonumber(spec[4 + 2 * w])
  end
  local raw = redis.call('GET', KEYS[i])
  before[i] = raw or ''
  local values = {}
  if raw and string.sub(raw, 1, 2) == h.algo .. ',' then
    for v in string.gmatch(string.sub(raw, 3), '[^,]+') do values[#values + 1] = tonumber(v) end
  end
  local size = h.n
  if h.algo == 's' then size = 3 * h.n end
  if #values == size then h.values = values end
  hits[i] = h
end

-- One sliding window moved to the period that contains now (engine: _sliding.roll).
local function roll(h, w, period)
  if h.values == nil then return now - now % period, 0, 0 end
  local start, previous, current = h.values[3 * w - 2], h.values[3 * w - 1], h.values[3 * w]
  if now < start + period then return start, previous, current end
  local passed = math.floor((now - start) / period)
  if passed == 1 then return start + period, current, 0 end
  return start + passed * period, 0, 0
end

-- Returns: allowed, new values, expiry (engine: _gcra.gcra and _sliding.sliding_window).
local function check(h)
  local ok, new, expires = true, {}, now
  for w = 1, h.n do
    if h.algo == 'g' then
      local tat = h.values and h.values[w]
      local base = now
      if tat ~= nil and tat >= now then base = tat end
      local new_tat = base + h.a[w] * h.cost
      if now < new_tat - h.b[w] then ok = false end
      new[w] = new_tat
      if new_tat > expires then expires = new_tat end
    else
      local period, quota = h.a[w], h.b[w]
      local start, previous, current = roll(h, w, period)
      -- The same doubles, in the same order, as the engine's fits_in.
      if previous * ((period - (now - start)) / period) + current + h.cost > quota then ok = false end
      new[3 * w - 2], new[3 * w - 1], new[3 * w] = start, previous, current + h.cost
      if start + 2 * period > expires then expires = start + 2 * period end
    end
  end
  return ok, new, expires
end

-- Gives cost back (engine: _gcra.gcra_refund and _sliding.sliding_refund).
local function refund(h)
  local new, expires = {}, now
  for w = 1, h.n do
    if h.algo == 'g' then
      local tat = h.values[w]
      if tat > now then tat = math.max(now, tat - h.a[w] * h.cost) else tat = now end
      new[w] = tat
      if tat > expires then expires = tat end
    else
      local period = h.a[w]
      local start, previous, current = roll(h, w, period)
      new[3 * w - 2], new[3 * w - 1], new[3 * w] = start, previous, math.max(0, current - h.cost)
      if start + 2 * period > expires then expires = start + 2 * period end
    end
  end
  return new, expires
end

local function store(key, algo, values, expires)
  if expires <= now then
    redis.call('DEL', key)
  else
    local ttl = math.ceil((expires - now) / 1000)
    -- An injected clock does not move with real time, so a TTL counted on it could drop
    -- a counter while the test's clock still stands at the same instant. Keep such keys
    -- a minute at least: a counter whose windows have refilled reads as absent anyway.
    if injected and ttl < 60000 then ttl = 60000 end
    redis.call('SET', key, encode(algo, values), 'PX', ttl)
  end
end

local written = 1
if mode == 'refund' then
  for i = 1, #KEYS do
    local h = hits[i]
    if h.values ~= nil and h.cost > 0 then
      local new, expires = refund(h)
      store(KEYS[i], h.algo, new, expires)
    end
  end
else
  local checked = {}
  for i = 1, #KEYS do
    local ok, new, expires = check(hits[i])
    checked[i] = {ok, new, expires}
    if not ok and not hits[i].shadow then written = 0 end
  end
  if written == 1 then
    for i = 1, #KEYS do
      local h, c = hits[i], checked[i]
      if c[1] and h.cost > 0 then store(KEYS[i], h.algo, c[2], c[3]) end
    end
  end
end

local reply = {string.format('%.0f', now) .. ' ' .. written}
for i = 1, #KEYS do reply[i + 1] = before[i] end
return table.concat(reply, '|')
