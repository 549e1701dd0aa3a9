--[[
release.lua - release a batch of reservations at ONE node (cancellation, re-routing,
compensation of a split order).

KEYS[1]  <prefix>:{n:NODE}:stock   hash: oh:<sku>, rs:<sku>, v:<sku>, load:<yyyymmdd>
KEYS[2]  <prefix>:{n:NODE}:resv    hash: <order_id> -> "yyyymmdd\nsku\tqty\n..."
ARGV[1]  fallback UTC day yyyymmdd, used only for a record that carries no day ("" = none)
ARGV[2]  order ids, TAB-separated

For each order with a record: rs -= the recorded quantities (never below 0; a zero rs field is
deleted to keep the hash small), the record is deleted, and the load of the day the record was
reserved on goes down by one (never below 0). Orders without a record are "absent", so a
replayed release changes nothing (idempotent).

Reply: one integer per order: 1 released, 0 absent.
]]
local stock, resv = KEYS[1], KEYS[2]
local fallback = ARGV[1]
local out, no = {}, 0
local per_day = {}

for order in string.gmatch(ARGV[2], '[^\t]+') do
  no = no + 1
  local rec = redis.call('HGET', resv, order)
  if rec then
    for sku, qty in string.gmatch(rec, '([^\t\n]+)\t(%d+)') do
      local rsf = 'rs:' .. sku
      local left = (tonumber(redis.call('HGET', stock, rsf)) or 0) - tonumber(qty)
      if left > 0 then
        redis.call('HSET', stock, rsf, left)
      else
        redis.call('HDEL', stock, rsf)
      end
    end
    redis.call('HDEL', resv, order)
    local day = string.match(rec, '^(%d+)\n') or fallback
    if day ~= '' then
      per_day[day] = (per_day[day] or 0) + 1
    end
    out[no] = 1
  else
    out[no] = 0
  end
end

for day, n in pairs(per_day) do
  local lf = 'load:' .. day
  local left = (tonumber(redis.call('HGET', stock, lf)) or 0) - n
  if left > 0 then
    redis.call('HSET', stock, lf, left)
  else
    redis.call('HDEL', stock, lf)
  end
end
return out
