-- Apply a delta to an existing session, touch it when due, optionally return all its fields.
-- KEYS[1]: the session key
-- ARGV[1]: now (Unix ms); ARGV[2]: the configured idle timeout (ms), which the session's own
-- (__idle) replaces; ARGV[3]: touch interval (ms);
-- ARGV[4]: '1' to return all fields
-- ARGV[5], ARGV[6]: most user fields and most bytes of user names and values the step may
-- leave (user fields are those not starting with '__')
-- ARGV[7..]: the delta's writes, each 'S' name value | 'D' name (one per name; a take is a
-- 'D', whose value the caller reads from the fields answered), then its increments, each 'I'
-- name by
--
-- A session is alive while now is before its deadline (__deadline) and before its last touch
-- (__touched) plus the idle timeout. A step that finds it alive touches it only when the touch
-- interval has passed since the last touch: __touched becomes now and the TTL slides to the
-- idle timeout, cut at the deadline. Otherwise nothing but the delta is written, so a read
-- writes nothing at all.
--
-- The reply holds only what the caller asked for:
-- * false: the session is missing or over. Nothing is written; a missing session is never
--   created.
-- * without fields asked: the increment's new value as an integer when the delta has exactly
--   one; 1 when it has none; otherwise one JSON text [counters, 0].
-- * with fields asked: one JSON text, the flat field list BEFORE the delta (with __touched as
--   it is after the step), ["name", "value", ...], when the delta has no increment; otherwise
--   [counters, fields]. Counters are the new value of each increment, in order, as decimal
--   strings ({} when there is none: cjson's empty table), because cjson writes numbers with 14
--   significant digits. The caller applies the delta to the fields with these counters
--   (`Delta::replay`), so the delta's meaning is stated once, in Rust. One string is cheaper for
--   Redis to return, and for the client to parse, than a table of 2n strings.
-- Errors, after which the session is exactly as it was:
-- * 'CORRUPT ...': the key holds a hash without a valid deadline (not a session of ours, or a
--   damaged one). A key of another type fails with WRONGTYPE.
-- * 'NOTINT ...', 'RANGE ...': an increment meets a value that is not a counter, or would leave
--   +-(2^53 - 1); 'TOOLARGE ...': the step would take the session past a bound (and past what
--   it held before). The rules are `Delta::apply`'s.
-- The code is inline, without local functions on the fast paths, because a closure is created
-- anew on every call.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local touch = tonumber(ARGV[3])
local load = ARGV[4] == '1'
local MAX = 9007199254740991
local max_fields = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
-- The fast path's shape: removals (a flash message taken), then one increment of another field.
local first = 7
while ARGV[first] == 'D' do first = first + 2 end
local lone_incr = #ARGV == first + 2 and ARGV[first] == 'I'
local incr_name = ARGV[first + 1]
for j = 8, first - 1, 2 do
  if ARGV[j] == incr_name then lone_incr = false end
end

-- Read the deadline and the last touch, from the full hash when it is wanted anyway (one
-- command, not two), and whether the counter of a lone increment exists. A key of another type
-- makes the read fail with WRONGTYPE, which is passed on (the caller reports corruption) like a
-- missing or bad deadline below.
local fields = 0
local text, touched_text, touched_at, idle_text
-- The first removal's name (a flash message taken on every page): a load tells whether it is
-- there, and the fast path skips its HDEL when it is not.
local removed = ARGV[7] == 'D' and ARGV[8]
local removed_present = not load
local has_counter
local unreadable
if load then
  fields = redis.pcall('HGETALL', key)
  if fields.err then
    unreadable = fields
  elseif #fields == 0 then
    return false
  else
    for i = 1, #fields, 2 do
      local name = fields[i]
      if name == '__deadline' then
        text = fields[i + 1]
      elseif name == '__touched' then
        touched_text = fields[i + 1]
        touched_at = i + 1
      elseif name == '__idle' then
        idle_text = fields[i + 1]
      elseif name == removed then
        removed_present = true
      elseif name == incr_name then
        has_counter = true
      end
    end
  end
else
  local read
  if lone_incr then
    read = redis.pcall('HMGET', key, '__deadline', '__touched', '__idle', incr_name)
  else
    read = redis.pcall('HMGET', key, '__deadline', '__touched', '__idle')
  end
  if read.err then
    unreadable = read
  else
    text, touched_text, idle_text, has_counter = read[1], read[2], read[3], read[4]
    if not text and redis.call('EXISTS', key) == 0 then
      return false
    end
  end
end
-- Times are read exactly as Rust's `parse_millis` reads them: a canonical decimal integer
-- (digits only, no leading zero) of at most 2^53 - 1. tonumber alone would also take ' 1',
-- '1e12', '0x10', '1.5' or 'nan'. A hash without a valid deadline is not a session of ours (or a
-- damaged one); a bad last touch counts as none, and is replaced by this step's.
local deadline
if not unreadable and text and #text <= 16 and (text == '0' or string.match(text, '^[1-9]%d*$')) then
  deadline = tonumber(text)
  if deadline > MAX then deadline = nil end
end
if not deadline then
  -- An unreadable record is left as it is, for whoever investigates, but nothing planted
  -- outlives the idle timeout: it gets one if it had no expiry. (pcall: a Redis user without
  -- +pttl still gets the error.)
  if redis.pcall('PTTL', key) == -1 then redis.pcall('PEXPIRE', key, idle) end
  return unreadable or redis.error_reply('CORRUPT the session record has no valid deadline')
end
local touched
if touched_text and #touched_text <= 16
    and (touched_text == '0' or string.match(touched_text, '^[1-9]%d*$')) then
  touched = tonumber(touched_text)
  if touched > MAX then touched = nil end
end
-- The session's own idle timeout, read by the same rule; a bad one counts as none.
if idle_text and #idle_text <= 16 and string.match(idle_text, '^[1-9]%d*$') then
  local own = tonumber(idle_text)
  if own <= MAX then idle = own end
end
if deadline <= now or (touched and touched + idle <= now) then
  redis.call('DEL', key)
  return false
end
-- A touch stamped by a clock ahead of this one counts as just made.
local due = not touched or math.max(now - touched, 0) >= touch
local ttl = deadline - now
if idle < ttl then ttl = idle end
if due and load then
  -- The fields answered carry the touch made here.
  if touched_at then
    fields[touched_at] = ARGV[1]
  else
    fields[#fields + 1] = '__touched'
    fields[#fields + 1] = ARGV[1]
  end
end

-- A plain load: nothing to apply.
if #ARGV == 6 then
  if due then
    redis.call('HSET', key, '__touched', ARGV[1])
    redis.call('PEXPIRE', key, ttl)
  end
  if load then return cjson.encode(fields) end
  return 1
end

-- An increment of a field that exists adds no field and a few bytes at most: the bounds need no
-- check. One that creates a field takes the general path, which checks them.
if lone_incr and not has_counter then
  lone_incr = false
end

-- Fast path, the common request: one increment, and removals at most. HINCRBY refuses any
-- value that is not an integer without writing; a result outside +-(2^53 - 1) is undone at once
-- (the script is atomic, so nobody sees it). The removals come after: nothing is written when
-- the increment fails.
if lone_incr then
  local name, by = incr_name, tonumber(ARGV[first + 2])
  local result = redis.pcall('HINCRBY', key, name, ARGV[first + 2])
  if type(result) == 'table' then
    local message = result.err or ''
    -- A value HINCRBY cannot read, or one so large that adding overflows 64 bits: either way
    -- not a counter of ours. Any other failure (out of memory, ...) is passed on as it is.
    if string.find(message, 'not an integer', 1, true) or string.find(message, 'overflow', 1, true) then
      return redis.error_reply('NOTINT session field does not hold an integer')
    end
    return result
  end
  -- HINCRBY accepts any 64-bit integer; a counter of ours stays within +-(2^53 - 1), before and
  -- after. Otherwise undo at once (the script is atomic, so nobody sees it).
  local before = result - by
  if before > MAX or before < -MAX then
    redis.call('HINCRBY', key, name, -by)
    return redis.error_reply('NOTINT session field does not hold an integer')
  end
  if result > MAX or result < -MAX then
    redis.call('HINCRBY', key, name, -by)
    return redis.error_reply('RANGE session counter would leave +-(2^53 - 1)')
  end
  for j = 8, first - 1, 2 do
    if j > 8 or removed_present then redis.call('HDEL', key, ARGV[j]) end
  end
  if due then
    redis.call('HSET', key, '__touched', ARGV[1])
    redis.call('PEXPIRE', key, ttl)
  end
  -- Within +-(2^53 - 1), so the integer reply is exact.
  if not load then return result end
  -- %d, not tostring: tostring writes large numbers in exponent notation.
  return cjson.encode({ { string.format('%d', result) }, fields })
end

-- Counters are canonical decimal integers within +-(2^53 - 1): the spellings HINCRBY accepts
-- and JSON readers agree on.
local function counter(s)
  if #s > 17 then return nil end
  if s ~= '0' and not string.match(s, '^%-?[1-9]%d*$') then return nil end
  local n = tonumber(s)
  if n > MAX or n < -MAX then return nil end
  return n
end

-- General path, first pass: check every increment against the values it will meet, writing
-- nothing, so that a bad increment cannot leave earlier ops of the same step applied.
local staged = {}
-- Whether the step sets a field or creates one by incrementing it: only such a step is checked
-- against the bounds (removals and increments of existing counters add no field, and at most
-- a few digits).
local grows = false
local i = 7
while i <= #ARGV do
  local op, name = ARGV[i], ARGV[i + 1]
  if op == 'S' then
    staged[name] = ARGV[i + 2]
    grows = true
    i = i + 3
  elseif op == 'D' then
    staged[name] = false
    i = i + 2
  elseif op == 'I' then
    local current = staged[name]
    if current == nil then
      current = redis.call('HGET', key, name)
    end
    local base = 0
    if not current then grows = true end
    if current then
      base = counter(current)
      if base == nil then
        return redis.error_reply('NOTINT session field does not hold an integer')
      end
    end
    local result = base + tonumber(ARGV[i + 2])
    if result > MAX or result < -MAX then
      return redis.error_reply('RANGE session counter would leave +-(2^53 - 1)')
    end
    staged[name] = string.format('%d', result)
    i = i + 3
  else
    return redis.error_reply('BADOP unknown session operation')
  end
end

-- Bounds: the session's user totals before the step and after it, from the staged values.
if grows then
  local all = fields
  if all == 0 then all = redis.call('HGETALL', key) end
  local count, bytes, current = 0, 0, {}
  for j = 1, #all, 2 do
    local name = all[j]
    if string.sub(name, 1, 2) ~= '__' then
      current[name] = all[j + 1]
      count = count + 1
      bytes = bytes + #name + #all[j + 1]
    end
  end
  local new_count, new_bytes = count, bytes
  for name, value in pairs(staged) do
    local old = current[name]
    if old then
      new_count = new_count - 1
      new_bytes = new_bytes - #name - #old
    end
    if value then
      new_count = new_count + 1
      new_bytes = new_bytes + #name + #value
    end
  end
  if new_count > max_fields and new_count > count then
    return redis.error_reply(string.format(
      'TOOLARGE the session would hold %d fields; at most %d are allowed', new_count, max_fields))
  end
  if new_bytes > max_bytes and new_bytes > bytes then
    return redis.error_reply(string.format(
      'TOOLARGE the session would hold %d bytes; at most %d are allowed', new_bytes, max_bytes))
  end
end

-- Second pass: write.
local counters = {}
local last
i = 7
while i <= #ARGV do
  local op, name = ARGV[i], ARGV[i + 1]
  if op == 'S' then
    redis.call('HSET', key, name, ARGV[i + 2])
    i = i + 3
  elseif op == 'D' then
    redis.call('HDEL', key, name)
    i = i + 2
  else
    last = redis.call('HINCRBY', key, name, ARGV[i + 2])
    counters[#counters + 1] = string.format('%d', last)
    i = i + 3
  end
end

if due then
  redis.call('HSET', key, '__touched', ARGV[1])
  redis.call('PEXPIRE', key, ttl)
end
if load then
  if #counters == 0 then return cjson.encode(fields) end
  return cjson.encode({ counters, fields })
end
if #counters == 0 then return 1 end
if #counters == 1 then return last end
return cjson.encode({ counters, 0 })
