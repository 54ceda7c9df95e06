-- KEYS: job, events   ARGV: ttl
local f = redis.call('HMGET', KEYS[1], 'status', 'stream', 'entry')
if not f[1] then return 'gone' end
if terminal(f[1]) then return f[1] end
local t = now()
if f[1] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', t, 'updated_at', t)
  if f[2] and f[3] then redis.call('XDEL', f[2], f[3]) end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  event(KEYS[2], ARGV[1], 'type', 'status', 'status', 'canceled', 'progress', '0', 't', t)
  return 'canceled'
end
if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'updated_at', t)
  local p = redis.call('HGET', KEYS[1], 'progress') or '0'
  event(KEYS[2], ARGV[1], 'type', 'cancel_requested', 'status', f[1], 'progress', p, 't', t)
end
return 'cancel_requested'
