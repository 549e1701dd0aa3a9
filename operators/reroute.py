"""Which open orders a lane disruption endangers, and the re-route requests for them.

When a lane turns delayed or out (now, or forecast within the routing horizon), orders already
routed over it but not yet handed to the carrier are still movable: their stock is only
reserved. This module decides, from the lane record and the orders' records, which of them to
re-plan: those whose parcel meets the disruption when its node's carrier picks it up (`meets`,
on the node's clock as node closures use it); the router then moves each one only if a
different feasible plan exists (see `dataflows/router.py`, `order.reroute_requested`). Pure:
the flow step does the Redis reads.
The second half is the router's side as pure functions (`judge_kept`, `move_verdict`,
`credit_holds`), so the offline with/without comparison (`operators/eval/reroute_replay.py`)
runs this very policy. `judge_kept` is the risk threshold: an order asked for is re-planned
only when the plan it has, under the lanes and closures as they now are, would miss its promise
with a probability above `Config.reroute_miss_threshold` (or cannot deliver at all); most
parcels a disruption meets have slack enough to absorb it (docs/predictive.md, *Evidence*).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from operators.candidate_kernel import haversine_km
from operators.closures import NodeClock, NodeClosure, node_clock, overlaps
from operators.delivery_kernel import N_MODEL_FEATURES, miss_probability
from operators.delivery_model import ModelArrays
from operators.lanes import WILDCARD, LaneHealth, in_force
from operators.network import Network
from operators.orders import OrderRecord
from operators.planner import Plan, Unroutable
from schemas.enums import DecisionStatus, OrderEventType

#: At most this many requests per lane change: a carrier-wide outage on a busy network should
#: re-plan in waves of new events, not flood one batch (the rest follow as the lane stays bad).
MAX_REQUESTS = 20_000
DAY_MS = 86_400_000


def nodes_on_origin(health: LaneHealth, network: Network) -> list[str]:
    """The nodes whose parcels can use the lane (its origin region, or every node)."""
    origin = health.key.split("|")[2]
    return [n.id for n in network.nodes if origin in (WILDCARD, n.region)]


def endangered(health: LaneHealth, records: Iterable[tuple[str, OrderRecord]],
               network: Network, now_ms: int | None,
               clock: NodeClock | None = None) -> list[str]:
    """Order ids (from (open reservation's node, record) pairs) whose parcel from that node
    uses the lane (same carrier, and service if given, origin and destination region) *and
    meets the disruption at its pick-up* (`meets`).

    The pick-up is the node's own clock (`operators.closures.NodeClock`, as node closures
    judge it): `ready_ms` of the decision's time, or now when that is past (the parcel is still
    there). A parcel handed over before a delay starts is not touched by it, so asking to
    re-plan it would only move orders that are fine where they are (docs/predictive.md,
    *Evidence*). After a re-route the decision's time is the re-route's, so the estimate errs
    late: at worst it asks once too often, never too rarely.

    ``now_ms=None`` is the former selection, every open order on the lane whatever its pick-up:
    kept only so the offline comparison (`benchmarks/reroute_eval.py --every-open`) can show
    the difference; the engine never uses it."""
    carrier, service, origin, dest = health.key.split("|")
    clock = clock or node_clock(network)
    out: list[str] = []
    for node, rec in records:
        if rec.status != DecisionStatus.ROUTED or node not in rec.reservations:
            continue
        k = network.node_index[node]
        if origin not in (WILDCARD, network.nodes[k].region):
            continue
        where = network.locate(rec.order.destination)
        if dest != WILDCARD and (where is None or network.regions[where[2]] != dest):
            continue
        decision = orjson.loads(rec.decision)
        for s in decision["shipments"]:
            if not (s["node_id"] == node and s["carrier"] == carrier
                    and service in (WILDCARD, s["service"])):
                continue
            if now_ms is None or where is None:
                out.append(rec.order.order_id)
                break
            pickup = max(now_ms, round(clock.pickup(k, int(decision["timings"]["decided_at"]))))
            svc = network.service_index.get(f"{s['carrier']}/{s['service']}")
            p90 = (math.inf if svc is None else
                   float(network.lane_transit_p90[network.node_region[k], where[2], svc]))
            if meets(health, pickup, p90):
                out.append(rec.order.order_id)
                break
    return list(dict.fromkeys(out))[:MAX_REQUESTS]


def meets(health: LaneHealth, pickup_ms: int, transit_p90_days: float) -> bool:
    """Does a parcel handed to the carrier at ``pickup_ms`` meet the lane's disruption? A delay
    holds up parcels handed over while it lasts; an outage also stops those still on the road
    when it starts (within the lane's p90 transit: cautious, a parcel that usually arrives
    before it still counts). The ground truth's reading of a lane.status
    (`operators/eval/truth.py`), and the node closures' rule of comparing pick-up and window."""
    start = health.updated_at if health.valid_from is None else health.valid_from
    if health.valid_until is not None and pickup_ms >= health.valid_until:
        return False
    if health.status == "outage" or health.capacity_factor <= 0.0:
        return pickup_ms + transit_p90_days * DAY_MS > start
    return pickup_ms >= start


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


def lane_carrier(health: LaneHealth) -> str:
    """The carrier of a lane record (`carrier|service|origin|dest`; may be the wildcard)."""
    return health.key.split("|", 1)[0]


def open_records(open_by_node: Mapping[str, list[str]], raw: Mapping[str, bytes],
                 carrier: str | None = None) -> list[tuple[str, OrderRecord]]:
    """(node, record) for every open reservation whose order the book still knows and whose
    record holds exactly that reservation (not a stale one of an earlier version).

    `carrier` (a lane disruption's, not the wildcard): records whose bytes do not hold the
    carrier's name as a JSON string are skipped unparsed. Exact, never lossy: a parcel's
    decision names its carrier as `"carrier":<that string>`. Why: a lane change scans every
    open order at its origin's nodes in the routing worker (tens of thousands in a busy
    hour), and parsing a record costs ~100x the byte search; most belong to other carriers."""
    out: list[tuple[str, OrderRecord]] = []
    name = orjson.dumps(carrier) if carrier not in (None, WILDCARD) else None
    for node, rids in open_by_node.items():
        for rid in rids:
            data = raw.get(order_of(rid))
            if data is None or (name is not None and name not in data):
                continue
            rec = OrderRecord.loads(data)
            if rec.resv_id == rid:
                out.append((node, rec))
    return out


# -- the router's side of a proactive re-route, as pure functions (also the offline replay's) --


def to_replan(changes: Iterable[LaneHealth], now_ms: int) -> list[LaneHealth]:
    """The lane changes that ask to re-plan open orders: those that weigh on a parcel shipped
    now (delayed or out, now or forecast within the horizon: `operators.lanes.in_force`)."""
    return [h for h in changes if in_force(h, now_ms)]


def requests_for_lane(health: LaneHealth, records: Sequence[tuple[str, OrderRecord]],
                      network: Network, now_ms: int, at_pickup: bool = True,
                      clock: NodeClock | None = None) -> list[dict[str, Any]]:
    """The `order.reroute_requested` events for one lane change, from the open orders of the
    nodes on its origin (`nodes_on_origin`; `open_records`): the orders whose parcel meets the
    disruption at its pick-up (`endangered`). The routing flow's `RerouteRequests` and the
    offline replay both call this; ``at_pickup=False`` (every open order on the lane) is the
    former selection, for the comparison only."""
    ids = endangered(health, records, network, now_ms if at_pickup else None, clock)
    return [reroute_request(oid, health, now_ms) for oid in ids]


# -- the risk threshold: is the plan the order has still good enough? ------------------------

#: Why a re-routed order was re-planned at all (a reason on its moved decision, after the
#: request's own): its plan's miss probability is above the threshold, or it cannot deliver.
AT_RISK = "kept-plan-at-risk"
CANNOT_DELIVER = "kept-plan-impossible"
#: The outcome of a request whose order keeps its plan without a re-plan (`fulfil_reroutes_total`).
KEPT = "kept-by-threshold"


@dataclass(frozen=True, slots=True)
class KeptPlan:
    """How the plan an order has fares under the lanes and closures as they now are."""

    miss: float  # P(missing the promise): its riskiest shipment's, 1.0 when impossible
    impossible: bool  # certainly late or undeliverable: no threshold keeps it

    def verdict(self, threshold: float) -> str:
        """`CANNOT_DELIVER` or `AT_RISK` (re-plan; move if a different plan is found) or
        `KEPT` (keep the plan, no re-plan). A threshold of 0 re-plans every order asked for
        (the former behaviour: a miss probability is never 0), 1 only impossible plans."""
        if self.impossible:
            return CANNOT_DELIVER
        return AT_RISK if self.miss > threshold else KEPT


def judge_kept(rec: OrderRecord, lanes: Iterable[LaneHealth],
               closures: Mapping[str, NodeClosure], network: Network, model: ModelArrays,
               clock: NodeClock, now_ms: int) -> KeptPlan:
    """The miss probability of the order's recorded plan, each shipment as it will really go:
    picked up on its node's clock (`NodeClock.pickup` of the decision's time, or now if that
    is past), at the node's first slot after it reopens when a closure holds it then, and
    meeting the lane records that cover its carrier service (`lane_delay_days`); the delivery
    model (`miss_probability`, the planner's risk pass) reads the result like a candidate's.

    Why here and not the planner's MISS_PROB of the kept candidate: routing treats a lane with
    a forecast as blocked or delayed for every parcel shipped now (`lanes.in_force`) and
    masks a closing node, so the planner cannot see the plan an order already has as it will
    really go; this reads each parcel's own pick-up, as the ground truth does
    (`operators/eval/truth.py`, `forecasts.ClosureTruth`). Node load and the order's local
    time are not known here and count as the model's reference (NaN), as unknowns do."""
    decision = orjson.loads(rec.decision)
    order = rec.order
    where = network.locate(order.destination)
    if where is None:
        return KeptPlan(1.0, True)
    lat, lng, rd = where
    decided = int(decision["timings"]["decided_at"])
    kg = sum(ln.kg * ln.qty for ln in order.lines)
    promise = float(order.promised_by)
    from_order = model.transit_from == "order"
    scratch = np.empty(N_MODEL_FEATURES)
    worst = 0.0
    for s in decision["shipments"]:
        k = clock.index.get(s["node_id"])
        svc = network.service_index.get(f"{s['carrier']}/{s['service']}")
        if k is None or svc is None:
            return KeptPlan(1.0, True)
        o = int(network.node_region[k])
        if not math.isfinite(float(network.lane_transit_mean[o, rd, svc])):
            return KeptPlan(1.0, True)  # the service no longer covers the lane
        planned = max(float(now_ms), clock.pickup(k, decided))
        pickup = reopened_pickup(closures.get(s["node_id"]), planned, k, clock)
        if pickup is None:
            return KeptPlan(1.0, True)  # closed with no reopening
        start = float(now_ms) if from_order else pickup
        budget = (promise - start) / DAY_MS
        waited = (pickup - planned) / DAY_MS if from_order else 0.0  # else in the budget
        delay = waited + lane_delay_days(lanes, s["carrier"], s["service"],
                                         network.regions[o], network.regions[rd], pickup,
                                         (promise - pickup) / DAY_MS)
        if budget - delay <= 0.0:
            return KeptPlan(1.0, True)  # held or stopped past the promise: certainly late
        node = network.nodes[k]
        p = miss_probability(
            model.quantile_days, model.late_logit, model.service_express, model.coef,
            model.probs, int(model.median_index), o, int(rd), int(svc), budget, delay * 24.0,
            haversine_km(node.lat, node.lng, lat, lng), kg, math.nan, math.nan, math.nan,
            scratch)  # fmt: skip
        worst = max(worst, p if p == p else 1.0)  # unknown counts as risky
    return KeptPlan(worst, False)


def reopened_pickup(c: NodeClosure | None, pickup_ms: float, k: int, clock: NodeClock
                    ) -> float | None:
    """When the carrier really takes a parcel it comes for at ``pickup_ms``: then, or, when a
    closure of its node holds it, at the node's first slot after it reopens (None: no
    reopening announced). The offline replay's and `forecasts.ClosureTruth`'s reading."""
    if c is None or not overlaps(c, pickup_ms, pickup_ms):
        return pickup_ms
    return None if c.valid_until is None else clock.pickup(k, c.valid_until)


def lane_delay_days(lanes: Iterable[LaneHealth], carrier: str, service: str, origin: str,
                    dest: str, pickup_ms: float, budget_days: float) -> float:
    """Days a parcel handed over at ``pickup_ms`` loses to the lane records covering its lane,
    as the delivery model reads an announced delay (the budget is read that much earlier).

    A delay counts when the parcel is handed over while it lasts (`meets`). An outage stops a
    parcel still on the road at its start until it ends (the ground truth's reading); with
    ``a`` = days from pick-up to its start (0 if it has started), ``D`` its remaining length
    and ``b`` the budget, the parcel is on time exactly when its transit is at most
    ``b - min(D, b - a)`` (``a < b``; else the outage cannot make it late): it either arrives
    before the outage or absorbs the whole stop. No end announced: ``D`` is infinite (only
    arriving before it starts is on time). Several outages on one lane add up (a bound)."""
    delay = 0.0
    for h in lanes:
        if h.status == "normal" or not covers(h.key, carrier, service, origin, dest):
            continue
        start = h.updated_at if h.valid_from is None else h.valid_from
        if h.valid_until is not None and pickup_ms >= h.valid_until:
            continue
        if h.status == "outage" or h.capacity_factor <= 0.0:
            a = max(start - pickup_ms, 0.0) / DAY_MS
            d = (math.inf if h.valid_until is None
                 else (h.valid_until - max(start, pickup_ms)) / DAY_MS)
            if a < budget_days:
                delay += min(d, budget_days - a)
        elif pickup_ms >= start:
            delay += h.delay_hours / 24.0
    return delay


def covers(key: str, carrier: str, service: str, origin: str, dest: str) -> bool:
    """Does a lane key (``carrier|service|origin|dest``, ``*`` = all) cover this lane?"""
    c, s, o, d = key.split("|")
    return (c == carrier and s in (WILDCARD, service) and o in (WILDCARD, origin)
            and d in (WILDCARD, dest))


Route = frozenset[tuple[str, str, str]]


def plan_route(plan: Plan, network: Network) -> Route:
    """(node id, carrier, service) of every shipment of a plan."""
    return frozenset((network.nodes[s.node].id, network.services[s.service].carrier,
                      network.services[s.service].service) for s in plan.shipments)


def decision_route(decision: bytes) -> Route:
    """(node id, carrier, service) of every shipment of a recorded routed decision."""
    return frozenset((s["node_id"], s["carrier"], s["service"])
                     for s in orjson.loads(decision)["shipments"])


def move_verdict(plan: Plan | Unroutable, kept_decision: bytes, network: Network) -> str:
    """What a proactive re-route does with its re-plan: ``no-alternative`` (no feasible plan:
    the order keeps its own), ``unchanged`` (the same nodes and carrier services) or ``moved``
    (take the new plan in full, then release the old one)."""
    if isinstance(plan, Unroutable):
        return "no-alternative"
    if plan_route(plan, network) == decision_route(kept_decision):
        return "unchanged"
    return "moved"


def credit_holds(atp: np.ndarray, skus: Sequence[str], holds: Mapping[str, Iterable[Sequence[Any]]],
                 node_index: Mapping[str, int]) -> None:
    """Count what an order's current plan holds as available to its re-plan (in place): the
    ledger credits the same units when the new reservation takes them over."""
    column = {sku: j for j, sku in enumerate(skus)}
    for node, lines in holds.items():
        k = node_index.get(node)
        for sku, qty in lines:
            j = column.get(sku)
            if k is not None and j is not None:
                atp[k, j] += int(qty)
