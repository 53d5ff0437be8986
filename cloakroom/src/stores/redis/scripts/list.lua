-- list: the live sessions of one user (prelude + this file). Drops index members whose
-- session is gone or bound to someone else.
--
-- KEYS[1]  the user index
-- ARGV[1]  now (Unix ms)
-- ARGV[2]  session key prefix, `{prefix}:s:`
-- ARGV[3]  user id
--
-- Returns {hash, fields, hash, fields, ...}: each live session's hash and its HGETALL reply.
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.pcall('HGETALL', ARGV[2] .. member)
  local expires, user
  if fields.err == nil then
    for i = 1, #fields, 2 do
      if fields[i] == 'm:expires' then expires = fields[i + 1]
      elseif fields[i] == 'm:user' then user = fields[i + 1] end
    end
  end
  if user ~= ARGV[3] or not expires then
    redis.call('ZREM', KEYS[1], member)
  elseif expiry(expires) > tonumber(ARGV[1]) then
    out[#out + 1] = member
    out[#out + 1] = fields
  end
end
return out
