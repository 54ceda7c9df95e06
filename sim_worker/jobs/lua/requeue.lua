-- A failed attempt (retry or dead-letter) or a released one (worker shutting down: not an attempt).
-- KEYS: job, stream, events, dead   ARGV: group, entry, worker, error/note, ttl, 'fail'|'release', job id
local function drop() redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]); redis.call('XDEL', KEYS[2], ARGV[2]) end
local st = redis.call('HGET', KEYS[1], 'status')
if not st then drop(); return {'gone'} end
if terminal(st) then drop(); return {'dup'} end
local f = redis.call('HMGET', KEYS[1], 'entry', 'worker', 'attempts', 'max_attempts', 'cancel')
if f[1] ~= ARGV[2] then drop(); return {'stale'} end
if st == 'running' and f[2] ~= ARGV[3] then return {'stale'} end
local t = now()
if f[5] == '1' then
  drop()
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', t, 'updated_at', t)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'canceled', 'progress', '0', 't', t)
  return {'canceled'}
end
local attempts = tonumber(f[3]) or 0
if ARGV[6] == 'fail' then
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
  if attempts >= (tonumber(f[4]) or 1) then
    local err = 'failed ' .. attempts .. ' times; last error: ' .. ARGV[4]
    drop()
    redis.call('HSET', KEYS[1], 'status', 'failed', 'error', err, 'finished_at', t, 'updated_at', t)
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', '${DEAD_MAXLEN}', '*', 'job', ARGV[7], 'error', err,
               'attempts', tostring(attempts), 'stream', KEYS[2], 'worker', ARGV[3], 't', t)
    event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'failed', 'progress', '0', 't', t, 'error', err)
    return {'dead', err}
  end
elseif st == 'running' then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
end
drop()
local eid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[7])
redis.call('HSET', KEYS[1], 'status', 'queued', 'entry', eid, 'updated_at', t, 'progress', '0')
redis.call('EXPIRE', KEYS[1], ARGV[5])
event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'queued', 'progress', '0', 't', t, 'error', ARGV[4])
return {'requeued', eid}
