"""Which open orders a lane disruption endangers, and the re-route requests for them.

When a lane turns delayed or out (now, or forecast within the routing horizon), orders already
routed over it but not yet handed to the carrier are still movable: their stock is only
reserved. This module decides, from the lane record and the orders' records, which of them to
re-plan; the router then moves each one only if a different feasible plan exists (see
`dataflows/router.py`, `order.reroute_requested`). Pure: the flow step does the Redis reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from operators.lanes import WILDCARD, LaneHealth
from operators.network import Network
from operators.orders import OrderRecord
from schemas.enums import DecisionStatus, OrderEventType

#: At most this many requests per lane change: a carrier-wide outage on a busy network should
#: re-plan in waves of new events, not flood one batch (the rest follow as the lane stays bad).
MAX_REQUESTS = 20_000


def nodes_on_origin(health: LaneHealth, network: Network) -> list[str]:
    """The nodes whose parcels can use the lane (its origin region, or every node)."""
    origin = health.key.split("|")[2]
    return [n.id for n in network.nodes if origin in (WILDCARD, n.region)]


def endangered(health: LaneHealth, records: Iterable[tuple[str, OrderRecord]],
               network: Network) -> list[str]:
    """Order ids (from (open reservation's node, record) pairs) whose shipment from that node
    uses the lane: same carrier (and service, if given), origin and destination region."""
    carrier, service, origin, dest = health.key.split("|")
    out: list[str] = []
    for node, rec in records:
        if rec.status != DecisionStatus.ROUTED or node not in rec.reservations:
            continue
        if origin not in (WILDCARD, network.nodes[network.node_index[node]].region):
            continue
        if dest != WILDCARD:
            where = network.locate(rec.order.destination)
            if where is None or network.regions[where[2]] != dest:
                continue
        if _uses(rec.decision, node, carrier, service):
            out.append(rec.order.order_id)
    return list(dict.fromkeys(out))[:MAX_REQUESTS]


def _uses(decision: bytes, node: str, carrier: str, service: str) -> bool:
    for s in orjson.loads(decision)["shipments"]:
        if s["node_id"] == node and s["carrier"] == carrier and service in (WILDCARD,
                                                                           s["service"]):
            return True
    return False


def reroute_request(order_id: str, health: LaneHealth, now_ms: int) -> dict[str, Any]:
    """The `order.reroute_requested` event; its id is fixed by (lane state, order), so the
    same disruption replayed asks once."""
    return {
        "type": OrderEventType.REROUTE_REQUESTED.value,
        "event_id": f"reroute:{health.key}:{health.updated_at}:{order_id}",
        "order_id": order_id,
        "occurred_at": now_ms,
        "reason": f"lane-{health.status}",
    }


def order_of(reservation_id: str) -> str:
    """The order id of a reservation id (`operators.orders.reservation_id`; legacy: itself)."""
    head, sep, tail = reservation_id.rpartition("#")
    return head if sep and tail.isdigit() else reservation_id


def open_records(open_by_node: Mapping[str, list[str]], raw: Mapping[str, bytes]
                 ) -> list[tuple[str, OrderRecord]]:
    """(node, record) for every open reservation whose order the book still knows and whose
    record holds exactly that reservation (not a stale one of an earlier version)."""
    out: list[tuple[str, OrderRecord]] = []
    for node, rids in open_by_node.items():
        for rid in rids:
            data = raw.get(order_of(rid))
            if data is None:
                continue
            rec = OrderRecord.loads(data)
            if rec.resv_id == rid:
                out.append((node, rec))
    return out
