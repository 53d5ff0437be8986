-- count: how many of the session keys from one SCAN step are live (prelude + this file).
--
-- KEYS     session keys
-- ARGV[1]  now (Unix ms)
--
-- Returns the number of live sessions among KEYS.
local now, live = tonumber(ARGV[1]), 0
for _, key in ipairs(KEYS) do
  local expires = redis.pcall('HGET', key, 'm:expires')
  if type(expires) == 'string' and expiry(expires) > now then live = live + 1 end
end
return live
