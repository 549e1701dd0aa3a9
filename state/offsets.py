"""Consumer progress kept in Redis: the next offset per (topic, partition), one hash per reader.

Why not Kafka's consumer-group commits: readers that must commit only after a destination
acknowledged (the alert bridge per destination, the edge links on the receiving side) advance
independently, the embedded broker's group joins take ~20 s, and the progress then lives with
the rest of fulfil's state. Field `topic#partition`, value the next offset to read; one writer
per hash, so plain HSETs suffice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PartitionOffsets:
    """Next offsets of one reader, in the hash `key`."""

    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self.key = key

    def load(self) -> dict[tuple[str, int], int]:
        """Every stored (topic, partition) -> next offset."""
        out: dict[tuple[str, int], int] = {}
        for field, value in self._client.hgetall(self.key).items():
            text = field.decode() if isinstance(field, bytes) else field
            topic, _, part = text.rpartition("#")
            out[(topic, int(part))] = int(value)
        return out

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Record that everything before these offsets is done (delivered or skipped)."""
        if offsets:
            self._client.hset(self.key, mapping={f"{t}#{p}": o for (t, p), o in offsets.items()})

    def reset(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Forget (or set) the progress: the reader starts again from there."""
        self._client.delete(self.key)
        if offsets:
            self.commit(offsets)
