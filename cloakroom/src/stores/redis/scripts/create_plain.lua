-- create_plain: the common create (a new session bound to no user), create.lua reduced to one
-- HSET and the TTL, for a name no key holds. Runs without the prelude.
--
-- KEYS[1]  the session
-- ARGV[1]  expires (Unix ms)
-- ARGV[2..] field/value pairs: m:created, m:updated, m:expires, then the data fields (few
--          enough for `unpack` to stay within Lua's stack)
--
-- Returns 1, or 0 when a key holds the name (nothing changes; create.lua then decides).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
