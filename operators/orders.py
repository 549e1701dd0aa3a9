"""Order events -> the routing view of an order, and the records kept per order.

`OrderData` is what routing needs from an order (destination, promise, lines with weights). It is
stored in the order book with the last decision, so later events that carry only part of the order
(an address change, a cancellation) can be handled without the original `order.created`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

DEFAULT_LINE_KG = 1.0  # used when a channel sends no weight; documented in docs/contracts.md


# Hot-path value (one or more per order): immutable by convention, not `frozen` — a frozen
# dataclass's __init__ costs ~4x a plain one's (object.__setattr__ per field); the hash stays.
@dataclass(slots=True, unsafe_hash=True)
class Line:
    line_id: str
    sku: str
    qty: int
    kg: float


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class OrderData:
    order_id: str
    promised_by: int
    destination: Mapping[str, Any]
    lines: tuple[Line, ...]
    channel: str
    tier: str
    priority: int
    event_time: int
    #: What business rules may test beyond the above (`operators.rules.facts`): customer_id,
    #: value, currency, risk, categories, tags, only those the order carries.
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "order_id": self.order_id,
            "promised_by": self.promised_by,
            "destination": dict(self.destination),
            "lines": [[ln.line_id, ln.sku, ln.qty, ln.kg] for ln in self.lines],
            "channel": self.channel,
            "tier": self.tier,
            "priority": self.priority,
            "event_time": self.event_time,
        }
        if self.attrs:
            d["attrs"] = dict(self.attrs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OrderData:
        return cls(
            order_id=d["order_id"],
            promised_by=int(d["promised_by"]),
            destination=d["destination"],
            lines=tuple(Line(str(a), str(b), int(c), float(e)) for a, b, c, e in d["lines"]),
            channel=d["channel"],
            tier=d["tier"],
            priority=int(d["priority"]),
            event_time=int(d["event_time"]),
            attrs=d.get("attrs") or {},
        )


def _attrs(event: Mapping[str, Any], customer: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if "id" in customer:
        attrs["customer_id"] = customer["id"]
    value = event.get("value")
    if value:
        if "amount" in value:
            attrs["value"] = value["amount"]
        if "currency" in value:
            attrs["currency"] = value["currency"]
    if "risk" in event:
        attrs["risk"] = event["risk"]
    categories = [ln["category"] for ln in event["lines"] if "category" in ln]
    if categories:
        attrs["categories"] = list(dict.fromkeys(categories))
    tags = [t for ln in event["lines"] for t in ln.get("tags", ())]
    if tags:
        attrs["tags"] = list(dict.fromkeys(tags))
    return attrs


def order_from_created(event: Mapping[str, Any]) -> OrderData:
    """The routing view of a validated `order.created` event."""
    lines = tuple(
        Line(
            str(ln.get("line_id") or i + 1),
            ln["sku"],
            int(ln["qty"]),
            (ln["weight_g"] / 1000.0) if ln.get("weight_g") is not None else DEFAULT_LINE_KG,
        )
        for i, ln in enumerate(event["lines"])
    )
    customer = event.get("customer") or {}
    return OrderData(
        order_id=event["order_id"],
        promised_by=int(event["promised_by"]),
        destination=event["destination"],
        lines=lines,
        channel=str(event.get("channel", "")),
        tier=str(customer.get("tier", "standard")),
        priority=int(event.get("priority", 0)),
        event_time=int(event["occurred_at"]),
        attrs=_attrs(event, customer),
    )


def with_destination(order: OrderData, destination: Mapping[str, Any]) -> OrderData:
    return replace(order, destination=destination)


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class OrderRecord:
    """What the order book holds per order: the last decision and the order itself.

    `reservations` is `{node_id: [[sku, qty], ...]}` of the stock this decision holds, under the
    ledger id `resv_id`; it is what replays re-apply and what cancellations and re-routes
    release. `previous` is the reservation this version replaces (`{"resv_id", "reservations"}`),
    kept so that a crash between taking the new plan and releasing the old one is completed by
    the replay, and a later cancellation releases whatever is left of it.
    """

    event_id: str
    version: int
    status: str
    decision: bytes
    order: OrderData
    reservations: Mapping[str, list[list[Any]]]
    resv_id: str = ""
    previous: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.resv_id:  # records written before reservation ids were versioned
            object.__setattr__(self, "resv_id", self.order.order_id)

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "event_id": self.event_id,
                "version": self.version,
                "status": self.status,
                "decision": orjson.Fragment(self.decision),
                "order": self.order.to_dict(),
                "reservations": self.reservations,
                "resv_id": self.resv_id,
                "previous": self.previous,
            }
        )

    @classmethod
    def loads(cls, raw: bytes) -> OrderRecord:
        d = orjson.loads(raw)
        return cls(
            event_id=d["event_id"],
            version=int(d["version"]),
            status=d["status"],
            decision=orjson.dumps(d["decision"]),
            order=OrderData.from_dict(d["order"]),
            reservations=d["reservations"],
            resv_id=d.get("resv_id", ""),
            previous=d.get("previous"),
        )

    def held(self) -> dict[str, list[str]]:
        """{node: [reservation ids]} of everything this record may still hold (its own plan
        and what is left of the one it replaced), for a release."""
        out: dict[str, list[str]] = {node: [self.resv_id] for node in self.reservations}
        if self.previous:
            for node in self.previous["reservations"]:
                out.setdefault(node, []).append(self.previous["resv_id"])
        return out


def reservation_id(order_id: str, version: int) -> str:
    """The ledger id of the reservation decision `version` of an order makes.

    Versioned, so a re-route takes its new plan while the old one still stands (then releases
    the old): "never both, never neither" without a cross-node transaction. Unambiguous for any
    order id: the version is the digits after the last '#'.
    """
    return f"{order_id}#{version}"


def group_lines(lines: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Sum quantities per sku, keeping first-seen order (reservation requests are per sku)."""
    totals: dict[str, int] = {}
    for sku, qty in lines:
        totals[sku] = totals.get(sku, 0) + qty
    return tuple(totals.items())
