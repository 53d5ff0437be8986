-- purge: deletes, among the keys from one SCAN step, sessions expired at `now` and index
-- members whose session is gone, up to a limit (prelude + this file).
--
-- KEYS     session and index keys
-- ARGV[1]  now (Unix ms)
-- ARGV[2]  the most to remove
-- ARGV[3]  session key prefix, `{prefix}:s:`
-- ARGV[4]  index key prefix, `{prefix}:u:`
--
-- Returns how many went.
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local sp, ip = ARGV[3], ARGV[4]
local removed = 0
for _, key in ipairs(KEYS) do
  if removed >= limit then break end
  if string.sub(key, 1, #sp) == sp then
    local meta = redis.pcall('HMGET', key, 'm:expires', 'm:user')
    if meta.err == nil and meta[1] and expiry(meta[1]) <= now then
      redis.call('DEL', key)
      if meta[2] then redis.call('ZREM', ip .. meta[2], string.sub(key, #sp + 1)) end
      removed = removed + 1
    end
  elseif string.sub(key, 1, #ip) == ip then
    local user = string.sub(key, #ip + 1)
    local stale = redis.pcall('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'LIMIT', 0, limit - removed)
    if stale.err == nil then
      for _, member in ipairs(stale) do
        local meta = redis.pcall('HMGET', sp .. member, 'm:expires', 'm:user')
        local mine = meta.err == nil and meta[2] == user and meta[1]
        if mine and expiry(meta[1]) > now then
          index_add(key, member, meta[1])
        else
          -- One expired session counts once, whether its key or its index comes first.
          if mine then redis.call('DEL', sp .. member) end
          redis.call('ZREM', key, member)
          removed = removed + 1
        end
      end
    end
  end
end
return removed
