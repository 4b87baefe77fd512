-- One step on a user's index: a sorted set scored by the sessions' absolute deadlines, whose
-- members are 'SESSIONKEY:WRITTEN', WRITTEN being when the entry was written (Unix ms). The
-- caller judges an entry whose session is not there yet by WRITTEN: a rotation lists its new
-- session with the old deadline, so the score says nothing about the entry's age.
-- KEYS[1]: the index key
-- ARGV[1]: now (Unix ms); ARGV[2]: 'A' add | 'R' remove | 'L' list
-- ARGV[3]: the session key (A, R); ARGV[4]: its deadline, Unix ms (A), or when its entry was
-- written (R)
--
-- Every step first drops the entries whose deadline has passed; a set left empty is deleted by
-- Redis. The index has no TTL on purpose: under the volatile-* eviction policies Redis only
-- evicts keys that have one, so an index is never evicted while the sessions it lists live on.
-- Reply: for 'L', each member followed by its deadline, soonest first; otherwise an empty list.
local key, now, op = KEYS[1], tonumber(ARGV[1]), ARGV[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
if op == 'A' then
  if tonumber(ARGV[4]) > now then
    redis.call('ZADD', key, ARGV[4], ARGV[3] .. ':' .. ARGV[1])
    -- An index written by an earlier version had a TTL: it loses it, or it would expire with
    -- the entries added since, and stay open to volatile-* eviction. (pcall: a Redis user
    -- without +persist keeps the old behaviour rather than failing logins.)
    redis.pcall('PERSIST', key)
  end
elseif op == 'R' then
  -- The member as listed, and the bare key an earlier version wrote: one ZREM, whatever the
  -- size of the index.
  redis.call('ZREM', key, ARGV[3] .. ':' .. (ARGV[4] or ''), ARGV[3])
elseif op ~= 'L' then
  return redis.error_reply('BADOP unknown index operation')
end
if op == 'L' then
  return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
end
return {}
