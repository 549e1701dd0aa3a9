"""The lane board: lane-health records shared by every routing worker, in Redis.

Lane health is computed in bytewax keyed state (one state per lane key, on whichever worker owns
that key) but every order shard needs all of it. Rather than broadcasting inside the dataflow,
the lane-health step publishes each change to one Redis hash, and every router keeps a local copy
that it refreshes at most every `refresh_ms` (one HGETALL; the board holds at most a few thousand
small records). This also lets other processes (the CLI, a dashboard) read lane state.

Key: `{prefix}:lanes` — a single hash, field = lane key, value = JSON record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson
import redis

from operators.lanes import LaneHealth


class LaneBoard:
    def __init__(self, client: redis.Redis, prefix: str = "fulfil", refresh_ms: int = 250):
        self._client = client
        self._key = f"{prefix}:lanes"
        self._refresh_ms = refresh_ms
        self._cache: list[LaneHealth] = []
        self._loaded_at = -1.0
        self.version = 0  # bumps whenever the cached records change

    def publish(self, records: Iterable[LaneHealth]) -> int:
        mapping = {r.key: orjson.dumps(r.to_dict()) for r in records}
        if mapping:
            self._client.hset(self._key, mapping=mapping)
        return len(mapping)

    def read_all(self) -> list[LaneHealth]:
        raw = self._client.hgetall(self._key)
        return [LaneHealth.from_dict(orjson.loads(v)) for v in raw.values()]

    def current(self) -> list[LaneHealth]:
        """The cached records, refreshed from Redis when older than `refresh_ms`."""
        now = time.monotonic() * 1000.0
        if now - self._loaded_at >= self._refresh_ms:
            fresh = self.read_all()
            if fresh != self._cache:
                self._cache = fresh
                self.version += 1
            self._loaded_at = now
        return self._cache
