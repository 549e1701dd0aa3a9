--[[
order_marks.lua - abnormal-order history of ONE bucket (state/order_marks.py): read what came
before (the last order with a fingerprint, a customer's largest line, a sku's quantity norm),
then add the new orders. Every key shares the bucket's hash slot {am:<b>}.

ARGV[1]  duplicate window, ms: how long a fingerprint is remembered (bounded state)
ARGV[2]  norm TTL, ms: a customer or sku with no order for this long is forgotten
ARGV[3]  cap of a norm's count (the running mean keeps adapting)
ARGV[4]  judge_min: the customer's norm is answered only for an order with a line this large
ARGV[5]  fingerprints kept inside a customer's key; more live at once get keys of their own
ARGV[6]  position of the fingerprint in a fingerprint key (its common prefix's length + 1)
ARGV[7..9] the outlier rule of a judged line against its sku's norm (operators.watch.abnormal
         .quantity_problem, pinned to it by a test): min lines of history, factor over the
         mean, z over the mean in sds. An outlier is answered like any line but never joins
         the norm: else a burst of the same huge line would raise the norm it is judged
         against until the burst's own lines stopped being flagged.
ARGV[10] nc, ARGV[11] nj: the counts of the ops below; then their arguments, by kind, each kind
         in arrival order (nc "c", then nj "j", then "s" to the end):
  c: "top_qty \31 order_id \31 channel \31 ts" (one argument: packing four costs the client
     more)                            KEYS: customer key, fingerprint key (one op per order)
  j: qty                              KEYS: sku key, judged key (a line to judge: answer the
                                      norm before it, keep that in the judged key, add it
                                      unless it is an outlier of that norm)
  s: n, mean, m2                      KEYS: sku key (the count, mean and M2 of other lines of
                                      the sku, merged into its norm)

Keys (strings of fields joined by \31; one GET and one SET ... PX each):
  customer     head `n \31 m \31 norm_expiry \31 spill`, then per live fingerprint `\30` + entry:
               n = orders (capped), m = largest line; spill = until when a fingerprint key of
               this customer may exist. One read and one write per new order: the fingerprint
               lives in its customer's key. TTL = max(norm TTL, duplicate window); the norm
               and each entry carry their own expiry (ms, server clock): an expired entry
               is never answered, and is dropped at the customer's next write (until then
               its ~100 bytes stay, at most for the key's TTL).
  entry        fp, expiry, o, c, t = the order holding the fingerprint; po, pc, pt = the order
               it replaced; cn, cm = the customer's (orders, largest line) before it, kept only
               when the order had a line of at least judge_min. Empty field = none.
  fingerprint  an entry in a key of its own (TTL = the duplicate window), only for a customer
               with more than ARGV[5] fingerprints live at once: a customer's key stays small.
  sku          n, mean, m2 = running norm of line quantities. TTL = norm TTL.
  judged       n, mean, m2 = the norm an order's line was judged against (sku key + ":j:" +
               order id). TTL = the duplicate window.

Idempotent per order for "c" and "j": an order found already holding its fingerprint, or
already judged for a sku, is a replay (a crash before its decision was recorded): it gets the
history it got the first time and adds nothing.

Reply: one entry per "c" then per "j" op ("s" ops answer nothing) -
  "c": "prev_order \31 prev_channel \31 prev_ts \31 customer_orders \31 customer_max", or
       false when all five are empty (the usual case: nothing to parse)
  "j": "n \31 mean \31 m2" ("0" fields without a norm)
]]
local window, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local judge_min, inline, off = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local min_hist, factor, z = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local nc, nj = tonumber(ARGV[10]), tonumber(ARGV[11])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Strings made once per call, not per order (a number is formatted at every use).
local window_s, keep_s = ARGV[1], (ttl >= window) and ARGV[2] or ARGV[1]
local fp_exp = now + window
local fp_exp_s, norm_exp_s = string.format('%d', fp_exp), string.format('%d', now + ttl)
-- One C call reads a whole value (cheaper than splitting it field by field in Lua).
local HEAD = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\30]*)'
local ENTRY = '^[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)'
  .. '\31([^\31]*)\31([^\31]*)\31([^\31]*)$'
local SKU = '^(.-)\31(.-)\31(.*)$'

local out, no = {}, 0
local a, k = 12, 1
for _ = 1, nc do
  local ck, fk = KEYS[k], KEYS[k + 1]
  local tops, oct = string.match(ARGV[a], '^([^\31]*)\31(.*)$')  -- oct: order, channel, ts
  local raw = redis.call('GET', ck)
  no = no + 1
  if not raw then  -- the usual case, a customer unseen for the norm TTL: nothing to answer
    out[no] = false
    redis.call('SET', ck, '1\31' .. tops .. '\31' .. norm_exp_s .. '\31' .. '0\30'
               .. string.sub(fk, off) .. '\31' .. fp_exp_s .. '\31' .. oct .. '\31\31\31\31\31',
               'PX', keep_s)
  else
    local fp, top = string.sub(fk, off), tonumber(tops)
    local n, m, spill = 0, 0, 0
    local hn, hm, hx, hs = string.match(raw, HEAD)
    if tonumber(hx) > now then n, m = tonumber(hn), tonumber(hm) end
    spill = tonumber(hs)
    local others, no2 = {}, 0  -- the customer's live entries but this fingerprint's
    local cur  -- this fingerprint's live entry
    local own = false  -- ... found in a key of its own
    for e in string.gmatch(raw, '\30([^\30]*)') do
      local efp, ex = string.match(e, '^([^\31]*)\31([^\31]*)')
      if tonumber(ex) > now then
        if efp == fp then cur = e else no2 = no2 + 1; others[no2] = e end
      end
    end
    if not cur and spill > now then
      local got = redis.call('GET', fk)
      if got then cur, own = got, true end
    end
    local o, c, t, po, pc, pt, cn, cm = '', '', '', '', '', '', '', ''
    if cur then o, c, t, po, pc, pt, cn, cm = string.match(cur, ENTRY) end
    if o ~= '' and o == string.match(oct, '^[^\31]*') then
      -- a replay: the history of the first time, nothing added
      if po == '' and cn == '' then out[no] = false
      else out[no] = po .. '\31' .. pc .. '\31' .. pt .. '\31' .. cn .. '\31' .. cm end
    else
      if n > 0 and top >= judge_min then cn, cm = n, m else cn, cm = '', '' end
      if o == '' and cn == '' then out[no] = false
      else out[no] = o .. '\31' .. c .. '\31' .. t .. '\31' .. cn .. '\31' .. cm end
      local entry = fp .. '\31' .. fp_exp_s .. '\31' .. oct .. '\31' .. o .. '\31' .. c .. '\31'
        .. t .. '\31' .. cn .. '\31' .. cm
      if own or no2 >= inline then
        redis.call('SET', fk, entry, 'PX', window_s)
        spill = fp_exp
      else
        no2 = no2 + 1
        others[no2] = entry
      end
      local value = math.min(n + 1, cap) .. '\31' .. math.max(m, top) .. '\31' .. norm_exp_s
        .. '\31' .. string.format('%d', spill)
      if no2 > 0 then value = value .. '\30' .. table.concat(others, '\30') end
      redis.call('SET', ck, value, 'PX', keep_s)
    end
  end
  a, k = a + 1, k + 2
end

local function add(key, nb, meanb, m2b, sn, smean, sm2)
  local na, meana, m2a = tonumber(sn) or 0, tonumber(smean) or 0, tonumber(sm2) or 0
  if na + nb > cap then  -- old lines weigh as (cap - nb): the norm keeps adapting
    local kept = math.max(cap - nb, 0)
    if na > 0 then m2a = m2a * kept / na end
    na = kept
  end
  local n = na + nb
  local delta = meanb - meana
  local mean = meana + delta * nb / n
  local m2 = m2a + m2b + delta * delta * na * nb / n
  redis.call('SET', key, n .. string.format('\31%.17g\31%.17g', mean, m2), 'PX', ttl)
end

for _ = 1, nj do
  local key, jk = KEYS[k], KEYS[k + 1]
  local judged = redis.call('GET', jk)
  if judged then  -- a replay: the same norm as the first time, nothing added
    no = no + 1
    out[no] = judged
  else
    local raw = redis.call('GET', key)
    local sn, smean, sm2
    if raw then sn, smean, sm2 = string.match(raw, SKU) end
    local before = (sn or '0') .. '\31' .. (smean or '0') .. '\31' .. (sm2 or '0')
    no = no + 1
    out[no] = before
    redis.call('SET', jk, before, 'PX', window)
    local qty, n0, mean0 = tonumber(ARGV[a]), tonumber(sn) or 0, tonumber(smean) or 0
    local sd = 0
    if n0 > 1 then sd = math.sqrt((tonumber(sm2) or 0) / (n0 - 1)) end
    if not (n0 >= min_hist and qty > factor * mean0 and qty > mean0 + z * sd) then
      add(key, 1, qty, 0, sn, smean, sm2)
    end
  end
  a, k = a + 1, k + 2
end

while a <= #ARGV do
  local raw = redis.call('GET', KEYS[k])
  local sn, smean, sm2
  if raw then sn, smean, sm2 = string.match(raw, SKU) end
  add(KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), sn, smean, sm2)
  a, k = a + 3, k + 1
end
return out
