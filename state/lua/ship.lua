--[[
ship.lua - consume a batch of reservations at ONE node when the carrier picks the parcel up.

KEYS[1]  <prefix>:{n:NODE}:stock   hash: oh:<sku>, rs:<sku>, v:<sku>, load:<yyyymmdd>
KEYS[2]  <prefix>:{n:NODE}:resv    hash: <order_id> -> "yyyymmdd\nsku\tqty\n..."
ARGV[1]  order ids, TAB-separated

For each order with a record: on_hand -= qty and reserved -= qty for every recorded sku (both
never below 0), and the record is deleted. The day's load is NOT given back: the shipment did
leave that node that day. Orders without a record are "absent" (idempotent replay).

Reply: one integer per order: 1 shipped, 0 absent.
]]
local stock, resv = KEYS[1], KEYS[2]
local out, no = {}, 0

for order in string.gmatch(ARGV[1], '[^\t]+') do
  no = no + 1
  local rec = redis.call('HGET', resv, order)
  if rec then
    for sku, qty in string.gmatch(rec, '([^\t\n]+)\t(%d+)') do
      local ohf, rsf = 'oh:' .. sku, 'rs:' .. sku
      local cur = redis.call('HMGET', stock, ohf, rsf)
      local q = tonumber(qty)
      local oh = (tonumber(cur[1]) or 0) - q
      local rs = (tonumber(cur[2]) or 0) - q
      if oh < 0 then oh = 0 end
      redis.call('HSET', stock, ohf, oh)
      if rs > 0 then
        redis.call('HSET', stock, rsf, rs)
      else
        redis.call('HDEL', stock, rsf)
      end
    end
    redis.call('HDEL', resv, order)
    out[no] = 1
  else
    out[no] = 0
  end
end
return out
