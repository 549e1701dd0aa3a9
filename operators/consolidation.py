"""Merged delivery: open orders of one customer to one address become one shipment.

Routing never waits for a possible second order (the first decision goes out at once); instead,
when a customer's second order to the same address is routed within the window to a different
node or carrier service than an earlier open one, this step asks the router to re-plan the new
order onto the earlier one's parcel (`order.reroute_requested` with `join`). The router moves it
only if that plan keeps the new order's promise and costs less than shipping it on its own (one
parcel's fixed costs are saved: the node's handling and the service's base price), taking the
new reservation before releasing the old one like every re-route.

Keyed state per consolidation key (`ship_to`: a hash of customer id + address, so no personal
data sits in state or on the wire): the key's open orders of the last `window_ms`, at most
`MAX_OPEN`. State is dropped when its entries age out, so it stays bounded by the traffic of
one window.

A customer may also ask (order.merge_requested / order.split_requested, handled by the router
in dataflows/router_requests.py): the helpers at the end decide those. An order whose customer
asked it to ship separately carries the reason `SEPARATE` on every decision; `step` then
neither proposes it nor lets others join it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

MAX_OPEN = 16


def ship_to(customer_id: str | None, destination: Mapping[str, Any]) -> str | None:
    """The consolidation key of an order, or None when it has no customer id."""
    if not customer_id:
        return None
    if "lat" in destination and "lng" in destination:
        where = f"{float(destination['lat']):.4f},{float(destination['lng']):.4f}"  # ~10 m
    else:
        where = str(destination.get("postal_code", ""))
    return hashlib.sha1(f"{customer_id}|{where}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Open:
    """One routed, still-open order of a consolidation key."""

    order_id: str
    node_id: str
    carrier: str
    service: str
    decided_at: int


def _shipment(decision: Mapping[str, Any]) -> Open | None:
    shipments = decision.get("shipments") or []
    if decision.get("status") != "routed" or len(shipments) != 1:
        return None  # split orders are left as they are
    s = shipments[0]
    return Open(decision["order_id"], s["node_id"], s["carrier"], s["service"],
                int(decision["timings"]["decided_at"]))


def step(state: list[Open] | None, decision: Mapping[str, Any], window_ms: int
         ) -> tuple[list[Open] | None, dict[str, Any] | None]:
    """`stateful_map` step keyed by `ship_to`: (new state, join request or None).

    A join request names the earliest open order of the key shipping from another node or
    service: {"order_id": new order, "join": {order_id, node_id, carrier, service}}. A decision
    with the reason `SEPARATE` removes its order from the open set and asks nothing.
    """
    entry = _shipment(decision)
    if SEPARATE in (decision.get("reasons") or ()):
        entry = None  # the customer asked it to ship on its own: never merged, never joined
    now = int(decision["timings"]["decided_at"])
    alive = [o for o in (state or []) if o.decided_at >= now - window_ms
             and o.order_id != decision["order_id"]]
    if entry is None:
        return alive or None, None
    request = None
    for o in alive:
        if (o.node_id, o.carrier, o.service) != (entry.node_id, entry.carrier, entry.service):
            request = {"order_id": entry.order_id, "join": {
                "order_id": o.order_id, "node_id": o.node_id, "carrier": o.carrier,
                "service": o.service}}
            break
    if request is None:  # it ships with the others already, or is the first: it may be joined
        alive.append(entry)
    return alive[-MAX_OPEN:] or None, request


# -- customer requests: merge with named orders, or ship separately ---------------------------
# The router (dataflows/router_requests.py) reads the records; these functions decide.

#: Decision reason carried by every decision of an order whose customer asked it to ship on its
#: own: the consolidation flow never proposes to merge it, nor to merge others onto it.
SEPARATE = "ship-separately"
#: Reasons a decision takes from its plan (operators/planner.py); kept when it is relabelled.
PLAN_REASONS = frozenset({"single-node", "split", "on-time", "late-vs-promise", "express",
                          "lane-delay"})


def ships_alone(attrs: Mapping[str, Any]) -> bool:
    """Did the customer ask this order to ship as a parcel of its own (order record attrs)?"""
    return bool(attrs.get("ship_alone"))


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a customer request is refused: the dead letter's code, field, rule and message."""

    code: str
    field: str
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class Parcel:
    """Where an open order ships from: one node, one carrier service, maybe a group."""

    order_id: str
    node_id: str
    carrier: str
    service: str
    group: str | None

    def join(self) -> dict[str, str]:
        """The router's `join` (Pending.join): the group's first order names the group."""
        head = self.group.split(":", 1)[1] if self.group else self.order_id
        return {"order_id": head, "node_id": self.node_id, "carrier": self.carrier,
                "service": self.service}


def parcel(decision: Mapping[str, Any]) -> Parcel | None:
    """The one parcel of a routed decision; None for a split (several parcels) or no plan."""
    shipments = decision.get("shipments") or []
    if decision.get("status") != "routed" or len(shipments) != 1:
        return None
    s = shipments[0]
    return Parcel(decision["order_id"], s["node_id"], s["carrier"], s["service"],
                  decision.get("consolidation_group"))


def order_problem(what: str, status: str | None, is_open: bool, field: str = "order_id",
                  order_id: str = "order") -> Problem | None:
    """Why order `order_id` (its record's `status`; None = unknown) cannot take part in a
    `what` (merge/split), or None. Codes as for address changes: unknown-order for an unknown
    or cancelled order, invalid-state for one not routed or already handed to the carrier."""
    if status is None:
        return Problem("unknown-order", field, "", f"{what}: no such order {order_id!r}")
    if status == "cancelled":
        return Problem("unknown-order", field, "", f"{what}: {order_id!r} is already cancelled")
    if status != "routed":
        return Problem("invalid-state", field, "routed",
                       f"{what}: {order_id!r} is {status}, not routed")
    if not is_open:
        return Problem("invalid-state", field, "open",
                       f"{what}: {order_id!r} is already shipped (picked up by the carrier)")
    return None


def merge_targets(order_id: str, named: list[str]) -> list[tuple[int, str]]:
    """(index in `with`, order id) of the other orders a merge names, first mention only."""
    seen = {order_id}
    out = []
    for i, oid in enumerate(named):
        if oid not in seen:
            seen.add(oid)
            out.append((i, oid))
    return out


def relabel(decision: Mapping[str, Any], version: int, event: Mapping[str, Any],
            received_ms: int, now_ms: int, reasons: list[str], group: str | None) -> bytes:
    """A new version of a routed decision with the same plan (same shipments, same stock held)
    but another consolidation group (None: none) and the request's reasons: what a split, or a
    merge onto the parcel the order already ships from, changes. No re-planning, nothing moves."""
    d = {k: v for k, v in decision.items() if k != "consolidation_group"}
    d.update(decision_id=f"{decision['order_id']}:v{version}", version=version,
             event_id=event["event_id"], event_type=event["type"],
             reasons=[*reasons, *(r for r in decision.get("reasons", ()) if r in PLAN_REASONS)],
             timings={"event_time": int(event["occurred_at"]), "received_at": received_ms,
                      "decided_at": now_ms})
    if group is not None:
        d["consolidation_group"] = group
    return orjson.dumps(d)
