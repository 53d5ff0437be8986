-- rotate: moves a live session to a new key and applies a patch to it (prelude + apply + this
-- file), in one atomic step.
--
-- KEYS[1]  the old session
-- KEYS[2]  the new session
-- ARGV     as apply.lua describes (ARGV[7] the new hash, ARGV[8] the old one)
--
-- Returns 1 when moved, 0 when there is no live session, -1 when the new key is taken
-- (nothing changes).
local meta = redis.call('HMGET', KEYS[1], 'm:expires', 'm:user')
if not meta[1] or expiry(meta[1]) <= tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('RENAME', KEYS[1], KEYS[2])
apply(KEYS[2], meta[1], meta[2])
return 1
