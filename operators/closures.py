"""Node closures: which nodes a plan made now must avoid, and which open orders to move.

A `node.closure` (carrier-status topic, keyed by node) says a warehouse or store stops handing
parcels to carriers from `valid_from` (absent: now) until `valid_until` (absent: until the next
event for the node); it may arrive up to 48 h ahead. It is kept like lane health: a keyed-state
step per node (`update_closure`, latest event by event time wins), published to a board in Redis
that every router reads (state/closures.py).

What "avoid" means follows the node's own clock: an order released to a node now is picked up
at `ready_ms(now)` (before the local cut-off, after the handling time; else the next morning).
A node is closed for that order when the closure overlaps [now, pickup]: the parcel would be
stuck inside. Routing expresses it with the same per-order node mask business rules use
(`Outcome.node_ok`), so the scoring kernel's features do not change. Open orders already held at
the node are re-planned the same way when the closure is announced: the pickup their decision
expected (`ready_ms(decided_at)`, or now if overdue) falls in the closure -> a re-route request.
Pure: the flow steps do the Redis reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson

from operators.candidate_kernel import ready_ms
from operators.lanes import FORECAST_HORIZON_MS
from operators.network import Network
from operators.orders import OrderRecord
from operators.rules import Outcome
from schemas.enums import DecisionStatus, OrderEventType

#: The re-route reason of orders moved off a closing node (decision reasons, metrics).
REASON = "node-closure"
#: The unroutable reason when only closed nodes could have served an order.
CLOSED = "node-closed"


@dataclass(frozen=True, slots=True)
class NodeClosure:
    """The current closure record of one node (`key` = node id), as kept and published."""

    key: str
    status: str  # closed | open
    reason: str
    updated_at: int  # event time of the event that set it
    valid_from: int | None  # None: from now
    valid_until: int | None  # None: until the next event

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "reason": self.reason,
                "updated_at": self.updated_at, "valid_from": self.valid_from,
                "valid_until": self.valid_until}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeClosure:
        def ms(v: Any) -> int | None:
            return None if v is None else int(v)

        return cls(str(d["key"]), str(d["status"]), str(d.get("reason", "")),
                   int(d["updated_at"]), ms(d.get("valid_from")), ms(d.get("valid_until")))


def closure_key(event: Mapping[str, Any]) -> str:
    """The keyed-state key of a `node.closure` event: its node."""
    return str(event["node_id"])


def update_closure(state: NodeClosure | None, event: Mapping[str, Any]
                   ) -> tuple[NodeClosure | None, NodeClosure | None]:
    """Keyed-state step per node: (new state, record to publish or None). An event older than
    the state (event time) or equal to it changes and publishes nothing: replays are harmless."""
    occurred = int(event["occurred_at"])
    if state is not None and occurred < state.updated_at:
        return state, None
    new = NodeClosure(closure_key(event), str(event.get("status") or "closed"),
                      str(event.get("reason", "")), occurred, event.get("valid_from"),
                      event.get("valid_until"))
    if new == state:
        return state, None
    return new, new


def overlaps(c: NodeClosure, start_ms: float, end_ms: float) -> bool:
    """Is the node closed at some instant of [start, end] (a parcel's time at the node)?"""
    if c.status != "closed":
        return False
    if c.valid_until is not None and c.valid_until <= start_ms:
        return False
    return c.valid_from is None or c.valid_from <= end_ms


def announced(c: NodeClosure, now_ms: int, horizon_ms: int = FORECAST_HORIZON_MS) -> bool:
    """Does a closure record call for action now (in force, or forecast within the horizon)?"""
    return overlaps(c, now_ms, now_ms + horizon_ms)


@dataclass(frozen=True, slots=True)
class NodeClock:
    """What `ready_ms` needs per node (from `operators.candidates.NetworkArrays`)."""

    index: Mapping[str, int]
    utc_offset: Sequence[float]
    cutoff_hour: Sequence[float]
    handling_hours: Sequence[float]

    def pickup(self, k: int, released_ms: int) -> float:
        return float(ready_ms(released_ms, float(self.utc_offset[k]), float(self.cutoff_hour[k]),
                              float(self.handling_hours[k])))


def node_clock(network: Network) -> NodeClock:
    """The `NodeClock` of a network (its nodes' time zone, cut-off and handling time)."""
    return NodeClock(network.node_index, network.node_utc_offset.tolist(),
                     network.node_cutoff_hour.tolist(), network.node_handling_hours.tolist())


def closed_mask(records: Iterable[NodeClosure], clock: NodeClock, now_ms: int
                ) -> np.ndarray | None:
    """bool[N]: the nodes an order released now must avoid, or None when none is closed (the
    common case: no mask, no cost). Records naming nodes this network lacks are ignored."""
    mask: np.ndarray | None = None
    for c in records:
        k = clock.index.get(c.key)
        if k is None or not overlaps(c, now_ms, clock.pickup(k, now_ms)):
            continue
        if mask is None:
            mask = np.zeros(len(clock.utc_offset), dtype=np.bool_)
        mask[k] = True
    return mask


def avoid(outcome: Outcome, closed: np.ndarray) -> Outcome:
    """The rules' outcome narrowed to open nodes (the rules' own node limits still apply)."""
    node_ok = ~closed if outcome.node_ok is None else outcome.node_ok & ~closed
    return replace(outcome, node_ok=node_ok)


def endangered(c: NodeClosure, records: Iterable[tuple[str, OrderRecord]], clock: NodeClock,
               now_ms: int) -> list[str]:
    """Order ids, of (node, record) pairs of open reservations, whose parcel at the closing
    node would be picked up inside the closure: expected pickup = `ready_ms(decided_at)`, or
    now when that is past (the parcel is still there)."""
    k = clock.index.get(c.key)
    if k is None:
        return []
    out: list[str] = []
    for node, rec in records:
        if node != c.key or rec.status != DecisionStatus.ROUTED or node not in rec.reservations:
            continue
        decided = int(orjson.loads(rec.decision)["timings"]["decided_at"])
        if overlaps(c, now_ms, max(float(now_ms), clock.pickup(k, decided))):
            out.append(rec.order.order_id)
    return list(dict.fromkeys(out))


def reroute_request(order_id: str, c: NodeClosure, now_ms: int) -> dict[str, Any]:
    """The `order.reroute_requested` for an order held at a closing node; its id is fixed by
    (closure record, order), so a replayed closure asks once."""
    return {"type": OrderEventType.REROUTE_REQUESTED.value,
            "event_id": f"closure:{c.key}:{c.updated_at}:{order_id}",
            "order_id": order_id, "occurred_at": now_ms, "reason": REASON}
