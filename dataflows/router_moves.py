"""The router's re-planning policies: business rules, moves of held reservations, joins.

Split from `dataflows/router.py` to keep each module readable: the router owns the per-wave
flow (read, plan, record, reserve, emit); this module owns what decides *how* an order is
re-planned — the rules in force (holds, restrictions, priority), moving a reservation from one
plan to the next without ever holding neither (credit, then release of the previous plan),
keeping an order's plan when it is safe enough where it is (the risk threshold,
`operators.reroute.judge_kept`) or a proactive re-route finds nothing better, and merged
delivery (joining an earlier order's parcel). `PlanMoves` is a mixin of `Router`: it uses
the router's ledger, order book, ATP cache, boards, network and planner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from dataflows.connectors import OutMessage, RawMessage
from fulfil import metrics
from operators.closures import NodeClock
from operators.consolidation import ships_alone
from operators.decisions import RulesInfo, approval_request, held_decision
from operators.kept_clock import kept_ready
from operators.network import Network
from operators.orders import OrderData, OrderRecord
from operators.planner import Plan, Planner
from operators.reroute import KEPT, judge_kept
from operators.rules import EMPTY, Outcome, RuleSet, order_facts
from schemas.enums import DecisionStatus, OrderEventType
from state.availability import AvailabilityCache
from state.lanes import LaneBoard
from state.ledger import Ledger, ReserveRequest
from state.orderbook import OrderBook

Out = tuple[str, OutMessage]
_HELD = metrics.DECISIONS.labels(status="held")


def requests_for(rid: str, reservations: Mapping[str, list[list[Any]]],
              previous: Mapping[str, Any] | None) -> list[ReserveRequest]:
    """Reserve requests of a plan; where the replaced plan also used the node, its units are
    credited (see state/lua/reserve.lua)."""
    old = previous["reservations"] if previous else {}
    credit = previous["resv_id"] if previous else None
    return [ReserveRequest(rid, node, tuple((s, int(q)) for s, q in lines),
                           credit if node in old else None)
            for node, lines in reservations.items()]


def state_problem(kind: str, rec: OrderRecord | None) -> tuple[str, str] | None:
    """(dead-letter code, why) when an order's state rules out `kind`, else None."""
    if rec is None:
        return "unknown-order", "no such order"
    if rec.status == DecisionStatus.CANCELLED:
        return "unknown-order", "order is already cancelled"
    held = rec.status == DecisionStatus.HELD
    if kind in (OrderEventType.APPROVED, OrderEventType.REJECTED) and not held:
        return "invalid-state", f"order is {rec.status}, not held for approval"
    return None


@dataclass
class Pending:
    """An event whose order needs (re)planning in this wave."""

    raw: RawMessage
    event: dict
    order: OrderData
    version: int
    reasons: list[str] = field(default_factory=list)
    approved: bool = False  # an approver released it: rule holds no longer apply
    #: The reservation this version replaces ({"resv_id", "reservations"}): kept until the new
    #: plan is held, credited where both use a node, released once the new decision is final.
    previous: Mapping[str, Any] | None = None
    #: A proactive re-route (order.reroute_requested): the record it may replace. The order
    #: keeps this plan unless a different feasible one is taken in full.
    keep: OrderRecord | None = None
    #: A consolidation request: ship on this earlier order's parcel ({order_id, node_id,
    #: carrier, service}) if that keeps the promise and costs less (operators.consolidation).
    join: Mapping[str, Any] | None = None
    outcome: Outcome = EMPTY
    rules_info: RulesInfo = None

    @property
    def priority(self) -> int:
        return self.order.priority if self.outcome.priority is None else self.outcome.priority


def _declined_join(p: Pending) -> bool:
    """An automatic join request for an order its customer asked to ship on its own (the
    consolidation flow proposed it before it saw the split): dropped, counted."""
    if p.join is None or p.event["type"] != OrderEventType.REROUTE_REQUESTED:
        return False
    if ships_alone(p.order.attrs):
        metrics.REROUTES.labels(outcome="declined").inc()
        return True
    return False


class PlanMoves:
    """Mixin of `Router` (see the module docstring); the attributes are the router's."""

    ledger: Ledger
    book: OrderBook
    stock: AvailabilityCache
    network: Network
    planner: Planner
    node_ids: list[str]
    _rules: Callable[[], RuleSet]
    _rule_hits: dict[str, Any]
    _clock: NodeClock  # the nodes' pick-up clock (set by CustomerRequests._init_requests)
    _closures: LaneBoard  # the closure board (set by CustomerRequests._init_requests)
    lanes: LaneBoard
    config: Any

    decisions_topic: str
    approvals_topic: str

    def _decision(self, order_id: str, payload: bytes) -> Out:
        return order_id, OutMessage(self.decisions_topic, order_id.encode(), payload)

    def _approval(self, order: OrderData, decision: bytes) -> Out:
        """The approval request of a held decision (rebuilt from it on a replay)."""
        body = approval_request(orjson.loads(decision), order)
        return order.order_id, OutMessage(self.approvals_topic, order.order_id.encode(), body)

    def _apply_rules(self, pending: list[Pending], now: int) -> tuple[list[Pending], list[Out]]:
        """Evaluate the business rules in force; hold what they hold (decision + approval
        request, nothing reserved) and return the rest, most urgent first so they claim scarce
        stock first."""
        rules = self._rules()
        if not rules.rules:
            return pending, []
        info_base = {"version": rules.version}
        held: dict[str, bytes] = {}
        out: list[Out] = []
        go: list[Pending] = []
        for p in pending:
            region = None
            if "destination.region" in rules.fields:
                where = self.network.locate(p.order.destination)
                region = self.network.regions[where[2]] if where is not None else None
            o = rules.evaluate(order_facts(p.order, region, rules), p.order.event_time)
            if p.approved and o.hold is not None:
                o = replace(o, hold=None)
            p.outcome = o
            p.rules_info = {**info_base, "hit": list(o.hit), "tags": list(o.tags)}
            for rule_id in o.hit:
                hits = self._rule_hits.get(rule_id)
                if hits is None:
                    hits = self._rule_hits[rule_id] = metrics.RULE_HITS.labels(rule=rule_id)
                hits.inc()
            if o.hold is None:
                go.append(p)
                continue
            payload = held_decision(p.order, p.version, p.event, o.hold, p.raw.received_ms, now,
                                    self.network.version, p.rules_info, p.priority)
            oid = p.order.order_id
            held[oid] = OrderRecord(p.event["event_id"], p.version, DecisionStatus.HELD, payload,
                                    p.order, {}).dumps()
            _HELD.inc()
            out += [self._decision(oid, payload), self._approval(p.order, payload)]
        if held:
            self.book.put_many(held)  # before anything is emitted, like every other decision
        go.sort(key=lambda p: -p.priority)  # stable: equal priorities keep arrival order
        return go, out

    def _still_open(self, pending: list[Pending]) -> list[Pending]:
        """Drop proactive re-routes of orders whose reservation is gone (picked up meanwhile:
        a parcel in the carrier's hands is not re-routed)."""
        pending = [p for p in pending if not _declined_join(p)]
        self._keep_clocks(pending)
        checks = [(p, node) for p in pending if p.keep is not None for node in p.keep.reservations]
        if not checks:
            return pending
        held = self.ledger.holds([(node, p.keep.resv_id) for p, node in checks])  # type: ignore[union-attr]
        gone = {id(p) for (p, _), ok in zip(checks, held, strict=True) if not ok}
        if gone:
            metrics.REROUTES.labels(outcome="not-open").inc(len(gone))
        return [p for p in pending if id(p) not in gone]

    def _judge_kept(self, pending: list[Pending], now: int) -> list[Pending]:
        """Drop the lane and closure re-routes whose order's plan, as it would now go, misses
        its promise with a probability of at most `config.reroute_miss_threshold`
        (`operators.reroute.judge_kept`, the offline replay's very rule): they keep their plan,
        no re-plan, no new version (outcome `kept-by-threshold`). The others are re-planned
        and carry why (`kept-plan-at-risk`, `kept-plan-impossible`) on a moved decision.
        Both boards are read afresh: the request may be a batch ahead of the cached copy, and
        a stale copy would make the plan look safe (rare waves: disruptions only)."""
        asks = [p for p in pending if p.keep is not None and p.join is None
                and p.event["type"] == OrderEventType.REROUTE_REQUESTED]
        if not asks:
            return pending
        lanes = self.lanes.read_all()
        closures = {c.key: c for c in self._closures.read_all()}
        threshold = float(self.config.reroute_miss_threshold)
        kept: set[int] = set()
        for p in asks:
            assert p.keep is not None
            why = judge_kept(p.keep, lanes, closures, self.network, self.planner.model,
                             self._clock, now).verdict(threshold)
            if why == KEPT:
                kept.add(id(p))
            else:
                p.reasons.append(why)
        if not kept:
            return pending
        metrics.REROUTES.labels(outcome=KEPT).inc(len(kept))
        return [p for p in pending if id(p) not in kept]

    def _keep_clocks(self, pending: list[Pending]) -> None:
        """Tell the planner, for this wave, the pick-up each re-routed order's plan expects at
        the nodes it is held at: a re-plan that keeps a node (a carrier swap) keeps that
        node's handling clock instead of restarting it (operators/kept_clock.py)."""
        keep = [p.keep for p in pending if p.keep is not None]
        if keep or self.planner.kept:
            self.planner.kept = kept_ready(keep, self._clock) if keep else {}

    def _join_constraint(self, outcome: Outcome, join: Mapping[str, Any]) -> Outcome:
        """Only the earlier order's node and carrier service (on top of the rules' limits)."""
        node_ok = np.zeros(len(self.node_ids), dtype=np.bool_)
        k = self.network.node_index.get(join["node_id"])
        if k is not None:
            node_ok[k] = True
        svc_ok = np.array([s.carrier == join["carrier"] and s.service == join["service"]
                           for s in self.network.services], dtype=np.bool_)
        if outcome.node_ok is not None:
            node_ok &= outcome.node_ok
        if outcome.svc_ok is not None:
            svc_ok &= outcome.svc_ok
        return replace(outcome, node_ok=node_ok, svc_ok=svc_ok)

    def _joining_pays(self, p: Pending, plan: Plan) -> bool:
        """Sharing the earlier parcel keeps the promise and costs less than the order's own
        parcel: the joined plan's cost minus one parcel's fixed costs (the node's handling, the
        service's base price), which the shared parcel does not pay twice."""
        assert p.keep is not None and len(plan.shipments) == 1
        s = plan.shipments[0]
        fixed = (self.network.nodes[s.node].handling_cost
                 + self.network.services[s.service].base_cost)
        own = float(orjson.loads(p.keep.decision).get("cost") or 0.0)
        if p.event["type"] == OrderEventType.MERGE_REQUESTED:  # the customer asked: cost aside
            return plan.est_ms <= p.order.promised_by
        return plan.est_ms <= p.order.promised_by and plan.cost - fixed < own

    def _same_route(self, plan: Plan, rec: OrderRecord) -> bool:
        """Does `plan` ship from the same nodes with the same carrier services as `rec`?"""
        new = {(self.node_ids[s.node], self.network.services[s.service].carrier,
                self.network.services[s.service].service) for s in plan.shipments}
        old = {(s["node_id"], s["carrier"], s["service"])
               for s in orjson.loads(rec.decision)["shipments"]}
        return new == old

    def _credit_own_holds(self, pending: list[Pending], skus: list[str], atp: Any) -> None:
        """A re-routed order may keep its units: what its previous plan holds counts as
        available to it (the ledger credits the same, see state/lua/reserve.lua)."""
        column = None
        for p in pending:
            if not p.previous:
                continue
            column = column or {sku: j for j, sku in enumerate(skus)}
            for node, lines in p.previous["reservations"].items():
                k = self.network.node_index.get(node)
                for sku, qty in lines:
                    if k is not None and sku in column:
                        atp[k, column[sku]] += int(qty)

    def _release_previous(self, items: Iterable[Pending | OrderRecord], day: str) -> None:
        """Release the reservations these re-routes replaced (idempotent: a replay may repeat
        it, and a node the new plan also uses keeps the new reservation, a different id)."""
        releases: dict[str, list[str]] = {}
        for item in items:
            prev = item.previous
            assert prev is not None
            for node, lines in prev["reservations"].items():
                releases.setdefault(node, []).append(prev["resv_id"])
                self.stock.invalidate(sku for sku, _ in lines)
        if releases:
            self.ledger.release(releases, day)

    def _invalidate(self, rec: OrderRecord) -> None:
        """Stock a release gives back: the cached ATP of those skus is stale."""
        for lines in rec.reservations.values():
            self.stock.invalidate(sku for sku, _ in lines)

    def _compensate(self, results: list[Any], orders: set[str], day: str) -> None:
        """Release what a partly reserved (split) order did get, so nothing is left half-held."""
        held: dict[str, list[str]] = {}
        for r in results:
            if r.order_id in orders and r.status in ("reserved", "already"):
                held.setdefault(r.node_id, []).append(r.order_id)
        if held:
            self.ledger.release(held, day)
