"""Where the alert bridge is in the alerts topic, per destination: committed only after delivery.

Why not Kafka's own consumer-group commits: every destination advances on its own (a receiver
that is down must not hold back the others, nor be skipped), the embedded broker's group joins
take ~20 s, and the bridge's state then lives with the rest of fulfil's state. One Redis hash per
bridge and destination, field `topic#partition`, value the next offset to deliver. Each
destination has exactly one writer (its worker thread), so a plain HSET is enough.

Key: `{prefix}:alert-bridge:{bridge}:{destination}`.
"""

from __future__ import annotations

from typing import Any


class OffsetStore:
    """Next offsets of one (bridge, destination) pair."""

    def __init__(self, client: Any, prefix: str, bridge: str, destination: str) -> None:
        self._client = client
        self.key = f"{prefix}:alert-bridge:{bridge}:{destination}"

    def load(self) -> dict[tuple[str, int], int]:
        """Every stored (topic, partition) -> next offset."""
        out: dict[tuple[str, int], int] = {}
        for field, value in self._client.hgetall(self.key).items():
            topic, _, part = _text(field).rpartition("#")
            out[(topic, int(part))] = int(value)
        return out

    def commit(self, topic: str, partition: int, next_offset: int) -> None:
        """Record that everything before `next_offset` is delivered (or deliberately skipped)."""
        self._client.hset(self.key, f"{topic}#{partition}", next_offset)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
