--[[
reserve.lua - reserve a batch of orders at ONE node, all-or-nothing per order.

KEYS[1]  <prefix>:{n:NODE}:stock   hash: oh:<sku>, rs:<sku>, v:<sku>, load:<yyyymmdd>
KEYS[2]  <prefix>:{n:NODE}:resv    hash: <order_id> -> reservation record
ARGV[1]  UTC day yyyymmdd, from the caller: a script never reads the clock (determinism and
         replication)
ARGV[2]  packed batch, TAB-separated:
         order_id TAB n_lines (TAB sku TAB qty) x n_lines, then the next order, ...
         or, for a re-route that replaces an earlier reservation of the same order:
         order_id TAB -n_lines TAB credit_id (TAB sku TAB qty) x n_lines
         where credit_id is the earlier reservation's id at this node: the units it holds
         count as available to this order (it is released right after, by the caller, once
         the whole new plan is held), so moving an order never needs its stock twice.

Orders are decided in sequence, so a later order in the batch sees the stock the earlier ones
took. Per order:
  * a record already exists (or the same order was reserved earlier in this batch) -> "already":
    a replay after a crash never reserves twice and leaves the first reservation as it was;
  * every sku fits (on_hand - reserved >= qty, lines of one sku summed first) -> rs += qty for
    each sku, the record is written, and the node's load for the day goes up by one;
  * otherwise nothing changes for this order; the first short sku and its ATP (>= 0) are
    reported.

Cost: Redis calls are the expensive part of a script, so the batch reads everything it needs
with two HMGETs up front, decides in plain Lua tables, and writes with at most three calls at the
end: a handful of calls per batch instead of four per order. The caller keeps a batch to <= 1000
orders and <= 2000 lines, far below the 8000-argument limit of unpack().

Record: "yyyymmdd\nsku\tqty\nsku\tqty..." (the day the reservation counted towards load, then
the summed lines in first-seen order), so release gives the load back to the right day.

Reply: one element per order: 0 reserved, 1 already, or the string "atp\tsku" when short.
]]
local stock, resv = KEYS[1], KEYS[2]
local day = ARGV[1]
local f, nf = {}, 0
for tok in string.gmatch(ARGV[2], '[^\t]+') do
  nf = nf + 1
  f[nf] = tok
end

-- parse: per order its id, distinct skus in first-seen order and the summed quantity of each
local ids, skus_of, need_of, no = {}, {}, {}, 0
local credit_ids, credit_at, ncredit = {}, {}, 0 -- earlier reservations credited, and by whom
local fields, slot, nfields = {}, {}, 0 -- oh:/rs: field pairs of every distinct sku in the batch
local i = 1
while i <= nf do
  local nlines = tonumber(f[i + 1])
  no = no + 1
  ids[no] = f[i]
  i = i + 2
  if nlines < 0 then
    nlines = -nlines
    ncredit = ncredit + 1
    credit_ids[ncredit] = f[i]
    credit_at[ncredit] = no
    i = i + 1
  end
  local skus, need, ns = {}, {}, 0
  for _ = 1, nlines do
    local sku, qty = f[i], tonumber(f[i + 1])
    i = i + 2
    if need[sku] then
      need[sku] = need[sku] + qty
    else
      ns = ns + 1
      skus[ns] = sku
      need[sku] = qty
      if not slot[sku] then
        slot[sku] = nfields + 1
        fields[nfields + 1] = 'oh:' .. sku
        fields[nfields + 2] = 'rs:' .. sku
        nfields = nfields + 2
      end
    end
  end
  skus_of[no], need_of[no] = skus, need
end
if no == 0 then return {} end

local existing = redis.call('HMGET', resv, unpack(ids))
local credit_of = {} -- order index -> {sku -> units its earlier reservation holds here}
if ncredit > 0 then
  local recs = redis.call('HMGET', resv, unpack(credit_ids))
  for c = 1, ncredit do
    local have = {}
    if recs[c] then
      for row in string.gmatch(recs[c], '[^\n]+') do
        local sku, qty = string.match(row, '^(.-)\t(%d+)$')
        if sku then have[sku] = (have[sku] or 0) + tonumber(qty) end
      end
    end
    credit_of[credit_at[c]] = have
  end
end
local vals = redis.call('HMGET', stock, unpack(fields))
local oh, rs = {}, {}
for sku, s in pairs(slot) do
  oh[sku] = tonumber(vals[s]) or 0
  rs[sku] = tonumber(vals[s + 1]) or 0
end

local out, taken, added = {}, {}, 0
local changed, nchanged, is_changed = {}, 0, {}
local recs, nrecs = {}, 0
for o = 1, no do
  local id, skus, need = ids[o], skus_of[o], need_of[o]
  local credit = credit_of[o]
  if existing[o] or taken[id] then
    out[o] = 1
  else
    local short
    for k = 1, #skus do
      local sku = skus[k]
      local atp = oh[sku] - rs[sku] + (credit and credit[sku] or 0)
      if atp < need[sku] then
        if atp < 0 then atp = 0 end
        short = string.format('%d', atp) .. '\t' .. sku
        break
      end
    end
    if short then
      out[o] = short
    else
      local rec = { day }
      for k = 1, #skus do
        local sku = skus[k]
        rs[sku] = rs[sku] + need[sku]
        rec[k + 1] = sku .. '\t' .. string.format('%d', need[sku])
        if not is_changed[sku] then
          is_changed[sku] = true
          nchanged = nchanged + 1
          changed[nchanged] = sku
        end
      end
      recs[nrecs + 1] = id
      recs[nrecs + 2] = table.concat(rec, '\n')
      nrecs = nrecs + 2
      taken[id] = true
      added = added + 1
      out[o] = 0
    end
  end
end

if added > 0 then
  local sets = {}
  for k = 1, nchanged do
    sets[2 * k - 1] = 'rs:' .. changed[k]
    sets[2 * k] = rs[changed[k]]
  end
  redis.call('HSET', stock, unpack(sets))
  redis.call('HSET', resv, unpack(recs))
  redis.call('HINCRBY', stock, 'load:' .. day, added)
end
return out
