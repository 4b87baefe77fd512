-- Create a session if its key is free: fields and TTL in one atomic step, so no key ever
-- exists without an expiry.
-- KEYS[1]: the session key
-- ARGV[1]: TTL in milliseconds; ARGV[2..]: field name, value, name, value, ...
-- Returns 1 when created, 0 when the key was taken (nothing written).
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', key, ARGV[1])
return 1
