--[[
edge_prune.lua - forget the link state of orders that hold nothing at ONE node any more, once
their state is older than the retention horizon (docs/edge.md#bounded-link-state).

Why it is safe: the link state (KEYS[2], written by edge_apply.lua) exists to recognise effects
that arrive again (a link re-sending the batch in flight, a shipment racing its reservation). A
link can only re-send records its source topics still hold, so a terminal state older than those
topics' retention (the caller's cutoff) can never be asked about again. States of orders that
still hold stock here are never in the index, so they are never pruned: the hash stays bounded
by the open orders plus what turned terminal within the horizon.

KEYS[1]  <prefix>:{n:NODE}:resv     hash: <order_id> -> reservation record
KEYS[2]  <prefix>:{n:NODE}:edge     hash: <order_id> -> link state
KEYS[3]  <prefix>:{n:NODE}:edge:t   sorted set: <order_id> -> when it became terminal (ms)
ARGV[1]  cutoff (ms epoch): states indexed at or before it are pruned
ARGV[2]  at most this many per call (keeps one script call short)

Returns the number of link-state fields removed.
]]
local resv, edge, index = KEYS[1], KEYS[2], KEYS[3]
local old = redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local pruned = 0
for _, order in ipairs(old) do
  redis.call('ZREM', index, order)
  -- a reservation here means the order holds stock again: keep its state (defensive; such an
  -- order is unindexed when its reservation is written)
  if redis.call('HEXISTS', resv, order) == 0 then
    pruned = pruned + redis.call('HDEL', edge, order)
  end
end
return pruned
