-- KEYS: job, events   ARGV: worker, progress, ttl
local f = redis.call('HMGET', KEYS[1], 'status', 'worker')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
local t = now()
redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'updated_at', t)
redis.call('EXPIRE', KEYS[1], ARGV[3])
event(KEYS[2], ARGV[3], 'type', 'progress', 'status', 'running', 'progress', ARGV[2], 't', t)
return 1
