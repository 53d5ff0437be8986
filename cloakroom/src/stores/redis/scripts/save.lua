-- save: applies a patch to a live session (prelude + apply + this file).
--
-- KEYS[1]  the session
-- ARGV     as apply.lua describes (ARGV[7] and ARGV[8] are both the session's hash)
--
-- Returns 1, or 0 when there is no live session (nothing changes).
local meta = redis.call('HMGET', KEYS[1], 'm:expires', 'm:user')
if not meta[1] or expiry(meta[1]) <= tonumber(ARGV[1]) then return 0 end
apply(KEYS[1], meta[1], meta[2])
return 1
