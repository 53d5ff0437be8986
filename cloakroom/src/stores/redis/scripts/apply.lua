-- apply(key, old_expires, old_user): applies a patch to the live session at `key`, whose
-- stored m:expires and m:user the calling script has just read. Shared by save.lua and
-- rotate.lua; the arguments are built by `patch_args` in scripts.rs.
--
-- ARGV[1]        now (Unix ms), written to m:updated
-- ARGV[2]        new expiry (Unix ms), or '' to keep the stored one
-- ARGV[3]        user change: '' keep, '+' set to ARGV[4], '-' unset
-- ARGV[4]        user id (when ARGV[3] is '+')
-- ARGV[5]        '1' to remove every data field first, or ''
-- ARGV[6]        index key prefix, `{prefix}:u:`
-- ARGV[7]        the session's hash (its member in the user index)
-- ARGV[8]        its previous hash (differs from ARGV[7] on rotation)
-- ARGV[9]        R, the number of removed fields
-- ARGV[10..9+R]  removed fields (`d:<key>`)
-- ARGV[10+R..]   field/value pairs to set (`d:<key>`, JSON text)
--
-- A plain write (set some keys) costs one HSET here: the metadata rides along with the data,
-- and the TTL is only reset when the expiry moved (a rename keeps it).
local function apply(key, old_expires, old_user)
  if ARGV[5] == '1' then
    local doomed = {}
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if string.sub(field, 1, 2) == 'd:' then doomed[#doomed + 1] = field end
    end
    each_chunk('HDEL', key, doomed, 1, #doomed)
  end
  local removed = tonumber(ARGV[9])
  each_chunk('HDEL', key, ARGV, 10, 9 + removed)
  local expires = old_expires
  if ARGV[2] ~= '' then expires = ARGV[2] end
  local user = old_user
  if ARGV[3] == '+' then user = ARGV[4] elseif ARGV[3] == '-' then user = false end
  local fields = {'m:updated', ARGV[1], 'm:expires', expires}
  if user and user ~= old_user then
    fields[5] = 'm:user'
    fields[6] = user
  end
  for i = 10 + removed, #ARGV do fields[#fields + 1] = ARGV[i] end
  each_chunk('HSET', key, fields, 1, #fields)
  if old_user and not user then redis.call('HDEL', key, 'm:user') end
  local moved = ARGV[7] ~= ARGV[8]
  if old_user and (moved or user ~= old_user) then
    redis.call('ZREM', ARGV[6] .. old_user, ARGV[8])
  end
  if user and (moved or user ~= old_user or ARGV[2] ~= '') then
    index_add(ARGV[6] .. user, ARGV[7], expires)
  end
  -- Last, so that an expiry already past deletes the key instead of leaving a key without TTL.
  if ARGV[2] ~= '' then redis.call('PEXPIREAT', key, expires) end
end
