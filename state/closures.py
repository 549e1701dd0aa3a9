"""The closure board: node closures shared by every routing worker, in Redis.

Like the lane board (state/lanes.py, the same class): closures are computed in keyed state per
node on whichever worker owns that node, but every router needs all of them, so each change is
published to one hash that every router reads at most every `refresh_ms`.

Key: `{prefix}:closures` — a single hash, field = node id, value = JSON `NodeClosure` record.
"""

from __future__ import annotations

import redis

from operators.closures import NodeClosure
from state.lanes import LaneBoard


def closure_board(client: redis.Redis, prefix: str = "fulfil", refresh_ms: int = 250
                  ) -> LaneBoard:
    """The board of node closures (see the module docstring)."""
    return LaneBoard(client, prefix, refresh_ms, "closures", NodeClosure.from_dict)
