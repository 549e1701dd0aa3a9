"""Facts: what the watchtower keeps of each validated event, as small picklable tuples.

The parse step validates every message against its contract and turns it into a few facts, each
routed to the detector that needs it. Keeping only these fields (not whole events) is what keeps
per-order state small, and tuples pickle fast when bytewax exchanges them between workers.

`NetInfo` answers the network questions detectors ask (a node's region and handling time, a
lane's expected transit) from the same network file the router uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from operators.lanes import WILDCARD
from operators.network import Network

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

Lines = tuple[tuple[str, int], ...]  # (sku, qty) per line


class OrderIn(NamedTuple):
    """An order.created, reduced to what detectors use."""

    ts: int
    order_id: str
    channel: str
    customer: str | None
    dest_region: str | None
    lines: Lines
    promised_by: int


class AddressIn(NamedTuple):
    ts: int
    order_id: str
    dest_region: str | None
    event_id: str = ""  # the decision that re-routes for this change names it


class Ship(NamedTuple):
    """One shipment of a routed decision."""

    node: str
    origin: str | None  # the node's region
    carrier: str
    service: str
    est_ms: int
    lines: Lines


class DecisionIn(NamedTuple):
    ts: int  # decided_at (event time of the decision)
    order_id: str
    version: int
    status: str  # routed | unroutable | cancelled | held
    ships: tuple[Ship, ...]
    promised_by: int | None
    event_id: str = ""  # the order event it answers (order.created, an address change, ...)


class TrackIn(NamedTuple):
    ts: int
    order_id: str
    node: str | None
    carrier: str
    status: str


class LaneRec(NamedTuple):
    """A lane.status record at its own granularity ('*' = all), as operators.lanes keys it."""

    ts: int
    key: str  # carrier|service|origin|dest
    carrier: str
    service: str
    origin: str
    dest: str
    status: str  # normal | delayed | outage
    delay_hours: float
    reason: str
    valid_until: int | None
    valid_from: int | None = None  # a forecast: the status starts then (absent = now)

    def starts_after(self, now: int) -> bool:
        """A forecast that has not started at event time `now`."""
        return self.valid_from is not None and self.valid_from > now

    def covers(self, carrier: str, service: str, origin: str | None, dest: str | None) -> bool:
        """Does this record apply to that concrete lane?"""
        return (self.carrier == carrier
                and self.service in (WILDCARD, service)
                and self.origin in (WILDCARD, origin)
                and self.dest in (WILDCARD, dest))

    def severity_rank(self) -> tuple[int, float]:
        """Outage beats any delay; a longer delay beats a shorter one."""
        return (2 if self.status == "outage" else 1 if self.status == "delayed" else 0,
                self.delay_hours)


class InventoryIn(NamedTuple):
    ts: int
    sku: str
    version: int
    snapshot: bool
    value: int  # on_hand (snapshot) or delta (adjusted)


class StockDelta(NamedTuple):
    """A change of reserved/on-hand units the order hub derives from decisions and tracking."""

    ts: int
    sku: str
    reserved: int
    on_hand: int


class TransitObs(NamedTuple):
    """One delivered (late or not) or failed shipment on a concrete lane."""

    ts: int
    late: bool
    failed: bool


class WindowResult(NamedTuple):
    """A closed bytewax window: its end (event time, ms) and its folded value."""

    end: int
    value: Any


class NetInfo:
    """Node regions, handling times and lane transit times from a `Network`."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self._node_region = {n.id: n.region for n in network.nodes}
        self._handling = {n.id: int(n.handling_hours * HOUR_MS) for n in network.nodes}
        self._regions = network.region_index
        self._services = network.service_index
        self._postal: dict[str, tuple[float, float, int] | None] = {}

    def postal_place(self, postal: str) -> tuple[float, float, int] | None:
        """(lat, lng, region index) of a postal code as the network resolves it, memoised:
        the abnormal-address check asks it for every order, and codes repeat."""
        try:
            return self._postal[postal]
        except KeyError:
            if len(self._postal) >= 200_000:  # a cache, not state: bounded
                self._postal.clear()
            hit = self._postal[postal] = self.network.locate({"postal_code": postal})
            return hit

    def node_region(self, node_id: str) -> str | None:
        return self._node_region.get(node_id)

    def handling_ms(self, node_id: str, default_ms: int = 24 * HOUR_MS) -> int:
        return self._handling.get(node_id, default_ms)

    def transit_ms(self, origin: str | None, dest: str | None, carrier: str, service: str
                   ) -> int | None:
        """Expected (mean) transit of a lane, or None when the network does not cover it."""
        o, d = self._regions.get(origin or ""), self._regions.get(dest or "")
        s = self._services.get(f"{carrier}/{service}")
        if o is None or d is None or s is None:
            return None
        days = float(self.network.lane_transit_mean[o, d, s])
        return None if days != days else int(days * DAY_MS)  # NaN: uncovered

    def region_of(self, destination: Mapping[str, Any]) -> str | None:
        """The destination's region as the router would resolve it, or None."""
        hit = self.network.locate(dict(destination))
        return None if hit is None else self.network.regions[hit[2]]

    @property
    def regions(self) -> tuple[str, ...]:
        return self.network.regions


def _lines(raw: Any) -> Lines:
    return tuple((str(line["sku"]), int(line["qty"])) for line in raw)


def order_in(ev: Mapping[str, Any], net: NetInfo) -> OrderIn:
    customer = ev.get("customer") or {}
    return OrderIn(int(ev["occurred_at"]), ev["order_id"], str(ev.get("channel", "")),
                   customer.get("id"), net.region_of(ev["destination"]), _lines(ev["lines"]),
                   int(ev["promised_by"]))


def address_in(ev: Mapping[str, Any], net: NetInfo) -> AddressIn:
    return AddressIn(int(ev["occurred_at"]), ev["order_id"], net.region_of(ev["destination"]),
                     str(ev["event_id"]))


def decision_in(d: Mapping[str, Any], net: NetInfo) -> DecisionIn:
    timings = d.get("timings") or {}
    ts = int(timings.get("decided_at") or timings.get("event_time") or 0)
    ships = tuple(
        Ship(s["node_id"], net.node_region(s["node_id"]), s["carrier"], s["service"],
             int(s.get("estimated_delivery") or 0), _lines(s.get("lines") or ()))
        for s in d.get("shipments") or ()
    )
    promised = d.get("promised_by")
    return DecisionIn(ts, d["order_id"], int(d["version"]), str(d["status"]), ships,
                      None if promised is None else int(promised), str(d.get("event_id") or ""))


def track_in(ev: Mapping[str, Any]) -> TrackIn:
    return TrackIn(int(ev["occurred_at"]), ev["order_id"], ev.get("node_id"), ev["carrier"],
                   ev["status"])


def lane_rec(ev: Mapping[str, Any]) -> LaneRec:
    carrier = str(ev["carrier"])
    service = str(ev.get("service") or WILDCARD)
    origin = str(ev.get("origin_region") or WILDCARD)
    dest = str(ev.get("dest_region") or WILDCARD)
    status = str(ev["status"])
    delay = float(ev.get("delay_hours") or 0.0) if status != "normal" else 0.0
    until, start = ev.get("valid_until"), ev.get("valid_from")
    return LaneRec(int(ev["occurred_at"]), "|".join((carrier, service, origin, dest)), carrier,
                   service, origin, dest, status, delay, str(ev.get("reason", "")),
                   None if until is None else int(until), None if start is None else int(start))


def inventory_in(ev: Mapping[str, Any]) -> InventoryIn:
    snapshot = ev["type"] == "inventory.snapshot"
    return InventoryIn(int(ev["occurred_at"]), ev["sku"], int(ev["version"]), snapshot,
                       int(ev["on_hand"] if snapshot else ev["delta"]))


def lane_entity(key: str) -> dict[str, str | None]:
    """The alert entity of a lane key 'carrier|service|origin|dest' (or 'carrier|origin|dest')."""
    parts = key.split("|")
    if len(parts) == 3:
        parts = [parts[0], WILDCARD, parts[1], parts[2]]
    carrier, service, origin, dest = parts
    entity: dict[str, str | None] = {"kind": "lane", "id": key, "carrier": carrier}
    for name, value in (("service", service), ("origin_region", origin), ("dest_region", dest)):
        if value != WILDCARD:
            entity[name] = value
    return entity
