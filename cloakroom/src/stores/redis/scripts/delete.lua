-- delete: removes a session and its user index entry (prelude + this file). Deletes whatever
-- is at the key, so an operator can remove a foreign key too.
--
-- KEYS[1]  the session
-- ARGV[1]  index key prefix, `{prefix}:u:`
-- ARGV[2]  the session's hash (its member in the user index)
--
-- Returns the number of keys deleted.
local user = redis.pcall('HGET', KEYS[1], 'm:user')
local removed = redis.call('DEL', KEYS[1])
if type(user) == 'string' then redis.call('ZREM', ARGV[1] .. user, ARGV[2]) end
return removed
