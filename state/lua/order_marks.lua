--[[
order_marks.lua - abnormal-order history of ONE bucket (state/order_marks.py): read what came
before (the last order with a fingerprint, a customer's largest line, a sku's quantity norm),
then add the new orders. Every key shares the bucket's hash slot {am:<b>}.

ARGV[1]  duplicate window, ms: the TTL of a fingerprint (bounded state)
ARGV[2]  norm TTL, ms: a customer or sku with no order for this long is forgotten
ARGV[3]  cap of a norm's count (the running mean keeps adapting)
ARGV[4..] ops of 5 arguments each, in arrival order:
  "c", order_id, channel, ts, top_qty   KEYS: fingerprint key, customer key (one per order)
  "j", "", qty, "", ""                  KEYS: sku key, judged key (a line to judge: return the
                                        norm before it, keep that in the judged key, add it)
  "s", "", n, mean, m2                  KEYS: sku key (the count, mean and M2 of the wave's
                                        other lines of the sku, merged into its norm)

Keys (strings of fields joined by \31: one GET and one SET ... PX each, every key with its TTL):
  fingerprint  o, c, t = the order holding it; po, pc, pt = the order it replaced; cn, cm =
               the customer's (orders, largest line) before it; empty = none.
               TTL = the duplicate window.
  customer     n = orders (capped), m = largest line. TTL = norm TTL.
  sku          n, mean, m2 = running norm of line quantities. TTL = norm TTL.
  judged       n, mean, m2 = the norm an order's line was judged against (sku key + ":j:" +
               order id). TTL = the duplicate window.

Idempotent per order for "c" and "j": an order found already holding its fingerprint, or
already judged for a sku, is a replay (a crash before its decision was recorded): it gets the
history it got the first time and adds nothing.

Reply: one entry per op -
  "c": {prev_order, prev_channel, prev_ts, customer_orders, customer_max}   (nil = none)
  "j": {n, mean, m2} as strings ("0" without a norm)
  "s": nil
]]
local window, ttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- One C call reads a whole value (cheaper than splitting it field by field in Lua).
local FP = '^(.-)\31(.-)\31(.-)\31(.-)\31(.-)\31(.-)\31(.-)\31(.*)$'
local CUST = '^(.-)\31(.*)$'
local SKU = '^(.-)\31(.-)\31(.*)$'

local function orfalse(x)  -- an empty field is "none" (nil in the reply)
  if x == '' or x == nil then return false end
  return x
end

local out = {}
local a, k = 4, 1
while a <= #ARGV do
  local op = ARGV[a]
  if op == 'c' then
    local fp, cust = KEYS[k], KEYS[k + 1]
    local oid, ch, ts, top = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
    local raw = redis.call('GET', fp)
    local o, c, t, po, pc, pt, cn, cm
    if raw then o, c, t, po, pc, pt, cn, cm = string.match(raw, FP) end
    if o == oid then
      out[#out + 1] = {orfalse(po), orfalse(pc), orfalse(pt), orfalse(cn), orfalse(cm)}
    else
      local craw = redis.call('GET', cust)
      local n, m
      if craw then n, m = string.match(craw, CUST) end
      n, m = n or '', m or ''
      out[#out + 1] = {orfalse(o), orfalse(c), orfalse(t), orfalse(n), orfalse(m)}
      redis.call('SET', fp, table.concat({oid, ch, ts, o or '', c or '', t or '', n, m}, '\31'),
                 'PX', window)
      redis.call('SET', cust, math.min((tonumber(n) or 0) + 1, cap) .. '\31'
                 .. math.max(tonumber(m) or 0, top), 'PX', ttl)
    end
    k = k + 2
  elseif op == 'j' or op == 's' then
    local key = KEYS[k]
    local nb, meanb, m2b
    if op == 'j' then
      local judged = redis.call('GET', KEYS[k + 1])
      if judged then  -- a replay: the same norm as the first time, nothing added
        out[#out + 1] = {string.match(judged, SKU)}
        nb = 0
      else
        nb, meanb, m2b = 1, tonumber(ARGV[a + 2]), 0
      end
    else
      nb, meanb, m2b = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
      out[#out + 1] = false
    end
    if nb > 0 then
      local raw = redis.call('GET', key)
      local sn, smean, sm2
      if raw then sn, smean, sm2 = string.match(raw, SKU) end
      if op == 'j' then
        local before = (sn or '0') .. '\31' .. (smean or '0') .. '\31' .. (sm2 or '0')
        out[#out + 1] = {sn or '0', smean or '0', sm2 or '0'}
        redis.call('SET', KEYS[k + 1], before, 'PX', window)
      end
      local na, meana, m2a = tonumber(sn) or 0, tonumber(smean) or 0, tonumber(sm2) or 0
      if na + nb > cap then  -- old lines weigh as (cap - nb): the norm keeps adapting
        local keep = math.max(cap - nb, 0)
        if na > 0 then m2a = m2a * keep / na end
        na = keep
      end
      local n = na + nb
      local delta = meanb - meana
      local mean = meana + delta * nb / n
      local m2 = m2a + m2b + delta * delta * na * nb / n
      redis.call('SET', key, n .. string.format('\31%.17g\31%.17g', mean, m2), 'PX', ttl)
    end
    k = k + (op == 'j' and 2 or 1)
  else
    return redis.error_reply('order_marks.lua: unknown op ' .. tostring(op))
  end
  a = a + 5
end
return out
