-- Helpers every script but the two lean ones shares (scripts.rs puts this file in front of
-- them). Timestamps travel as decimal strings and are written back as the same strings, so
-- Lua's doubles never round a stored value.

-- Calls `command key items[first..last]` in chunks that fit Lua's stack (an even size, so
-- field/value pairs stay together).
local function each_chunk(command, key, items, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call(command, key, unpack(items, i, j))
    i = j + 1
  end
end

-- A stored expiry as a number; an unreadable one counts as long past.
local function expiry(value)
  return tonumber(value) or 0
end

-- Files `member` (expiring at `expires`) in the sorted set `index` and keeps the set alive at
-- least as long as its longest-lived member.
local function index_add(index, member, expires)
  redis.call('ZADD', index, expires, member)
  local top = redis.call('ZRANGE', index, -1, -1)
  if top[1] == member then
    redis.call('PEXPIREAT', index, expires)
  end
end
