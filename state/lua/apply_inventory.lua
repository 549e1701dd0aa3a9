--[[
apply_inventory.lua - apply a batch of inventory events to ONE node's stock hash.

Every key this script touches is passed in KEYS and carries the node's hash tag {n:NODE}, so
the script runs unchanged on Redis Cluster.

KEYS[1]  <prefix>:{n:NODE}:stock   hash: oh:<sku>, rs:<sku>, v:<sku>, load:<yyyymmdd>
ARGV[1]  packed batch, TAB-separated, 4 fields per event:
         sku TAB version TAB kind TAB value   (kind: "s" snapshot | "d" delta)

An event is applied only if its version is greater than the stored v:<sku>, so replays and
late, out-of-order events are harmless (idempotent by version). A snapshot sets on-hand; a delta
adds to it. On-hand never goes below 0: the value is clamped and the event reported as clamped,
so the caller sees that the warehouse's numbers disagree with ours.
Reserved (rs) is never touched here: a snapshot below rs is real life (a count found less stock)
and is left visible as rs > oh; availability is then 0 until stock arrives or orders release.

Reply: one integer per event, in order: 0 applied, 1 stale, 2 clamped (applied, but clamped at 0).
]]
local stock = KEYS[1]
local f, nf = {}, 0
for tok in string.gmatch(ARGV[1], '[^\t]+') do
  nf = nf + 1
  f[nf] = tok
end

local out, no = {}, 0
for i = 1, nf, 4 do
  local sku, version, kind, value = f[i], f[i + 1], f[i + 2], tonumber(f[i + 3])
  local ohf, vf = 'oh:' .. sku, 'v:' .. sku
  local cur = redis.call('HMGET', stock, vf, ohf)
  local status
  if cur[1] and tonumber(version) <= tonumber(cur[1]) then
    status = 1
  else
    local new = value
    if kind == 'd' then
      new = (tonumber(cur[2]) or 0) + value
    end
    status = 0
    if new < 0 then
      new = 0
      status = 2
    end
    -- the version is stored as the caller's decimal string: no float formatting involved
    redis.call('HSET', stock, ohf, new, vf, version)
  end
  no = no + 1
  out[no] = status
end
return out
