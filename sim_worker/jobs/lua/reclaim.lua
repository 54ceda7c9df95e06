-- Janitor: claim entries idle > min_idle whose owner's heartbeat is gone.
-- KEYS: streams...   ARGV: group, worker, min_idle_ms, hb prefix, hb suffix, count, ttl, job prefix
local out = {}
local budget = tonumber(ARGV[6])
for i = 1, #KEYS do
  local ok, pend = pcall(redis.call, 'XPENDING', KEYS[i], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[6])
  if ok then
    for _, p in ipairs(pend) do
      local id, owner = p[1], p[2]
      if budget > 0 and owner ~= ARGV[2] and redis.call('EXISTS', ARGV[4] .. owner .. ARGV[5]) == 0 then
        local e = redis.call('XRANGE', KEYS[i], id, id)
        if #e == 0 then
          redis.call('XACK', KEYS[i], ARGV[1], id)  -- entry deleted (job finished or canceled): nothing to redo
        else
          local c = redis.call('XCLAIM', KEYS[i], ARGV[1], ARGV[2], ARGV[3], id, 'JUSTID')
          if #c > 0 then
            local job = e[1][2][2]
            local jk = ARGV[8] .. job
            local f = redis.call('HMGET', jk, 'status', 'worker', 'attempts')
            if f[1] == 'running' and f[2] == owner then
              local t = now()
              local msg = 'worker ' .. owner .. ' stopped heartbeating during attempt ' .. (f[3] or '?')
              redis.call('HSET', jk, 'status', 'queued', 'error', msg, 'updated_at', t, 'progress', '0')
              event(jk .. ':events', ARGV[7], 'type', 'status', 'status', 'queued', 'progress', '0', 't', t,
                    'error', msg)
            end
            out[#out + 1] = {KEYS[i], id, job}
            budget = budget - 1
          end
        end
      end
    end
  end
end
return out
