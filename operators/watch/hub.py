"""The order hub: per-order state of one shard, and the detectors that need it.

Orders, their decisions and their tracking come from three topics; one shard of the hub (key:
`shard_of(order_id)`) joins them per order and derives:

- **stuck orders**: received but not decided within `unrouted_after_ms`; routed but not picked up
  within the node's handling time + `handling_grace_ms` (timers in event time);
- **delivery-promise risk**: open shipments whose estimate now exceeds the promise because a lane
  record changed after routing (an outage, or a delay longer than the one in force at routing);
- **reservation deltas** for the stock detector (reserve on routing, release on re-route or
  cancel, consume on pickup) and **transit observations** for the lane windows.

Stuck and at-risk orders are reported as `Partial`s per incident (a node, a lane record); the
watchtower merges the shards' partials into one verdict. State is bounded: an order is dropped
`order_ttl_ms` after its promise (or soon after it is cancelled or delivered), and every timer it
set fires by then. Pure: no Kafka, no Redis, no wall clock (callers pass event times).
"""

from __future__ import annotations

import heapq
import zlib
from dataclasses import dataclass, field
from typing import Any

from operators.watch.facts import (
    AddressIn,
    DecisionIn,
    LaneRec,
    NetInfo,
    OrderIn,
    Ship,
    StockDelta,
    TrackIn,
    TransitObs,
    lane_entity,
)
from operators.watch.settings import WatchSettings
from operators.watch.verdicts import Partial
from schemas.enums import AlertType

Out = tuple[str, str, Any]  # (route, key, value): see dataflows/watchtower.py
#: How long a closed (cancelled / delivered) order is kept to absorb late events about it.
CLOSED_GRACE_MS = 5 * 60_000
#: Tracking updates kept per order while its decision (or order) has not been read yet: topics
#: are read side by side, so on a replay a shipment's tracking can come before its decision.
MAX_PENDING_TRACKS = 16
UNROUTED = "unrouted"


def shard_of(key: str, shards: int) -> str:
    """The hub shard of an order id (stable across processes: crc32, not hash())."""
    return f"h{zlib.crc32(key.encode()) % shards}"


@dataclass(slots=True)
class ShipRec:
    ship: Ship
    decided_at: int
    delay_at_routing: float
    picked_at: int | None = None
    delivered: bool = False


@dataclass(slots=True)
class OrderRec:
    order_id: str
    received_at: int | None = None
    dest: str | None = None
    promised_by: int | None = None
    version: int = 0
    decided: bool = False
    closed_at: int | None = None
    ships: list[ShipRec] = field(default_factory=list)
    indexed: tuple[tuple[str, str | None], ...] = ()  # (carrier, dest) lanes it is indexed under
    pending: list[TrackIn] = field(default_factory=list)  # tracking read before its decision
    plan_event: str | None = None  # the order event the current plan answers
    # address changes not yet answered by a plan: event id -> new destination region (made
    # only for the rare order that changes address: no dict per order)
    next_dest: dict[str, str] | None = None


class OrderHub:
    """One shard's orders, timers, active lane records and stuck/at-risk sets."""

    def __init__(self, shard: str, settings: WatchSettings, net: NetInfo) -> None:
        self.shard, self.cfg, self.net = shard, settings, net
        self.orders: dict[str, OrderRec] = {}
        self.records: dict[str, LaneRec] = {}
        self.stuck: dict[str, dict[str, int]] = {}  # entity (node id | UNROUTED) -> order -> ts
        self.risk: dict[str, dict[str, int]] = {}  # lane record key -> order -> evidence ts
        self.at_risk: dict[str, str] = {}  # order -> the record key it is at risk under
        # open orders per (carrier, destination region): a lane change looks at these only
        self.by_lane: dict[tuple[str, str | None], set[str]] = {}
        self._timers: list[tuple[int, int, str, str, str]] = []  # (due, seq, kind, id, arg)
        self._seq = 0
        self._dirty: set[tuple[str, str]] = set()
        self._now = 0

    # ------------------------------------------------------------------ public

    @property
    def empty(self) -> bool:
        """Nothing held (timers only ever concern held orders and records)."""
        return not self.orders and not self.records

    def size(self) -> int:
        return len(self.orders)

    def next_deadline(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def on_fact(self, fact: Any, now: int) -> list[Out]:
        """Apply one fact; returns stock deltas, transit observations and changed partials."""
        self._now = max(self._now, now)
        out: list[Out] = []
        if isinstance(fact, OrderIn):
            self._order(fact, out)
        elif isinstance(fact, DecisionIn):
            self._decision(fact, out)
        elif isinstance(fact, TrackIn):
            self._track(fact, out)
        elif isinstance(fact, LaneRec):
            self._lane(fact)
        elif isinstance(fact, AddressIn):
            self._address(fact)
        return out + self._partials()

    def on_timer(self, watermark: int) -> list[Out]:
        """Fire every timer due at `watermark` (event time)."""
        self._now = max(self._now, watermark)
        while self._timers and self._timers[0][0] <= watermark:
            due, _, kind, ident, arg = heapq.heappop(self._timers)
            if kind == "unrouted":
                rec = self.orders.get(ident)
                if rec is not None and not rec.decided and rec.closed_at is None:
                    self._mark("stuck", UNROUTED, ident, due)
            elif kind == "handling":
                self._handling_due(ident, arg, due)
            elif kind == "expire":
                self._expire(ident, due)
            elif kind == "record":
                rec_l = self.records.get(ident)
                if rec_l is not None and rec_l.valid_until is not None \
                        and rec_l.valid_until <= due:
                    del self.records[ident]
                    self._reassess(rec_l)
            elif kind == "record-start":
                rec_l = self.records.get(ident)
                if rec_l is not None and rec_l.valid_from == due:
                    self._reassess(rec_l)
        return self._partials()

    # ------------------------------------------------------------------ facts

    def _at(self, due: int, kind: str, ident: str, arg: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, kind, ident, arg))
        if len(self._timers) > 4 * (len(self.orders) + len(self.records)) + 1000:
            # timers of orders already gone: drop them so the heap stays proportional
            self._timers = [t for t in self._timers if t[3] in (
                self.records if t[2].startswith("record") else self.orders)]
            heapq.heapify(self._timers)

    def _order(self, f: OrderIn, out: list[Out]) -> None:
        rec = self.orders.get(f.order_id)
        if rec is None:
            rec = self.orders[f.order_id] = OrderRec(f.order_id)
        elif rec.received_at is not None:
            return  # a re-sent order.created
        rec.received_at, rec.dest, rec.promised_by = f.ts, f.dest_region, f.promised_by
        if not rec.decided:
            self._at(f.ts + self.cfg.stuck.unrouted_after_ms, "unrouted", f.order_id)
        self._at(self._expiry(rec), "expire", f.order_id)
        if rec.ships:  # its decision was read first: judge it now that the destination is known
            self._reindex(rec)
            self._assess(rec)
            self._replay_pending(rec, out)

    def _address(self, f: AddressIn) -> None:
        """A new destination counts from the plan that answers it, not before.

        Until then the order ships, if at all, to the address its current plan was made for:
        the router re-plans for the change (a new decision naming the change's event), or
        refuses it (dead letter) and the old plan stands. Judging the old plan's lanes against
        the new region would open a delivery-risk incident for a shipment that never exists.
        """
        rec = self.orders.get(f.order_id)
        if rec is None or not f.dest_region:
            return
        if rec.plan_event != f.event_id:  # its plan is still to come (decisions trail orders)
            if rec.next_dest is None:
                rec.next_dest = {}
            rec.next_dest[f.event_id] = f.dest_region
            return
        rec.dest = f.dest_region  # the plan for it was read first
        self._reindex(rec)
        self._assess(rec)

    def _expiry(self, rec: OrderRec) -> int:
        base = rec.promised_by if rec.promised_by is not None else (rec.received_at or self._now)
        return max(base, self._now) + self.cfg.stuck.order_ttl_ms

    def _decision(self, d: DecisionIn, out: list[Out]) -> None:
        rec = self.orders.get(d.order_id)
        if rec is None:  # the decision was read before its order: keep it, fill in later
            rec = self.orders[d.order_id] = OrderRec(d.order_id, promised_by=d.promised_by)
            self._at(self._expiry(rec), "expire", d.order_id)
        if d.version <= rec.version:
            return  # a replayed decision
        rec.version, rec.decided = d.version, True
        rec.plan_event = d.event_id
        if rec.next_dest and d.event_id in rec.next_dest:  # the plan for an address change
            rec.dest = rec.next_dest.pop(d.event_id)  # its region counts from now
        if rec.promised_by is None:
            rec.promised_by = d.promised_by
        self._unmark("stuck", UNROUTED, d.order_id)
        for old in rec.ships:  # the previous plan's reservations are released
            self._unmark("stuck", old.ship.node, d.order_id)
            if old.picked_at is None:
                out.extend(("stock", old.ship.node, StockDelta(d.ts, sku, -qty, 0))
                           for sku, qty in old.ship.lines)
        rec.ships = []
        if d.status == "cancelled":
            rec.closed_at = d.ts
            self._at(d.ts + CLOSED_GRACE_MS, "expire", d.order_id)
        elif d.status == "routed":
            for ship in d.ships:
                delay = self._delay_now(ship, rec.dest)
                rec.ships.append(ShipRec(ship, d.ts, delay))
                out.extend(("stock", ship.node, StockDelta(d.ts, sku, qty, 0))
                           for sku, qty in ship.lines)
                out.extend(("velocity", ship.node, (d.ts, sku, qty)) for sku, qty in ship.lines)
                due = d.ts + self.net.handling_ms(ship.node) + self.cfg.stuck.handling_grace_ms
                self._at(due, "handling", d.order_id, ship.node)
        self._reindex(rec)
        self._assess(rec)
        self._replay_pending(rec, out)

    def _replay_pending(self, rec: OrderRec, out: list[Out]) -> None:
        if rec.pending and rec.ships and rec.dest is not None:
            pending, rec.pending = rec.pending, []
            for t in sorted(pending):
                self._track(t, out)

    def _track(self, t: TrackIn, out: list[Out]) -> None:
        rec = self.orders.get(t.order_id)
        if rec is None:  # its order and decision are not read yet: keep the update for then
            rec = self.orders[t.order_id] = OrderRec(t.order_id)
            self._at(self._expiry(rec), "expire", t.order_id)
        ship = next((s for s in rec.ships if s.ship.node == t.node), None) if t.node else None
        if ship is None:
            same = [s for s in rec.ships if s.ship.carrier == t.carrier]
            ship = same[0] if len(same) == 1 else None
        if ship is None or rec.dest is None:
            if (not rec.decided or rec.dest is None) and len(rec.pending) < MAX_PENDING_TRACKS:
                rec.pending.append(t)
            return
        s = ship.ship
        lane = f"{s.carrier}|{s.origin}|{rec.dest}"
        if t.status in ("failed_attempt", "exception"):
            out.append(("transit", lane, TransitObs(t.ts, False, True)))
            return
        if ship.picked_at is None:  # picked_up, or a later status that implies it
            ship.picked_at = t.ts
            self._unmark("stuck", s.node, t.order_id)
            out.extend(("stock", s.node, StockDelta(t.ts, sku, -qty, -qty)) for sku, qty in s.lines)
        if t.status == "delivered" and not ship.delivered:
            ship.delivered = True
            expected = self.net.transit_ms(s.origin, rec.dest, s.carrier, s.service)
            if expected:
                late = t.ts - ship.picked_at > expected * self.cfg.lane.late_ratio
                out.append(("transit", lane, TransitObs(t.ts, late, False)))
            if all(x.delivered for x in rec.ships):
                rec.closed_at = t.ts
                self._at(t.ts + CLOSED_GRACE_MS, "expire", t.order_id)
        self._reindex(rec)
        self._assess(rec)

    def _lane(self, r: LaneRec) -> None:
        current = self.records.get(r.key)
        if current is not None and r.ts < current.ts:
            return  # older than what we hold
        if r.status == "normal":
            if current is None:
                return  # heartbeats: nothing held, nothing to do
            del self.records[r.key]
        else:
            if current == r:
                return
            self.records[r.key] = r
            if r.valid_until is not None:
                self._at(r.valid_until, "record", r.key)
            if r.valid_from is not None and r.valid_from > r.ts:  # a forecast: from then on
                self._at(r.valid_from, "record-start", r.key)
        self._reassess(r)

    # ------------------------------------------------------------------ risk

    def _reindex(self, rec: OrderRec) -> None:
        """Keep `by_lane` in step with the order's open shipments and destination."""
        lanes: tuple[tuple[str, str | None], ...] = ()
        if rec.closed_at is None:
            lanes = tuple(sorted({(sr.ship.carrier, rec.dest) for sr in rec.ships
                                  if not sr.delivered}, key=str))
        if lanes == rec.indexed:
            return
        for lane in rec.indexed:
            ids = self.by_lane.get(lane)
            if ids is not None:
                ids.discard(rec.order_id)
                if not ids:
                    del self.by_lane[lane]
        for lane in lanes:
            self.by_lane.setdefault(lane, set()).add(rec.order_id)
        rec.indexed = lanes

    def _matching(self, ship: Ship, dest: str | None, forecasts: bool = False
                  ) -> LaneRec | None:
        """The most severe record covering the shipment's lane (in force now; with
        `forecasts`, also those announced to start later)."""
        best: LaneRec | None = None
        for r in self.records.values():
            if not forecasts and r.starts_after(self._now):
                continue
            if r.covers(ship.carrier, ship.service, ship.origin, dest) and (
                    best is None or r.severity_rank() > best.severity_rank()):
                best = r
        return best

    def _delay_now(self, ship: Ship, dest: str | None) -> float:
        """The delay the router priced in: forecasts weigh on routing as soon as known."""
        r = self._matching(ship, dest, forecasts=True)
        return r.delay_hours if r is not None and r.status == "delayed" else 0.0

    def _risk_of(self, rec: OrderRec) -> tuple[str, int] | None:
        """(record key, evidence time) that puts the order's promise at risk, if any."""
        if rec.closed_at is not None or rec.promised_by is None or not self.records:
            return None
        for sr in rec.ships:
            if sr.delivered:
                continue
            r = self._matching(sr.ship, rec.dest)
            if r is None:
                continue
            # the evidence: the later of the lane change and the decision that put it there
            since = max(r.ts if r.valid_from is None else max(r.ts, r.valid_from), sr.decided_at)
            if r.status == "outage":
                return r.key, since
            slip_ms = (r.delay_hours - sr.delay_at_routing) * 3_600_000
            if slip_ms > 0 and sr.ship.est_ms + slip_ms > rec.promised_by:
                return r.key, since
        return None

    def _assess(self, rec: OrderRec) -> None:
        found = self._risk_of(rec)
        before = self.at_risk.get(rec.order_id)
        if before is not None and (found is None or found[0] != before):
            self._unmark("risk", before, rec.order_id)
        if found is not None:
            self._mark("risk", found[0], rec.order_id, found[1])

    def _reassess(self, changed: LaneRec) -> None:
        """A lane record changed: judge again the open orders it can concern."""
        candidates = set(self.risk.get(changed.key, ()))
        for (carrier, dest), ids in self.by_lane.items():
            if carrier == changed.carrier and changed.dest in ("*", dest):
                candidates |= ids
        for oid in candidates:
            rec = self.orders.get(oid)
            if rec is not None:
                self._assess(rec)

    # ------------------------------------------------------------------ timers

    def _handling_due(self, order_id: str, node: str, due: int) -> None:
        rec = self.orders.get(order_id)
        if rec is None or rec.closed_at is not None:
            return
        for sr in rec.ships:
            if sr.ship.node == node and sr.picked_at is None \
                    and sr.decided_at + self.net.handling_ms(node) <= due:
                self._mark("stuck", node, order_id, due)

    def _expire(self, order_id: str, due: int) -> None:
        rec = self.orders.get(order_id)
        if rec is None:
            return
        if rec.closed_at is None and due < self._expiry_due(rec):
            return  # the order's promise moved (e.g. decided later): a newer timer is set
        rec.closed_at = rec.closed_at or due
        self._reindex(rec)
        del self.orders[order_id]
        for kind, sets in (("stuck", self.stuck), ("risk", self.risk)):
            for key in [k for k, members in sets.items() if order_id in members]:
                self._unmark(kind, key, order_id)

    def _expiry_due(self, rec: OrderRec) -> int:
        base = rec.promised_by if rec.promised_by is not None else (rec.received_at or 0)
        return base + self.cfg.stuck.order_ttl_ms

    # ------------------------------------------------------------------ partials

    def _mark(self, kind: str, key: str, order_id: str, ts: int) -> None:
        sets = self.stuck if kind == "stuck" else self.risk
        members = sets.setdefault(key, {})
        if order_id not in members:
            members[order_id] = ts
            self._dirty.add((kind, key))
            if kind == "risk":
                self.at_risk[order_id] = key

    def _unmark(self, kind: str, key: str, order_id: str) -> None:
        sets = self.stuck if kind == "stuck" else self.risk
        members = sets.get(key)
        if members is not None and members.pop(order_id, None) is not None:
            self._dirty.add((kind, key))
            if kind == "risk":
                self.at_risk.pop(order_id, None)
            if not members:
                del sets[key]

    def _partials(self) -> list[Out]:
        out: list[Out] = []
        for kind, key in sorted(self._dirty):
            part = self._stuck_partial(key) if kind == "stuck" else self._risk_partial(key)
            out.append(("partial", part.dedup_key, part))
        self._dirty.clear()
        return out

    def _stuck_partial(self, key: str) -> Partial:
        members = self.stuck.get(key, {})
        cfg = self.cfg.stuck
        if key == UNROUTED:
            dedup, entity = f"{AlertType.STUCK_ORDERS}/unrouted", {"kind": "routing",
                                                                     "id": "unrouted"}
            title = f"orders received but not routed within {cfg.unrouted_after_ms // 1000} s"
        else:
            dedup, entity = f"{AlertType.STUCK_ORDERS}/node/{key}", {"kind": "node", "id": key,
                                                                       "node_id": key}
            title = f"orders routed to {key} but not picked up within its handling time"
        return Partial(dedup, AlertType.STUCK_ORDERS, self.shard, len(members), self._now,
                       tuple(sorted(members)[: cfg.max_listed]),
                       min(members.values()) if members else None, entity, title,
                       {}, cfg.min_orders, cfg.page_min_orders, cfg.sample_size, cfg.max_listed)

    def _risk_partial(self, key: str) -> Partial:
        members = self.risk.get(key, {})
        cfg = self.cfg.risk
        r = self.records.get(key)
        status = r.status if r is not None else "normal"
        title = f"open orders at risk of missing their promise on {key} ({status})"
        details = {"record_status": status,
                   "delay_hours": r.delay_hours if r is not None else 0.0,
                   "reason": r.reason if r is not None else ""}
        return Partial(f"{AlertType.DELIVERY_RISK}/{key}", AlertType.DELIVERY_RISK, self.shard,
                       len(members), self._now, tuple(sorted(members)[: cfg.max_listed]),
                       min(members.values()) if members else None, lane_entity(key), title,
                       details, 1, cfg.page_min_orders, cfg.sample_size, cfg.max_listed)
