"""The order book: the latest decision of every open order, in Redis.

Why it exists: routing must be idempotent across crashes and replays. bytewax recovery replays up
to one snapshot interval of input after a restart, and a replayed order may meet different stock
than the first time. If it were simply routed again it could reserve at a second node while its
first reservation still stands. So the router writes the order's record (its planned decision and
the order data needed to re-route it later) *before* reserving, and on every event first reads the
record: a replayed event re-applies exactly the recorded plan (reservations are idempotent by
order id) and re-emits the recorded decision, byte for byte.

Key layout (Redis Cluster safe): `{prefix}:{o:<bucket>}:<order_id>`, a string with a TTL, where
`bucket = crc32(order_id) % BUCKETS`. All keys of one bucket share a hash slot, so a batch of
orders is read with one MGET and written with one Lua call per bucket (a handful of commands per
batch instead of one per order), while the buckets still spread over the cluster's shards.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from importlib import resources

import redis

BUCKETS = 32


def _bucket(order_id: str) -> int:
    return zlib.crc32(order_id.encode()) % BUCKETS


class OrderBook:
    """Batch get/put of order records (opaque bytes) with a retention TTL."""

    def __init__(self, client: redis.Redis, prefix: str = "fulfil", ttl_s: int = 14 * 86400):
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_s
        self._put_src = resources.files("state").joinpath("lua/put_records.lua").read_text()
        self._put_sha = client.script_load(self._put_src)

    def key(self, order_id: str) -> str:
        return f"{self._prefix}:{{o:{_bucket(order_id)}}}:{order_id}"

    def get_many(self, order_ids: Sequence[str]) -> dict[str, bytes]:
        """Records of the orders that have one; one MGET per bucket, one round trip."""
        groups: dict[int, list[str]] = defaultdict(list)
        for oid in dict.fromkeys(order_ids):
            groups[_bucket(oid)].append(oid)
        pipe = self._client.pipeline(transaction=False)
        order = []
        for oids in groups.values():
            pipe.mget([self.key(o) for o in oids])
            order.append(oids)
        found: dict[str, bytes] = {}
        for oids, values in zip(order, pipe.execute(), strict=True):
            for oid, value in zip(oids, values, strict=True):
                if value is not None:
                    found[oid] = value
        return found

    def put_many(self, records: Mapping[str, bytes]) -> None:
        """Write records (order_id -> bytes) with the TTL; one Lua call per bucket."""
        if not records:
            return
        groups: dict[int, list[str]] = defaultdict(list)
        for oid in records:
            groups[_bucket(oid)].append(oid)
        calls = []
        for oids in groups.values():
            keys = [self.key(o) for o in oids]
            calls.append((keys, [self._ttl, *(records[o] for o in oids)]))
        for attempt in (0, 1):
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(self._put_sha, len(keys), *keys, *args)
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                # Redis restarted (scripts are not persisted): load again, retry once.
                if attempt:
                    raise
                self._put_sha = self._client.script_load(self._put_src)

    def delete(self, order_ids: Sequence[str]) -> None:
        for oid in order_ids:
            self._client.delete(self.key(oid))
