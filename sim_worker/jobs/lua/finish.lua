-- KEYS: job, stream, events, frames, results counter
-- ARGV: group, entry, worker, status, result, error, ttl, frame field/value pairs...
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'gone' end
if terminal(st) then return 'dup' end
local t = now()
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'result', ARGV[5], 'finished_at', t, 'updated_at', t, 'worker', ARGV[3])
local p = redis.call('HGET', KEYS[1], 'progress') or '0'
if ARGV[4] == 'succeeded' then p = '1'; redis.call('HSET', KEYS[1], 'progress', '1') end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6])
elseif ARGV[4] == 'succeeded' then redis.call('HDEL', KEYS[1], 'error') end
if #ARGV >= 8 then
  for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
  redis.call('EXPIRE', KEYS[4], ARGV[7])
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('INCR', KEYS[5])
if ARGV[6] ~= '' then
  event(KEYS[3], ARGV[7], 'type', 'status', 'status', ARGV[4], 'progress', p, 't', t, 'error', ARGV[6])
else
  event(KEYS[3], ARGV[7], 'type', 'status', 'status', ARGV[4], 'progress', p, 't', t)
end
return 'ok'
