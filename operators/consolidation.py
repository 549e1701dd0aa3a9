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
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    service: {"order_id": new order, "join": {order_id, node_id, carrier, service}}.
    """
    entry = _shipment(decision)
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
