"""What the edge links move: consumed records, records to send, ledger effects, and the few
events the links write themselves (a handoff's cancel, a claim's re-route, an oversell alert).

Identity across the link. Every record a link sends carries two headers:

* `fulfil-origin`: `centre` or `edge:<site>` — where the event was born. A link never sends an
  event back to the side it came from (no echo loops between the two inventory topics).
* `fulfil-src`: `<origin>|<topic>#<partition>@<offset>` of the source record — stable across
  retries and restarts, so whoever keeps a copy can drop a duplicate by it.

Everything built here is deterministic (ids from the inputs, times from the inputs), so a link
that retries a batch re-sends byte-identical records, which is what lets the receivers dedupe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from schemas.enums import AlertSeverity, AlertStatus, OrderEventType
from schemas.topics import edge_copy_topic

ORIGIN = "fulfil-origin"
SOURCE = "fulfil-src"
CENTRE = "centre"
#: Event ids of the cancels a handoff writes on the edge's orders topic start with this.
HANDOFF = "handoff"
#: Event ids of the re-routes a rejected claim asks the centre for start with this ...
REJECTED = "edge-rejected"
#: ... and of the second, clean re-plan when the first ended in `lost-races` (docs/edge.md).
REPLAN = "edge-replan"
#: The alert type of a stock conflict between an edge and the centre (schemas/json/alert).
OVERSELL = "edge-oversell"

Headers = tuple[tuple[str, bytes], ...]


def edge_origin(site: str) -> str:
    return f"edge:{site}"


def mirror_topic(site: str, name: str) -> str:
    """The centre's copy of an edge topic: `edge.<site>.<name>` (a short name; prefix it)."""
    return edge_copy_topic(site, name)


class LinkMsg(NamedTuple):
    """One consumed record, as plain data (`topic` is the registry's short name)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace") if v is not None else None
        return None

    def src(self, origin: str) -> str:
        return f"{origin}|{self.topic}#{self.partition}@{self.offset}"


class Send(NamedTuple):
    """One record to produce on the destination side (`topic`: a short name)."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class EdgeEffect:
    """One ledger effect at one node: `reserve` (the order, at `version`, holds `lines` here;
    none: it holds nothing here) or `ship` (its parcel left; consume what it holds here)."""

    node_id: str
    order_id: str
    version: int = 0
    lines: tuple[tuple[str, int], ...] = ()
    day: str = "19700101"  # UTC day the reservation counts towards (from the decision's time)
    op: str = "reserve"


@dataclass
class Routed:
    """What a link does with a batch: records to send, effects to apply, dead letters."""

    sends: list[Send] = field(default_factory=list)
    effects: list[EdgeEffect] = field(default_factory=list)
    dead: list[Send] = field(default_factory=list)
    #: the decision behind each claim effect (downlink), to re-route it if the edge rejects it
    claims: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: central decisions that ended a rejected claim's first re-route in `lost-races` (downlink)
    replans: list[dict[str, Any]] = field(default_factory=list)
    #: approval verdicts published centrally, each with the record that would carry it to the
    #: edge's orders topic; the downlink forwards those of orders the edge holds (downlink)
    approvals: list[tuple[dict[str, Any], Send]] = field(default_factory=list)

    def extend(self, other: Routed) -> None:
        self.sends += other.sends
        self.effects += other.effects
        self.dead += other.dead
        self.claims.update(other.claims)
        self.replans += other.replans
        self.approvals += other.approvals


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


def decision_effects(decision: dict[str, Any], nodes: frozenset[str]) -> list[EdgeEffect]:
    """The ledger effects of one decision at the given nodes.

    A routed decision holds its shipments' lines (summed per sku) at those of `nodes` it ships
    from; any later version (a re-route, a cancel) holds nothing at the others, which releases
    what an earlier version held there. A first version that ships from none of `nodes` has no
    effect at all.
    """
    oid, version = decision["order_id"], int(decision["version"])
    day = utc_day(int((decision.get("timings") or {}).get("decided_at") or 0))
    held: dict[str, dict[str, int]] = {}
    if decision["status"] == "routed":
        for shipment in decision["shipments"]:
            if shipment["node_id"] in nodes:
                lines = held.setdefault(shipment["node_id"], {})
                for line in shipment["lines"]:
                    lines[line["sku"]] = lines.get(line["sku"], 0) + int(line["qty"])
    out = [EdgeEffect(node, oid, version, tuple(lines.items()), day)
           for node, lines in held.items()]
    if version > 1:
        out += [EdgeEffect(node, oid, version, (), day) for node in sorted(nodes - held.keys())]
    return out


def handoff_cancel(order_id: str, site: str, occurred_at: int) -> dict[str, Any]:
    """The cancel a handoff writes on the edge's own orders topic: the order now belongs to the
    centre, so later events for it at the edge are set aside there (and forwarded) instead of
    being routed locally a second time."""
    return {"type": OrderEventType.CANCELLED, "event_id": f"{HANDOFF}:{order_id}",
            "order_id": order_id, "occurred_at": occurred_at,
            "reason": f"handed off to the centre by edge site {site}"}


def reroute_event(decision: dict[str, Any], destination: dict[str, Any], site: str,
                  node: str = "", sku: str = "", *, prefix: str = REJECTED) -> dict[str, Any]:
    """An event asking the centre to route a rejected claim's order again.

    The routing flow re-plans an order on `order.address_changed` (as version n+1, against fresh
    stock); the destination is unchanged and the extra fields say why. Its id is fixed by the
    decision it answers, so a resent one is a replay for the router. The router credits an order
    its own held units when it re-plans, so the first re-route (`edge-rejected:`) usually ends
    `unroutable: lost-races` and releases the refused claim; the second (`edge-replan:`, sent
    when that decision comes back) plans with nothing held, on the stock that really is left.
    """
    event = {"type": OrderEventType.ADDRESS_CHANGED,
             "event_id": f"{prefix}:{site}:{decision['decision_id']}",
             "order_id": decision["order_id"],
             "occurred_at": int((decision.get("timings") or {}).get("decided_at") or 0),
             "destination": destination, "reason": "edge-claim-rejected", "edge_site": site}
    if node:
        event.update(edge_node=node, edge_sku=sku)
    return event


def oversell_alert(site: str, node: str, sku: str, decision: dict[str, Any], available: int,
                   now_ms: int) -> dict[str, Any]:
    """An `edge-oversell` alert: the centre allocated stock of an edge node that the edge had
    sold (or allocated) meanwhile; the edge's sale stands and the centre's order is re-routed."""
    at = int((decision.get("timings") or {}).get("decided_at") or now_ms)
    dedup = f"{OVERSELL}/{site}/{node}|{sku}/{decision['order_id']}"
    return {
        "alert_id": f"{dedup}:{at}:r1", "type": OVERSELL, "severity": AlertSeverity.WARNING,
        "status": AlertStatus.TRIGGER, "revision": 1, "dedup_key": dedup,
        "entity": {"kind": "node-sku", "id": f"{node}|{sku}", "node_id": node, "sku": sku,
                   "site": site},
        "summary": (f"{node} {sku}: claim of {decision['order_id']} rejected by edge site {site} "
                    f"(only {available} left after the edge's own sales); re-routing centrally"),
        "details": {"decision_id": decision["decision_id"], "available": available,
                    "resolution": "edge sale stands; central order re-routed"},
        "affected_order_count": 1, "sample_order_ids": [decision["order_id"]],
        "first_seen": at, "last_seen": at, "evidence_at": at, "emitted_at": now_ms,
        "runbook_url": "docs/edge.md#conflicts", "source": f"fulfil-edge-{site}",
    }


def dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
