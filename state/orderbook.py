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
orders is read with one MGET per bucket (a handful of commands per batch instead of one per
order), while the buckets still spread over the cluster's shards. Writes are one
`put_records.lua` call per bucket (SET ... EX for each record).

The book builds commands and hands them to the ledger's executor (`Ledger.execute`), so the
router can put the book's reads and the ledger's reads in one round trip, and likewise the
writes; `get_many` / `put_many` are the stand-alone forms.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from state.ledger import Ledger

#: Buckets spread the book over a cluster's shards; each costs one command per batch, so keep
#: it small. Changing it orphans existing records (they expire by TTL): set it once.
BUCKETS = 8
#: Records per script call: far below Lua's unpack/argument limits, small enough that one call
#: never blocks Redis for long.
CHUNK = 500

Commands = list[tuple[Any, ...]]


def _bucket(order_id: str) -> int:
    return zlib.crc32(order_id.encode()) % BUCKETS


class OrderBook:
    """Batch get/put of order records (opaque bytes) with a retention TTL."""

    def __init__(self, ledger: Ledger, prefix: str = "fulfil", ttl_s: int = 14 * 86400):
        self._ledger = ledger
        self._prefix = prefix
        self._ttl = ttl_s

    def key(self, order_id: str) -> str:
        return f"{self._prefix}:{{o:{_bucket(order_id)}}}:{order_id}"

    def get_commands(self, order_ids: Sequence[str]
                     ) -> tuple[Commands, Callable[[list[Any]], dict[str, bytes]]]:
        """One MGET per bucket; parse -> {order_id: record} for the orders that have one."""
        groups: dict[int, list[str]] = defaultdict(list)
        for oid in dict.fromkeys(order_ids):
            groups[_bucket(oid)].append(oid)
        order = list(groups.values())
        commands: Commands = [("MGET", *(self.key(o) for o in oids)) for oids in order]

        def parse(replies: list[Any]) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for oids, values in zip(order, replies, strict=True):
                for oid, value in zip(oids, values, strict=True):
                    if value is not None:
                        found[oid] = value
            return found

        return commands, parse

    def put_commands(self, records: Mapping[str, bytes]) -> Commands:
        """One `put_records.lua` call per bucket (at most CHUNK records each).

        Measured against one plain `SET key value EX ttl` per record (benchmarks/router_bench.py):
        the script costs Redis ~1.1 µs more per record, but saves the router ~2.5 µs of
        client-side packing and reply parsing per record, and the router is the bottleneck.
        """
        groups: dict[int, list[str]] = defaultdict(list)
        for oid in records:
            groups[_bucket(oid)].append(oid)
        sha = self._ledger.sha("put_records")
        commands: Commands = []
        for oids in groups.values():
            for start in range(0, len(oids), CHUNK):
                part = oids[start:start + CHUNK]
                commands.append(("EVALSHA", sha, len(part), *(self.key(o) for o in part),
                                 self._ttl, *(records[o] for o in part)))
        return commands

    @property
    def ledger(self) -> Ledger:
        """The ledger whose client (and round trips) the book shares."""
        return self._ledger

    def get_many(self, order_ids: Sequence[str]) -> dict[str, bytes]:
        commands, parse = self.get_commands(order_ids)
        return parse(self._ledger.execute(commands))

    def put_many(self, records: Mapping[str, bytes]) -> None:
        if records:
            self._ledger.execute(self.put_commands(records))
