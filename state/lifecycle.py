"""The order lifecycle read model in Redis: one capped, expiring timeline per order.

Key layout (Redis Cluster safe: both keys of an order share the hash tag `{o:<order_id>}`, so they
live on one shard, while orders spread over all shards):

    {prefix}:life:{o:<order_id>}     sorted set: member = Entry.member() bytes, score = at_ms
    {prefix}:life:{o:<order_id>}:d   sorted set: member = DecisionSummary.member(), score = version

Why sorted sets and not a list or a stream: the tracking flow reads several topics whose
partitions are consumed independently, so an order's decision may arrive before the order event
that caused it (always so when replaying from the start). A sorted set keeps the timeline in event
time whatever the arrival order. And `ZADD NX` makes a replay free: an entry's member is derived
from its message alone (see operators/lifecycle.py), so the same message read again is the same
member and adds nothing (NX also keeps the first score).

Bounds: `ZREMRANGEBYRANK 0 -(max+1)` keeps the newest `max_entries` entries per order (and the
last `MAX_DECISIONS` decision versions), and every write refreshes an `EXPIRE` of `ttl_s`, so an
order's trace lives `ttl_s` after its last event and never grows without limit. Decisions are
kept apart from the timeline so a flood of alerts or tracking updates can never trim away the
answer to "what was decided".

Per batch the whole write is one pipeline (non-transactional: on a cluster redis-py splits it per
shard), a few commands per order touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from operators.lifecycle import DecisionSummary, Entry

#: Decision versions kept per order (a re-route or cancel adds one; customer service needs the
#: current one, and a few before it explain how it got there).
MAX_DECISIONS = 16


class Written(NamedTuple):
    """What one batch write did: entries new to their timeline, and entries trimmed by the cap.

    A replay adds nothing — except that an entry the cap had already trimmed is re-added and
    trimmed again at once (`added == trimmed` for it); the timeline is unchanged either way.
    """

    added: int
    trimmed: int


class LifecycleStore:
    """Batch writes and per-order reads of the lifecycle read model."""

    def __init__(self, client: Any, prefix: str = "fulfil", ttl_s: int = 14 * 86400,
                 max_entries: int = 256) -> None:
        if ttl_s < 1 or max_entries < 1:
            raise ValueError(f"LifecycleStore: ttl_s and max_entries must be >= 1; got "
                             f"{ttl_s}, {max_entries}")
        self._client = client
        self._prefix = prefix
        self.ttl_s = ttl_s
        self.max_entries = max_entries

    def timeline_key(self, order_id: str) -> str:
        return f"{self._prefix}:life:{{o:{order_id}}}"

    def decisions_key(self, order_id: str) -> str:
        return f"{self.timeline_key(order_id)}:d"

    def write(self, entries: Iterable[Entry], decisions: Iterable[DecisionSummary] = ()
              ) -> Written:
        """Store a batch in one pipeline (see `Written` for what it returns)."""
        by_order: dict[str, dict[bytes, int]] = defaultdict(dict)
        for e in entries:
            by_order[e.order_id].setdefault(e.member(), e.at_ms)
        dec_by_order: dict[str, dict[bytes, int]] = defaultdict(dict)
        for d in decisions:
            dec_by_order[d.order_id][d.member()] = d.version
        if not by_order and not dec_by_order:
            return Written(0, 0)
        pipe = self._client.pipeline(transaction=False)
        counted: list[int] = []  # positions of the timelines' ZADD replies (trims follow)
        n = 0
        for oid, members in by_order.items():
            key = self.timeline_key(oid)
            pipe.zadd(key, members, nx=True)
            counted.append(n)
            pipe.zremrangebyrank(key, 0, -(self.max_entries + 1))
            pipe.expire(key, self.ttl_s)
            n += 3
        for oid, members in dec_by_order.items():
            key = self.decisions_key(oid)
            pipe.zadd(key, members, nx=True)
            pipe.zremrangebyrank(key, 0, -(MAX_DECISIONS + 1))
            pipe.expire(key, self.ttl_s)
        replies = pipe.execute()
        return Written(sum(int(replies[i]) for i in counted),
                       sum(int(replies[i + 1]) for i in counted))

    def read(self, order_id: str) -> tuple[list[Entry], list[DecisionSummary]]:
        """The order's entries (unordered) and decision summaries; both empty when unknown.

        Members that cannot be read back (never written by this code) are left out.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.zrange(self.timeline_key(order_id), 0, -1, withscores=True)
        pipe.zrange(self.decisions_key(order_id), 0, -1, withscores=True)
        timeline, decisions = pipe.execute()
        entries = [e for member, score in timeline
                   if (e := Entry.from_member(order_id, int(score), member)) is not None]
        summaries = []
        for member, score in decisions:
            fields = _loads(member)
            if fields is not None:
                summaries.append(DecisionSummary(order_id, int(score), fields))
        return entries, summaries


def _loads(member: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(member)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
