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

from state.offsets import PartitionOffsets


class OffsetStore(PartitionOffsets):
    """Next offsets of one (bridge, destination) pair."""

    def __init__(self, client: Any, prefix: str, bridge: str, destination: str) -> None:
        super().__init__(client, f"{prefix}:alert-bridge:{bridge}:{destination}")

    def commit_one(self, topic: str, partition: int, next_offset: int) -> None:
        """Record that everything before `next_offset` is delivered (or deliberately skipped)."""
        self.commit({(topic, partition): next_offset})
