"""With and without predictive re-routing: one stream replayed twice on a simulated clock.

Why a replay of its own (on top of ``operators.eval.replay.Replayer``): the evaluator's replay
routes every order once, at arrival, and never looks at it again; predictive re-routing acts
*between* the decision and the pick-up. This replayer adds the clock that makes that interval
real and runs the production policy inside it:

- **Pick-up.** Each shipment is handed to the carrier at its node's ready time (cut-off, opening
  hour, handling hours: ``operators.candidates.ready_ms``, the planner's and the ground truth's
  rule); then the ledger mirror ships it (``LedgerMirror.ship``) and the order is no longer open.
- **Which orders to re-plan** (run with re-routing): the lane changes of each window that are in
  force (``operators.reroute.to_replan``: delayed or out, now or forecast within 48 h), then per
  lane ``operators.reroute.requests_for_lane`` over the open reservations of the nodes on its
  origin and the orders' records (``routed_decision`` as the router writes it, decided at the
  order's last decision): the very functions of the routing flow's ``RerouteRequests`` step,
  so only orders whose parcel meets the disruption at its pick-up (``at_pickup=False``: the
  former every-open-order selection, for the comparison).
- **Whether to move** (the router's rules, ``dataflows/router.py``): still open (every node of
  the plan still holds its reservation, else ``not-open``); at risk where it is
  (``operators.reroute.judge_kept``: the plan it has, as it would now go, misses its promise
  with a probability above ``Config.reroute_miss_threshold``, or cannot deliver; else it keeps
  its plan without a re-plan, ``kept-by-threshold``, as ``PlanMoves._judge_kept`` does);
  re-planned by the real ``Planner.plan`` (candidates, the delivery-risk pass
  ``operators/risk.py``, scoring, allocation) against the lanes as they now are, with the
  order's own holds credited (``operators.reroute.credit_holds``) and the nodes it is held at
  keeping their handling clock (``Planner.kept``, ``operators.kept_clock``, as the router sets
  it), then
  ``operators.reroute.move_verdict``: no plan -> ``no-alternative``, same nodes and carrier
  services -> ``unchanged``, else ``moved`` (new plan held in full, old one released; a new
  plan that cannot be held keeps the old one: ``lost``).
- **A carrier swap keeps the hand-over.** A move whose every shipment stays at a node the old
  plan used keeps the old release time there (``OrderState.planned_ms``), so the parcel is
  picked up, and judged on the truth, when it would have been; only the record's decision
  time is the move's (what the engine writes). A move to another node restarts its clock.
- **The run without re-routing** is the same replay with the last step off. It still computes
  which orders each forecast endangers (``exposed``) without acting, so both runs can be
  compared on exactly the orders re-routing could have helped.

- **Node closures** (``node.closure``, kept per node by ``operators.closures.update_closure`` as
  the routing flow keeps them): from its announcement every plan of both runs, new orders and
  re-routes alike, avoids the nodes a closure would block for an order released now
  (``closed_mask`` -> ``avoid``: the per-order node mask the router adds before
  ``Planner.prepare``; an order only closed nodes could serve is ``node-closed``). Run (b) also
  asks to re-plan the open orders held at the node whose pick-up falls in the closure
  (``operators.closures.endangered`` over ``open_records``, what ``dataflows/closures.py``
  does) and moves them by the same rules as a lane re-route. A carrier that comes while its
  node is closed takes nothing: the parcel waits there, still open, for the node's first
  pick-up slot after it reopens (the ground truth's reading: ``forecasts.ClosureTruth``).

Requests are handled at the end of the window the lane change or closure arrived in (the
engine: a batch later, well under a second). One request per order per window: two changes
endangering the same order in one window re-plan it once, against both.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from operators.candidates import ready_ms
from operators.closures import (
    CLOSED,
    NodeClosure,
    announced,
    avoid,
    closed_mask,
    closure_key,
    node_clock,
    overlaps,
    update_closure,
)
from operators.closures import endangered as closure_endangered
from operators.decisions import routed_decision
from operators.eval.ledger import LedgerMirror, day_of
from operators.eval.policies import make_policy
from operators.eval.replay import MAX_ROUNDS, OrderState, Replayer, ReplayResult, _waves, windows
from operators.kept_clock import kept_ready
from operators.lanes import LaneHealth, lane_key
from operators.network import Network
from operators.orders import OrderData, OrderRecord, reservation_id
from operators.planner import EXHAUSTED, Plan, Planner, Prepared, Unroutable
from operators.reroute import (
    KEPT,
    credit_holds,
    judge_kept,
    lane_carrier,
    move_verdict,
    nodes_on_origin,
    open_records,
    requests_for_lane,
    to_replan,
)
from operators.rules import EMPTY, Outcome
from schemas.enums import DecisionStatus

__all__ = ["AvoidingPlanner", "ClockedReplayer", "Move", "RerouteRun", "closure_request_key",
           "run"]

OUTCOMES = ("requested", "not-open", KEPT, "moved", "unchanged", "no-alternative", "lost")


def closure_request_key(node_id: str) -> str:
    """How the re-routes asked by a node's closure are counted (``requested_by``, moves)."""
    return f"node-closure:{node_id}"


@dataclass(frozen=True, slots=True)
class Move:
    """One re-routed order: the decision it left and the one it took."""

    order_id: str
    before: OrderState
    after: OrderState
    lane: str  # the key of the lane change (or `node-closure:<node>`) that asked for it
    why: str = ""  # operators.reroute.AT_RISK or CANNOT_DELIVER: why it was re-planned


@dataclass
class RerouteRun:
    """One run's replay plus what re-routing did in it."""

    result: ReplayResult
    reroute: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    exposed: set[str] = field(default_factory=set)  # orders a forecast endangered while open
    moves: list[Move] = field(default_factory=list)
    requested_by: dict[str, int] = field(default_factory=dict)  # lane/closure key -> requests
    #: Orders asked for that kept their plan by the threshold -> the key that asked.
    kept: dict[str, str] = field(default_factory=dict)
    #: Every order judged -> its kept plan's miss probability (``judge_kept``; the last one).
    judged: dict[str, float] = field(default_factory=dict)
    ledger: LedgerMirror | None = None  # the stock at the end of the run


class AvoidingPlanner:
    """The planner as the replay prepares its batches: with the closed-node mask the router
    adds to every wave's orders (`dataflows/router_requests.py: _avoid_closed_nodes`), and
    without it when no closure blocks a node (``closed`` None: the planner's own path). The
    base replay prepares without outcomes (no rules in an evaluation), so this supplies them;
    everything else, ``plan`` and ``kept`` included, is the planner's."""

    def __init__(self, planner: Planner) -> None:
        self._planner = planner
        self.closed: np.ndarray | None = None  # nodes an order released now must avoid

    def prepare(self, orders: Sequence[OrderData],
                outcomes: Sequence[Outcome] | None = None) -> Prepared:
        if self.closed is None:
            return self._planner.prepare(orders, outcomes)
        base = outcomes if outcomes is not None else [EMPTY] * len(orders)
        return self._planner.prepare(orders, [avoid(o, self.closed) for o in base])

    @property
    def kept(self) -> Any:
        return self._planner.kept

    @kept.setter
    def kept(self, value: Any) -> None:
        self._planner.kept = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._planner, name)


class ClockedReplayer(Replayer):
    """``Replayer`` with pick-ups on a simulated clock and (optionally) predictive re-routing."""

    def __init__(self, policy: Any, batch_size: int, reroute: bool,
                 at_pickup: bool = True, threshold: float = 0.0) -> None:
        super().__init__(policy, batch_size)
        self.at_pickup = at_pickup  # False: the former every-open-order selection
        self.threshold = threshold  # the kept plan's miss probability that asks for a re-plan
        self._why: dict[str, str] = {}  # order -> why it is re-planned (operators.reroute)
        self.clock = node_clock(self.network)
        self._decided: dict[str, int] = {}  # order -> its last decision's time (if moved)
        self.run = RerouteRun(self.result, reroute, ledger=self.ledger)
        self.created: dict[str, Mapping[str, Any]] = {}
        self._pickups: list[tuple[int, str, int, int]] = []  # (ms, order, node, version)
        self._open: dict[str, set[int]] = {}  # order -> nodes not yet picked up (its version)
        self._changes: list[LaneHealth] = []
        self._asked_by: dict[str, str] = {}  # order -> lane/closure key of its request
        self.closures: dict[str, NodeClosure] = {}  # node id -> its closure record
        self._closure_changes: list[NodeClosure] = []
        self.planner: AvoidingPlanner = AvoidingPlanner(policy.planner)  # type: ignore[assignment]

    # -- the clock -----------------------------------------------------------------------------

    def step(self, now: int, evs: Sequence[Mapping[str, Any]]) -> None:
        """One window: pick-ups due, side events, orders, then re-routes of what turned bad."""
        self.pick_up(now)
        orders = []
        for ev in evs:
            if str(ev["type"]).startswith("order."):
                orders.append(ev)
                if ev["type"] == "order.created":
                    self.created.setdefault(str(ev["order_id"]), ev)
            else:
                self.side_event(ev)
        self.planner.closed = (closed_mask(self.closures.values(), self.clock, now)
                               if self.closures else None)
        for wave in _waves(orders):
            self.wave(wave, now)
        if self._changes or self._closure_changes:
            changes, self._changes = self._changes, []
            closing, self._closure_changes = self._closure_changes, []
            self.reroute_pass(changes, now, closing)

    def pick_up(self, now: int) -> None:
        """Hand over every shipment whose ready time has come: its reservation is consumed."""
        heap, states = self._pickups, self.result.orders
        while heap and heap[0][0] <= now:
            at, oid, node, version = heapq.heappop(heap)
            st, left = states.get(oid), self._open.get(oid)
            if st is None or st.version != version or st.cancelled or left is None:
                continue  # moved, cancelled or re-addressed since: a stale pick-up
            c = self.closures.get(self.network.nodes[node].id)
            if c is not None and overlaps(c, at, at):  # the node is closed: the parcel waits
                if c.valid_until is not None:  # for the first pick-up slot after it reopens
                    again = round(self.clock.pickup(node, c.valid_until))
                    heapq.heappush(heap, (again, oid, node, version))
                continue
            self.ledger.ship(oid, self.network.nodes[node].id)
            left.discard(node)
            if not left:
                del self._open[oid]

    def side_event(self, ev: Mapping[str, Any]) -> None:
        if ev["type"] == "node.closure":  # the routing flow's keyed step per node
            key = closure_key(ev)
            new, changed = update_closure(self.closures.get(key), ev)
            if new is not None:
                self.closures[key] = new
            if changed is not None:
                self._closure_changes.append(changed)
            return
        before = self.lane_state.get(lane_key(ev)) if ev["type"] == "lane.status" else None
        super().side_event(ev)
        if ev["type"] == "lane.status":
            after = self.lane_state.get(lane_key(ev))
            if after is not None and after is not before:  # the keyed step published a change
                self._changes.append(after)

    def plan(self, pending: list[tuple[OrderData, int]], now: int) -> None:
        super().plan(pending, now)
        for order, _ in pending:
            st = self.result.orders[order.order_id]
            if self.planner.closed is not None and st.reason == "restricted-by-rules":
                st.reason = CLOSED  # no rules here: only a closure restricts (the router's)
            self._register(order.order_id)

    def _register(self, oid: str) -> None:
        """Schedule the pick-ups of the order's current plan (none when unroutable)."""
        st = self.result.orders[oid]
        self._open.pop(oid, None)
        if st.plan is None:
            return
        net = self.network
        nodes = set()
        for sh in st.plan.shipments:
            k = sh.node
            at = round(ready_ms(st.planned_ms, float(net.node_utc_offset[k]),
                                float(net.node_cutoff_hour[k]), float(net.node_handling_hours[k])))
            heapq.heappush(self._pickups, (at, oid, k, st.version))
            nodes.add(k)
        self._open[oid] = nodes

    # -- re-routing ----------------------------------------------------------------------------

    def _record(self, oid: str) -> OrderRecord:
        """The order book's record of an open order, as the router wrote it."""
        st = self.result.orders[oid]
        assert st.plan is not None
        order = st.order
        reservations: dict[str, list[list[Any]]] = {}
        for sh in st.plan.shipments:
            acc = reservations.setdefault(self.network.nodes[sh.node].id, [])
            acc.extend([order.lines[i].sku, order.lines[i].qty] for i in sh.lines)
        created = self.created[oid]
        decided = self._decided.get(oid, st.planned_ms)
        decision = routed_decision(order, st.version, created, st.plan, self.network, [],
                                   decided, decided)
        return OrderRecord(str(created["event_id"]), st.version, DecisionStatus.ROUTED,
                           decision, order, reservations, reservation_id(oid, st.version))

    def _open_at(self, nodes: set[int]) -> tuple[dict[str, list[str]], dict[str, bytes]]:
        """The open reservations of ``nodes`` (node id -> reservation ids) and the records of
        their orders: what the flow's steps read from the ledger and the order book."""
        open_by_node: dict[str, list[str]] = {}
        raw: dict[str, bytes] = {}
        for oid, left in self._open.items():
            if not left & nodes or self.result.orders[oid].cancelled:
                continue
            rec = self._record(oid)
            raw[oid] = rec.dumps()
            for k in left & nodes:
                open_by_node.setdefault(self.network.nodes[k].id, []).append(rec.resv_id)
        return open_by_node, raw

    def _ask(self, oid: str, key: str, raw: Mapping[str, bytes],
             requested: dict[str, OrderRecord]) -> None:
        """One re-route request (only watched without re-routing: the order is exposed)."""
        self.run.exposed.add(oid)
        if not self.run.reroute:
            return
        self.run.counts["requested"] += 1
        self.run.requested_by[key] = self.run.requested_by.get(key, 0) + 1
        if oid not in requested:
            requested[oid] = OrderRecord.loads(raw[oid])
            self._asked_by[oid] = key

    def reroute_pass(self, changes: list[LaneHealth], now: int,
                     closing: Sequence[NodeClosure] = ()) -> None:
        """The flow's ``RerouteRequests`` on this window's lane changes and its
        ``ClosureRerouteRequests`` on its closure changes, then (with re-routing on) the
        router's handling of the requests."""
        requested: dict[str, OrderRecord] = {}
        ids = self.network.node_index
        for health in to_replan(changes, now):
            origin = {ids[n] for n in nodes_on_origin(health, self.network)}
            open_by_node, raw = self._open_at(origin)
            records = open_records(open_by_node, raw, lane_carrier(health))
            for req in requests_for_lane(health, records, self.network, now, self.at_pickup,
                                         self.clock):
                self._ask(req["order_id"], health.key, raw, requested)
        for c in closing:
            if not announced(c, now) or c.key not in ids:
                continue
            open_by_node, raw = self._open_at({ids[c.key]})
            for oid in closure_endangered(c, open_records(open_by_node, raw), self.clock, now):
                self._ask(oid, closure_request_key(c.key), raw, requested)
        if requested:
            self._replan(requested, now)

    def _replan(self, requested: dict[str, OrderRecord], now: int) -> None:
        states, counts = self.result.orders, self.run.counts
        pending: list[tuple[OrderRecord, dict[str, list[tuple[str, int]]]]] = []
        for oid, rec in requested.items():
            st, holds = states.get(oid), self.ledger.holds(oid)
            if st is None or st.cancelled or st.plan is None or not set(rec.reservations) <= set(
                    holds):
                counts["not-open"] += 1  # picked up (or gone) meanwhile: it stays
                continue
            judged = judge_kept(rec, self.lane_state.values(), self.closures, self.network,
                                self.policy.planner.model, self.clock, now)
            why = judged.verdict(self.threshold)
            self.run.judged[oid] = judged.miss
            if why == KEPT:  # safe enough where it is: no re-plan (the router's `_judge_kept`)
                counts[KEPT] += 1
                self.run.kept[oid] = self._asked_by.get(oid, "")
                continue
            self._why[oid] = why
            pending.append((rec, holds))
        day, lanes = day_of(now), self.lanes(now)
        # what the router's `PlanMoves._keep_clocks` does: a node the order is held at keeps
        # its handling clock in the re-plan
        self.planner.kept = kept_ready([rec for rec, _ in pending], self.clock)
        try:
            self._replan_rounds(pending, day, lanes, now)
        finally:
            self.planner.kept = {}

    def _replan_rounds(self, pending: list[tuple[OrderRecord, dict[str, list[tuple[str, int]]]]],
                       day: str, lanes: Any, now: int) -> None:
        counts, net = self.run.counts, self.network
        for round_no in range(MAX_ROUNDS):
            if not pending:
                return
            last = round_no + 1 == MAX_ROUNDS
            prep = self.planner.prepare([rec.order for rec, _ in pending])
            atp, load = self.ledger.availability(prep.skus, day)
            for _, holds in pending:
                credit_holds(atp, prep.skus, holds, net.node_index)
            plans = self.policy.plan(prep, atp, load, lanes, now)
            self.result.batches += 1
            retry = []
            for (rec, holds), plan in zip(pending, plans, strict=True):
                if isinstance(plan, Unroutable) and plan.reason == EXHAUSTED:
                    if not last:
                        retry.append((rec, holds))
                        continue
                    plan = Unroutable("no-stock")
                verdict = move_verdict(plan, rec.decision, net)
                if verdict != "moved":
                    counts[verdict] += 1
                    continue
                assert isinstance(plan, Plan)
                if self._move(rec.order, plan, holds, now):
                    counts["moved"] += 1
                elif last:
                    counts["lost"] += 1  # the new plan could not be held: the old one stays
                else:
                    retry.append((rec, holds))
            pending = sorted(retry, key=lambda p: -p[0].order.priority)

    def _move(self, order: OrderData, plan: Plan, holds: Mapping[str, list[tuple[str, int]]],
              now: int) -> bool:
        """Take the new plan in full, then let the old one go; else keep the old one."""
        oid, idx = order.order_id, self.network.node_index
        before = self.result.orders[oid]
        self.ledger.release(oid)  # the mirror checks and takes at once: same end state
        parts = {sh.node: [(order.lines[i].sku, order.lines[i].qty) for i in sh.lines]
                 for sh in plan.shipments}
        if not self.ledger.reserve(oid, parts, day_of(now)):
            restored = self.ledger.reserve(oid, {idx[n]: lines for n, lines in holds.items()},
                                           day_of(before.planned_ms))
            assert restored, "the old plan's units were just released"
            return False
        assert before.plan is not None
        kept = {sh.node for sh in before.plan.shipments}
        released = (before.planned_ms if all(sh.node in kept for sh in plan.shipments)
                    else now)  # a carrier swap at the same node(s) keeps its hand-over
        after = OrderState(order, before.version + 1, plan, "", released)
        self._decided[oid] = now
        self.result.orders[oid] = after
        self._register(oid)
        self.run.moves.append(Move(oid, before, after, self._asked_by.get(oid, ""),
                                   self._why.get(oid, "")))
        return True


def run(events: Sequence[Mapping[str, Any]], network: Network, config: Any, *, reroute: bool,
        at_pickup: bool = True, batch_ms: int = 1000, batch_size: int = 1000) -> RerouteRun:
    """Replay a time-ordered stream through the production planner, re-routing or not
    (``at_pickup=False``: the former every-open-order selection), with the configured
    threshold on the kept plan's miss probability (``config.reroute_miss_threshold``)."""
    r = ClockedReplayer(make_policy("fulfil", network, config), batch_size, reroute, at_pickup,
                        float(config.reroute_miss_threshold))
    if events:
        r.result.first_ms = int(events[0]["occurred_at"])
        r.result.last_ms = int(events[-1]["occurred_at"])
    for now, evs in windows(events, batch_ms):
        r.step(now, evs)
    return r.run
