-- Shared by every script but heartbeat.lua. Timestamps come from the Redis server clock so that
-- every party (API, workers, benchmarks) agrees on one clock. The quoted MAXLEN placeholder is
-- filled in from sim_worker.jobs.keys when the scripts are loaded (sim_worker/jobs/scripts.py).
local function now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end
local function terminal(s) return s == 'succeeded' or s == 'failed' or s == 'canceled' end
local function event(key, ttl, ...)
  redis.call('XADD', key, 'MAXLEN', '~', '${EVENTS_MAXLEN}', '*', ...)
  redis.call('EXPIRE', key, ttl)
end
