-- Heartbeat: set the heartbeat key and reset the idle time of every entry this worker owns.
-- Also keep the backend's "live" key alive: the producer refuses jobs for a backend without it.
-- KEYS: heartbeat, backend live key, streams...   ARGV: group, worker, ttl_ms, info
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local n = 0
for i = 3, #KEYS do
  local ok, pend = pcall(redis.call, 'XPENDING', KEYS[i], ARGV[1], '-', '+', 10000, ARGV[2])
  if ok and #pend > 0 then
    local args = {'XCLAIM', KEYS[i], ARGV[1], ARGV[2], '0'}
    for _, p in ipairs(pend) do args[#args + 1] = p[1] end
    args[#args + 1] = 'JUSTID'
    redis.call(unpack(args))
    n = n + #pend
  end
end
return n
