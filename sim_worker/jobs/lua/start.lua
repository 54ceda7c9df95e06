-- KEYS: job, stream, events, dead   ARGV: group, entry, worker, job id, ttl
local function drop() redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]); redis.call('XDEL', KEYS[2], ARGV[2]) end
local st = redis.call('HGET', KEYS[1], 'status')
if not st then drop(); return {'gone'} end
if terminal(st) then drop(); return {'skip', st} end
local f = redis.call('HMGET', KEYS[1], 'entry', 'attempts', 'max_attempts', 'error', 'cancel')
if f[1] ~= ARGV[2] then drop(); return {'stale'} end
local t = now()
if f[5] == '1' then
  drop()
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', t, 'updated_at', t)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'canceled', 'progress', '0', 't', t)
  return {'skip', 'canceled'}
end
local attempts = tonumber(f[2]) or 0
local maxa = tonumber(f[3]) or 1
if attempts >= maxa then
  local err = 'gave up after ' .. attempts .. ' attempts; last error: ' .. (f[4] or 'unknown')
  drop()
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', err, 'finished_at', t, 'updated_at', t)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '${DEAD_MAXLEN}', '*', 'job', ARGV[4], 'error', err,
             'attempts', tostring(attempts), 'stream', KEYS[2], 'worker', ARGV[3], 't', t)
  event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'failed', 'progress', '0', 't', t, 'error', err)
  return {'dead', err}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'started_at', t, 'updated_at', t, 'progress', '0')
redis.call('HSETNX', KEYS[1], 'first_started_at', t)
redis.call('EXPIRE', KEYS[1], ARGV[5])
event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'running', 'progress', '0', 't', t, 'worker', ARGV[3])
return {'run', tostring(attempts), redis.call('HGET', KEYS[1], 'request')}
