--[[
edge_apply.lua - apply reservation effects that crossed an edge link, at ONE node, idempotently.

An order decided on the other side of an edge link (docs/edge.md) arrives here as effects per
node: "this order, at decision version v, holds these lines here" (R), or "this order's parcel
left this node" (S). The script makes the node's ledger agree with that, once per version, in
whatever order the effects arrive.

KEYS[1]  <prefix>:{n:NODE}:stock   hash: oh:<sku>, rs:<sku>, v:<sku>, load:<yyyymmdd>
KEYS[2]  <prefix>:{n:NODE}:resv    hash: <order_id> -> reservation record (as reserve.lua writes)
KEYS[3]  <prefix>:{n:NODE}:edge    hash: <order_id> -> link state "version TAB flag [TAB sku TAB atp]"
KEYS[4]  <prefix>:{n:NODE}:edge:t  sorted set: <order_id> -> when its state became terminal (ms);
         only orders that hold nothing here are in it (what edge_prune.lua may forget)
ARGV[1]  "force" (the centre applying an edge's sales: the edge owns its stock, its sales stand)
         or "check" (an edge applying the centre's claims: all-or-nothing, like reserve.lua)
ARGV[2]  packed batch, TAB-separated, items of two kinds:
         R TAB order TAB version TAB day TAB n (TAB sku TAB qty) x n     (n = 0: holds nothing here)
         S TAB order
ARGV[3]  now (ms epoch): the time terminal states are indexed at

Link state flags: o open, r rejected (check mode: did not fit), p shipped before any R was seen
(the next R is applied as a shipment), c closed (shipped; later R are stale).

R, per order, in batch order:
  * a record here that this script did not write (the local router's) -> 1 stale, untouched;
  * no lines for an order never seen here -> 4 none, and nothing is stored (central decisions
    of orders that never touched the site must not grow the state hash);
  * closed, or version <= the stored one -> 1 stale (a rejected version answers its rejection
    again, so a retried link re-sends the same verdict);
  * shipped-before-reserved -> the lines leave on-hand (never below 0) -> 2 shipped (no lines:
    4 none, nothing changes);
  * otherwise the order's previous record at this node is released (reserved and the load of the
    record's day go down, never below 0), then the lines are reserved:
      check: if any sku lacks stock nothing is reserved -> "r TAB sku TAB atp" (atp >= 0);
      force: always reserved; if reserved now exceeds on-hand -> "d TAB sku TAB deficit" (the
             oversell is visible as rs > oh, never as negative stock); else 0 applied.
S, per order: a record here is shipped (on-hand and reserved drop, record deleted) -> 2 shipped;
  no R seen yet -> 3 pending; R seen but nothing held -> 4 none.

Records use reserve.lua's format ("day\nsku\tqty..."), so release.lua and ship.lua work on them.
]]
local stock, resv, edge, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local force = ARGV[1] == 'force'
local now = ARGV[3]
local f, nf = {}, 0
for tok in string.gmatch(ARGV[2], '[^\t]+') do
  nf = nf + 1
  f[nf] = tok
end

-- store an order's link state; index it by time when the order holds nothing here (terminal:
-- closed, rejected, shipped-before-reserved, or open with nothing reserved), else unindex it
local function mark(order, value)
  redis.call('HSET', edge, order, value)
  if redis.call('HEXISTS', resv, order) == 1 then
    redis.call('ZREM', index, order)
  else
    redis.call('ZADD', index, now, order)
  end
end

local function num(field)
  return tonumber(redis.call('HGET', stock, field)) or 0
end

local function put(field, value)
  if value > 0 then
    redis.call('HSET', stock, field, string.format('%d', value))
  else
    redis.call('HDEL', stock, field)
  end
end

local function state_of(order)
  local raw = redis.call('HGET', edge, order)
  if not raw then return nil end
  local parts = {}
  for tok in string.gmatch(raw, '[^\t]+') do parts[#parts + 1] = tok end
  return { version = tonumber(parts[1]), flag = parts[2], raw = raw, sku = parts[3], atp = parts[4] }
end

-- the (sku, qty) lines and the day of a stored record, or nil
local function record_of(order)
  local rec = redis.call('HGET', resv, order)
  if not rec then return nil end
  local day, lines = nil, {}
  for row in string.gmatch(rec, '[^\n]+') do
    if not day then
      day = row
    else
      local sku, qty = string.match(row, '^(.*)\t(%d+)$')
      lines[#lines + 1] = { sku, tonumber(qty) }
    end
  end
  return day, lines
end

local function release(order)
  local day, lines = record_of(order)
  if not day then return end
  for _, line in ipairs(lines) do
    put('rs:' .. line[1], math.max(num('rs:' .. line[1]) - line[2], 0))
  end
  put('load:' .. day, math.max(num('load:' .. day) - 1, 0))
  redis.call('HDEL', resv, order)
end

local function ship(order)
  local day, lines = record_of(order)
  if not day then return false end
  for _, line in ipairs(lines) do
    put('oh:' .. line[1], math.max(num('oh:' .. line[1]) - line[2], 0))
    put('rs:' .. line[1], math.max(num('rs:' .. line[1]) - line[2], 0))
  end
  redis.call('HDEL', resv, order)
  return true
end

local out, no = {}, 0
local i = 1
while i <= nf do
  local op, order = f[i], f[i + 1]
  local st = state_of(order)
  local reply
  if op == 'S' then
    i = i + 2
    local version = string.format('%d', st and st.version or 0)
    if ship(order) then
      reply = 2
      mark(order, version .. '\tc')
    elseif st == nil or st.flag == 'p' then
      reply = 3
      mark(order, version .. '\tp')
    else
      reply = 4
      mark(order, version .. '\tc')
    end
  else
    local version, day, n = tonumber(f[i + 2]), f[i + 3], tonumber(f[i + 4])
    local vs = string.format('%d', version)
    local skus, need = {}, {}
    for k = 1, n do
      local sku, qty = f[i + 3 + 2 * k], tonumber(f[i + 4 + 2 * k])
      if need[sku] then
        need[sku] = need[sku] + qty
      else
        skus[#skus + 1] = sku
        need[sku] = qty
      end
    end
    i = i + 5 + 2 * n
    if not st and redis.call('HEXISTS', resv, order) == 1 then
      -- a record this script did not write (the local router's, same order id): left alone
      reply = 1
    elseif not st and n == 0 then
      -- releasing an order that never held anything here: nothing to do, nothing to remember
      reply = 4
    elseif st and st.flag == 'p' and n == 0 then
      -- shipped, and this version holds nothing here: nothing to consume, nothing to remember
      reply = 4
    elseif st and st.flag == 'p' then
      for _, sku in ipairs(skus) do
        put('oh:' .. sku, math.max(num('oh:' .. sku) - need[sku], 0))
      end
      reply = 2
      mark(order, vs .. '\tc')
    elseif st and (st.flag == 'c' or version <= st.version) then
      if st.flag == 'r' and version == st.version then
        reply = 'r\t' .. st.sku .. '\t' .. st.atp
      else
        reply = 1
      end
    else
      release(order)
      reply = 0
      if n > 0 then
        local short
        if not force then
          for _, sku in ipairs(skus) do
            local atp = num('oh:' .. sku) - num('rs:' .. sku)
            if atp < need[sku] then
              short = sku .. '\t' .. string.format('%d', math.max(atp, 0))
              break
            end
          end
        end
        if short then
          reply = 'r\t' .. short
          mark(order, vs .. '\tr\t' .. short)
        else
          local rec = { day }
          for k, sku in ipairs(skus) do
            local rs = num('rs:' .. sku) + need[sku]
            put('rs:' .. sku, rs)
            rec[k + 1] = sku .. '\t' .. string.format('%d', need[sku])
            local oh = num('oh:' .. sku)
            if rs > oh and reply == 0 then
              reply = 'd\t' .. sku .. '\t' .. string.format('%d', rs - oh)
            end
          end
          redis.call('HSET', resv, order, table.concat(rec, '\n'))
          redis.call('HINCRBY', stock, 'load:' .. day, 1)
          mark(order, vs .. '\to')
        end
      else
        mark(order, vs .. '\to')
      end
    end
  end
  no = no + 1
  out[no] = reply
end
return out
