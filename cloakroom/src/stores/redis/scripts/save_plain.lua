-- save_plain: the common write (set some keys, nothing else changes), save.lua reduced to its
-- one HSET. Runs without the prelude: the most frequent writes should not pay for defining
-- helpers.
--
-- KEYS[1]  the session
-- ARGV[1]  now (Unix ms), written to m:updated
-- ARGV[2..] field/value pairs to set (`d:<key>`, JSON text); few enough for `unpack` to stay
--          within Lua's stack
--
-- Returns 1, or 0 when there is no live session (nothing changes).
local expires = redis.call('HGET', KEYS[1], 'm:expires')
if not expires or (tonumber(expires) or 0) <= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'm:updated', ARGV[1], unpack(ARGV, 2))
return 1
