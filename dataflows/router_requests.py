"""The router's handling of customer merge/split requests and of node closures.

A mixin of `Router` (like `router_moves.PlanMoves`), split out to keep router.py readable:

- `order.merge_requested`: the order joins the parcel of the first order it names (same
  customer and address, both open). Planned like an automatic join (`Pending.join`: only that
  node and carrier service; new reservation before the old is released) but without the cost
  test: the customer asked. A joined plan that would miss the order's promise is refused with a
  dead letter (`invalid-state`, rule `promise`), never silently: the order keeps its plan. The
  other named orders are asked, by an `order.merge_requested` of their own, to join the same
  parcel (each is then checked in order with its own events).
- `order.split_requested`: a new decision version with the same plan and stock, no
  `consolidation_group`, and the reason `ship-separately`; the choice is kept in the order's
  record (attrs `ship_alone`), so every later decision carries the reason and the consolidation
  flow never merges it again. A later merge request undoes it.
- Node closures: every wave's orders avoid the nodes a closure (now or forecast) would block
  (`operators/closures.py`), through the rules' per-order node mask.

Idempotent per order: a replayed request (same event id) re-emits the recorded decision. Both
requests for an unknown, cancelled, unroutable, held or shipped order are dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from dataflows.connectors import OutMessage, RawMessage
from dataflows.router_moves import Pending
from operators.closures import CLOSED, REASON, NodeClock, avoid, closed_mask, node_clock
from operators.consolidation import (
    SEPARATE,
    Parcel,
    Problem,
    merge_targets,
    order_problem,
    parcel,
    relabel,
    ship_to,
    ships_alone,
)
from operators.network import Network
from operators.orders import OrderData, OrderRecord
from operators.planner import Plan, Unroutable
from schemas.enums import DecisionStatus, OrderEventType
from state.closures import closure_board
from state.lanes import LaneBoard
from state.ledger import Ledger
from state.orderbook import OrderBook

Out = tuple[str, OutMessage]
Ask = tuple[RawMessage, dict, OrderRecord | None]
#: The order events this mixin handles (the router's wave loop hands them over).
CUSTOMER_ASKS = frozenset({OrderEventType.MERGE_REQUESTED, OrderEventType.SPLIT_REQUESTED})
_MERGE = OrderEventType.MERGE_REQUESTED


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _choose(order: OrderData, alone: bool) -> OrderData:
    """The order with the customer's choice to ship alone set or cleared (kept in its record)."""
    attrs = {k: v for k, v in order.attrs.items() if k != "ship_alone"}
    if alone:
        attrs["ship_alone"] = True
    return replace(order, attrs=attrs)


class CustomerRequests:
    """Mixin of `Router` (see the module docstring); the attributes are the router's."""

    ledger: Ledger
    book: OrderBook
    network: Network
    config: Any
    _closures: LaneBoard
    _clock: NodeClock

    def _dead(self, raw: RawMessage, step: str, code: str, message: str, now: int,
              field_: str = "", rule: str = "") -> Out: ...  # Router's
    def _decision(self, order_id: str, payload: bytes) -> Out: ...  # PlanMoves'

    def _init_requests(self, client: Any) -> None:
        """Called by Router.__init__: the closure board and the nodes' clocks."""
        self._closures = closure_board(client, self.config.redis_prefix,
                                       self.config.lane_refresh_ms)
        self._clock = node_clock(self.network)

    # -- merge / split ---------------------------------------------------------------------

    def _customer_requests(self, asks: list[Ask], now: int, out: list[Out]) -> list[Pending]:
        """Check the wave's merge/split requests (one read of the named orders, one of the
        holds); relabel what needs no re-planning, dead-letter what is refused, and return the
        merges to plan (as joins that keep the order's plan unless the join is held in full)."""
        named = {oid for _, ev, _ in asks if ev["type"] == _MERGE for oid in ev["with"]}
        others = {oid: OrderRecord.loads(b) for oid, b in
                  (self.book.get_many(sorted(named)) if named else {}).items()}
        records = [r for _, _, r in asks if r is not None] + list(others.values())
        checks = list(dict.fromkeys((node, r.resv_id) for r in records
                                    if r.status == DecisionStatus.ROUTED
                                    for node in r.reservations))
        held = dict(zip(checks, self.ledger.holds(checks), strict=True)) if checks else {}

        def is_open(r: OrderRecord) -> bool:
            return bool(r.reservations) and all(held.get((n, r.resv_id), False)
                                                for n in r.reservations)

        pending: list[Pending] = []
        relabelled: dict[str, OrderRecord] = {}
        for raw, ev, rec in asks:
            what = "merge" if ev["type"] == _MERGE else "split"
            problem = order_problem(what, None if rec is None else rec.status,
                                    rec is not None and is_open(rec), order_id=ev["order_id"])
            if problem is None and rec is not None and ev["type"] == _MERGE:
                problem = self._merge(raw, ev, rec, others, is_open, now, pending, relabelled,
                                      out)
            elif problem is None and rec is not None:
                self._split(raw, ev, rec, now, relabelled)
            if problem is not None:
                out.append(self._dead(raw, "route-orders", problem.code, problem.message, now,
                                      problem.field, problem.rule))
        if relabelled:  # recorded before anything is emitted, like every decision
            self.book.put_many({oid: r.dumps() for oid, r in relabelled.items()})
            out.extend(self._decision(oid, r.decision) for oid, r in relabelled.items())
        return pending

    def _merge(self, raw: RawMessage, ev: dict, rec: OrderRecord,
               others: Mapping[str, OrderRecord], is_open: Any, now: int,
               pending: list[Pending], relabelled: dict[str, OrderRecord], out: list[Out]
               ) -> Problem | None:
        oid = rec.order.order_id
        targets = merge_targets(oid, ev["with"])
        if not targets:
            return Problem("schema", "with", "distinct", f"with must name orders other than "
                           f"{oid!r} itself; got {ev['with']!r}"[:300])
        key = ship_to(rec.order.attrs.get("customer_id"), rec.order.destination)
        for i, other in targets:
            o = others.get(other)
            problem = order_problem("merge", None if o is None else o.status,
                                    o is not None and is_open(o), f"with[{i}]", other)
            if problem is None and (key is None or o is None or key != ship_to(
                    o.order.attrs.get("customer_id"), o.order.destination)):
                problem = Problem("invalid-state", f"with[{i}]", "same-customer-address",
                                  f"merge: {other!r} is not for the same customer and address "
                                  f"as {oid!r} (or they have no customer id)")
            if problem is not None:
                return problem
        first = parcel(orjson.loads(others[targets[0][1]].decision))
        if first is None:
            return Problem("invalid-state", "with[0]", "one-parcel",
                           f"merge: {targets[0][1]!r} ships in several parcels; name an order "
                           "that ships in one")
        join = first.join()
        group = f"{key}:{join['order_id']}"
        for _, other in targets[1:]:  # the others are asked to join the same parcel
            if not self._on(others[other], first, group):
                out.append(self._merge_ask(ev, other, first.order_id, now))
        mine = orjson.loads(rec.decision)
        if self._on(rec, first, group) and not ships_alone(rec.order.attrs):
            return None  # already ships in that group: nothing to change
        if (p := parcel(mine)) is not None and (p.node_id, p.carrier, p.service) == (
                first.node_id, first.carrier, first.service):
            # Already on that parcel's node and service: name the group, nothing moves.
            relabelled[oid] = OrderRecord(
                ev["event_id"], rec.version + 1, DecisionStatus.ROUTED,
                relabel(mine, rec.version + 1, ev, raw.received_ms, now, ["merge-requested"],
                        group),
                _choose(rec.order, False), rec.reservations, rec.resv_id, rec.previous)
            return None
        pending.append(Pending(raw, ev, _choose(rec.order, False), rec.version + 1,
                               ["merge-requested"],
                               previous={"resv_id": rec.resv_id,
                                         "reservations": rec.reservations},
                               keep=rec, join=join))
        return None

    @staticmethod
    def _on(rec: OrderRecord, first: Parcel, group: str) -> bool:
        """Does `rec` already ship on `first`'s parcel, in `group` (or as its first order)?"""
        p = parcel(orjson.loads(rec.decision))
        return p is not None and (p.node_id, p.carrier, p.service) == (
            first.node_id, first.carrier, first.service) and (
            p.group == group or group.split(":", 1)[1] == p.order_id)

    def _merge_ask(self, ev: dict, other: str, first: str, now: int) -> Out:
        """`order.merge_requested` for another named order: join the first one's parcel (its
        event id is fixed by the request, so a replayed request asks once)."""
        event = {"type": _MERGE.value, "event_id": f"{ev['event_id']}:{other}",
                 "order_id": other, "occurred_at": now, "with": [first],
                 "reason": f"merge requested with {ev['order_id']}"}
        return other, OutMessage(self.config.topic("orders"), other.encode(),
                                 orjson.dumps(event))

    @staticmethod
    def _split(raw: RawMessage, ev: dict, rec: OrderRecord, now: int,
               relabelled: dict[str, OrderRecord]) -> None:
        """Take the order out of its group: same plan, no group, the choice recorded."""
        mine = orjson.loads(rec.decision)
        if ships_alone(rec.order.attrs) and "consolidation_group" not in mine:
            return  # already ships on its own
        version = rec.version + 1
        relabelled[rec.order.order_id] = OrderRecord(
            ev["event_id"], version, DecisionStatus.ROUTED,
            relabel(mine, version, ev, raw.received_ms, now, ["split-requested", SEPARATE],
                    None),
            _choose(rec.order, True), rec.reservations, rec.resv_id, rec.previous)

    def _refused(self, p: Pending, plan: Plan | Unroutable, now: int) -> list[Out]:
        """The dead letter of a customer merge the router could not carry out (the order
        keeps its plan); nothing for the router's own re-route and join requests."""
        if p.event["type"] != _MERGE or p.join is None:
            return []
        j = p.join
        where = f"{j['node_id']} with {j['carrier']}/{j['service']}"
        if isinstance(plan, Unroutable):
            why, rule = f"no plan ships it from {where} ({plan.reason})", "no-plan"
        elif plan.est_ms > p.order.promised_by:
            why, rule = (f"shipping from {where} would deliver at {_iso(plan.est_ms)}, after "
                         f"its promise {_iso(p.order.promised_by)}"), "promise"
        else:
            why, rule = f"its own plan already ships from {where}", "same-plan"
        return [self._dead(p.raw, "route-orders", "invalid-state",
                           f"merge of {p.order.order_id!r} with {j['order_id']!r} refused: "
                           f"{why}; it keeps its plan", now, "with", rule)]

    # -- node closures ---------------------------------------------------------------------

    def _avoid_closed_nodes(self, pending: list[Pending], now: int) -> frozenset[int]:
        """Mask the nodes a closure blocks for an order released now, for every pending order;
        returns the ids of the orders that nothing but a closure restricts (their unroutable
        reason is then `node-closed`, not `restricted-by-rules`)."""
        # A re-route asked because of a closure reads the board afresh: it must see that closure.
        fresh = any(p.event.get("reason") == REASON for p in pending)
        records = self._closures.read_all() if fresh else self._closures.current()
        closed = closed_mask(records, self._clock, now)
        if closed is None:
            return frozenset()
        only = frozenset(id(p) for p in pending if not p.outcome.restricts)
        for p in pending:
            p.outcome = avoid(p.outcome, closed)
        return only

    @staticmethod
    def _closure_reasons(pending: list[Pending], plans: list[Plan | Unroutable],
                         only: frozenset[int]) -> list[Plan | Unroutable]:
        if not only:
            return plans
        return [Unroutable(CLOSED) if id(p) in only and isinstance(plan, Unroutable)
                and plan.reason == "restricted-by-rules" else plan
                for p, plan in zip(pending, plans, strict=True)]
