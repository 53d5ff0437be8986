-- revoke: deletes a user's sessions, all or all but one (prelude + this file).
--
-- KEYS[1]  the user index
-- ARGV[1]  session key prefix, `{prefix}:s:`
-- ARGV[2]  user id
-- ARGV[3]  the hash of the session to keep, or ''
--
-- Returns the number of sessions deleted.
local revoked = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if member ~= ARGV[3] then
    local key = ARGV[1] .. member
    if redis.pcall('HGET', key, 'm:user') == ARGV[2] then
      redis.call('DEL', key)
      revoked = revoked + 1
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return revoked
