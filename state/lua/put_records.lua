--[[
put_records.lua - write a batch of order-book records of ONE bucket, each with the same TTL.

KEYS[1..n]  <prefix>:{o:<bucket>}:<order_id>   (one hash slot: the bucket's)
ARGV[1]     TTL in seconds
ARGV[2..n+1] the records, in KEYS order

Why a script: one command per bucket instead of one SET per order. The router writes a record
for every order it decides, and the client-side cost of a command (packing it, parsing its
reply) was the larger part of that write; here the server does the loop (~1.5 µs per record).

Reply: the number of records written.
]]
local ttl = ARGV[1]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
