-- One step on a user's index: a sorted set of session keys scored by their absolute deadlines.
-- KEYS[1]: the index key
-- ARGV[1]: now (Unix ms); ARGV[2]: 'A' add | 'R' remove | 'L' list
-- ARGV[3]: the session key (A, R); ARGV[4]: its deadline, Unix ms (A)
--
-- Every step first drops the entries whose deadline has passed, and leaves the index expiring
-- with its last deadline, so an index never outlives the sessions it lists.
-- Reply: for 'L', each session key followed by its deadline, soonest first; otherwise an
-- empty list.
local key, now, op = KEYS[1], tonumber(ARGV[1]), ARGV[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
if op == 'A' then
  if tonumber(ARGV[4]) > now then
    redis.call('ZADD', key, ARGV[4], ARGV[3])
  end
elseif op == 'R' then
  redis.call('ZREM', key, ARGV[3])
elseif op ~= 'L' then
  return redis.error_reply('BADOP unknown index operation')
end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if #last == 0 then
  return {}
end
-- %d, not tostring: tostring writes large numbers in exponent notation.
redis.call('PEXPIRE', key, string.format('%d', math.max(1, tonumber(last[2]) - now)))
if op == 'L' then
  return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
end
return {}
