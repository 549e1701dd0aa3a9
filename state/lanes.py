"""The lane board: lane-health records shared by every routing worker, in Redis.

Lane health is computed in bytewax keyed state (one state per lane key, on whichever worker owns
that key) but every order shard needs all of it. Rather than broadcasting inside the dataflow,
the lane-health step publishes each change to one Redis hash, and every router keeps a local copy
that it refreshes at most every `refresh_ms` (one HGETALL; the board holds at most a few thousand
small records). This also lets other processes (the CLI, a dashboard) read lane state.

Key: `{prefix}:lanes` — a single hash, field = lane key, value = JSON record.

The same mechanism carries the delivery-time model's online lane updates (`transit_board`,
`{prefix}:transit`, field = "origin|dest|carrier/service", value = a `LaneQuantiles` record):
computed in keyed state from delivered shipments, needed by every router.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import redis

from operators.lanes import LaneHealth
from operators.model_online import LaneQuantiles


class LaneBoard:
    """A hash of JSON records keyed by `record.key`, with a local copy refreshed at most every
    `refresh_ms`; `parse` turns a stored dict back into a record."""

    def __init__(self, client: redis.Redis, prefix: str = "fulfil", refresh_ms: int = 250,
                 name: str = "lanes",
                 parse: Callable[[Mapping[str, Any]], Any] = LaneHealth.from_dict) -> None:
        self._client = client
        self._key = f"{prefix}:{name}"
        self._parse = parse
        self._refresh_ms = refresh_ms
        self._cache: list[Any] = []
        self._loaded_at = -1.0
        self.version = 0  # bumps whenever the cached records change

    def publish(self, records: Iterable[Any]) -> int:
        mapping = {r.key: orjson.dumps(r.to_dict()) for r in records}
        if mapping:
            self._client.hset(self._key, mapping=mapping)
        return len(mapping)

    def read_all(self) -> list[Any]:
        raw = self._client.hgetall(self._key)
        return [self._parse(orjson.loads(v)) for v in raw.values()]

    def current(self) -> list[Any]:
        """The cached records, refreshed from Redis when older than `refresh_ms`."""
        now = time.monotonic() * 1000.0
        if now - self._loaded_at >= self._refresh_ms:
            fresh = self.read_all()
            if fresh != self._cache:
                self._cache = fresh
                self.version += 1
            self._loaded_at = now
        return self._cache


def _lane_quantiles(d: Mapping[str, Any]) -> LaneQuantiles:
    return LaneQuantiles(str(d["key"]), tuple(d["quantiles"]), tuple(d["probs"]),
                         d.get("late_rate"), float(d["weight"]), int(d["events"]),
                         int(d["updated_at"]))


def transit_board(client: redis.Redis, prefix: str = "fulfil", refresh_ms: int = 250
                  ) -> LaneBoard:
    """The board of online lane transit updates (see the module docstring)."""
    return LaneBoard(client, prefix, refresh_ms, "transit", _lane_quantiles)
