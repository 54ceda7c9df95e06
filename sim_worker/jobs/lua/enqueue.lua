-- KEYS: job, stream, events, object, backends   ARGV: id, ttl, object_ttl, has_object, backend, fields...
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
if ARGV[4] == '1' then
  if redis.call('EXISTS', KEYS[4]) == 0 then return {'no_object'} end
  if redis.call('TTL', KEYS[4]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[4], ARGV[3]) end
end
local t = now()
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
local eid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', eid, 'stream', KEYS[2], 'status', 'queued', 'created_at', t,
           'updated_at', t, 'attempts', '0', 'progress', '0')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[5])
event(KEYS[3], ARGV[2], 'type', 'status', 'status', 'queued', 'progress', '0', 't', t)
return {'ok', eid}
