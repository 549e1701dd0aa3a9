-- Write many order records of ONE hash slot (same {o:bucket} tag) with a TTL.
-- KEYS[i] = record key; ARGV[1] = ttl seconds; ARGV[i+1] = record bytes for KEYS[i].
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
