-- create: files a new session, bound to a user or not (prelude + this file).
--
-- KEYS[1]  the session
-- ARGV[1]  now (Unix ms): a stored session that expired by then is replaced
-- ARGV[2]  expires (Unix ms)
-- ARGV[3]  created (Unix ms)
-- ARGV[4]  updated (Unix ms)
-- ARGV[5]  user id, or ''
-- ARGV[6]  '1' if bound to the user ARGV[5], or ''
-- ARGV[7]  index key prefix, `{prefix}:u:`
-- ARGV[8]  the session's hash (its member in the user index)
-- ARGV[9..] field/value pairs of the data (`d:<key>`, JSON text)
--
-- Returns 1, or 0 when a live session (or a foreign key) holds the name (nothing changes).
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  local meta = redis.pcall('HMGET', key, 'm:expires', 'm:user')
  if not meta[1] or expiry(meta[1]) > tonumber(ARGV[1]) then return 0 end
  -- Expired by the caller's clock, not yet by Redis's: replace it.
  if meta[2] then redis.call('ZREM', ARGV[7] .. meta[2], ARGV[8]) end
  redis.call('DEL', key)
end
redis.call('HSET', key, 'm:created', ARGV[3], 'm:updated', ARGV[4], 'm:expires', ARGV[2])
if ARGV[6] == '1' then
  redis.call('HSET', key, 'm:user', ARGV[5])
  index_add(ARGV[7] .. ARGV[5], ARGV[8], ARGV[2])
end
each_chunk('HSET', key, ARGV, 9, #ARGV)
redis.call('PEXPIREAT', key, ARGV[2])
return 1
