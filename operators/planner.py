"""Planning a batch: orders + stock + lane health -> the best plan (and runner-up) per order.

Pure: no Redis, no Kafka. The router reads stock for exactly the skus `prepare` lists, then calls
`plan`; all heavy work is two numba calls (candidate generation, scoring) for the whole batch.
Only the winners are unpacked into Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.allocation import allocate
from operators.candidates import (
    BatchInput,
    CandidateParams,
    Constraints,
    LaneArrays,
    NetworkArrays,
    OrderBatch,
    build_candidates,
    haversine_km,
    pack_batch,
    ready_ms,
)
from operators.delivery_model import ModelArrays
from operators.emissions import G_PER_KG, co2e_g
from operators.kept_clock import Kept, keep_clock
from operators.network import Network
from operators.orders import OrderData
from operators.risk import fill_miss_probability, load_model
from operators.rules import Outcome
from operators.scoring import Feature, Weights, score_batch

EXHAUSTED = "exhausted-in-batch"
#: The feature columns a winner's plan reports: distance, cost, CO2e, miss probability.
_UNPACK_COLS = [Feature.DISTANCE_KM, Feature.COST, Feature.CO2E_KG, Feature.MISS_PROB]
MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class Shipment:
    node: int
    service: int
    lines: tuple[int, ...]  # indices into the order's lines
    est_ms: int
    distance_km: float
    cost: float
    co2e_kg: float = 0.0  # estimated, operators.emissions (the kernel's CO2E_KG for one node)


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class RunnerUp:
    nodes: tuple[int, ...]
    service: int
    score: float


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class Plan:
    shipments: tuple[Shipment, ...]
    est_ms: int
    score: float
    cost: float
    runner_up: RunnerUp | None
    reasons: tuple[str, ...]
    risk: float = 0.0  # P(missing the promise), the delivery-time model's (operators/risk.py)


# not `frozen`: a hot-path value, see operators.orders.Line
@dataclass(slots=True, unsafe_hash=True)
class Unroutable:
    """Why an order has no plan: no-stock | no-coverage | lanes-blocked-or-full |
    unknown-destination | restricted-by-rules | lost-races, or EXHAUSTED (orders earlier in the
    batch took the stock its candidates need; the router re-plans it on fresh stock)."""

    reason: str


_PLACE_HOLDER = Unroutable("")  # a winner's slot in `Planner.plan` until it is unpacked


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch packed for the kernels; `index[i]` is the batch row of order i, or -1."""

    orders: tuple[OrderData, ...]
    batch: OrderBatch
    skus: list[str]
    index: tuple[int, ...]
    rules: Constraints | None = None  # None: no order of the batch is constrained
    restricted: frozenset[int] = frozenset()  # batch rows whose rules restrict candidates


class Planner:
    """Holds what is fixed per network and configuration; `plan` is called per batch."""

    def __init__(self, network: Network, config: Any, model: ModelArrays | None = None) -> None:
        self.network = network
        self.arrays = NetworkArrays.from_network(network)
        self.model = model if model is not None else load_model(
            network, getattr(config, "delivery_model_path", None))
        self.weights = Weights.from_mapping(dict(config.weights)).as_array()
        self.params = CandidateParams(
            max_nodes=config.max_nodes, max_splits=config.max_splits,
            enforce_capacity=config.enforce_capacity,
        )
        self._express = [svc.level == "express" for svc in network.services]
        self._node_region = network.node_region.tolist()
        self._any_delay = False
        #: Re-routes of the next batches: order id -> {node: the pick-up its current plan expects
        #: there}. The router sets it per wave; a candidate that keeps such a node keeps that
        #: node's handling clock (operators/kept_clock.py).
        self.kept: Kept = {}

    def prepare(self, orders: Sequence[OrderData],
                outcomes: Sequence[Outcome] | None = None) -> Prepared:
        """Pack a batch for the kernels; `outcomes` are the orders' business-rule outcomes."""
        rows: list[tuple[Any, ...]] = []
        index: list[int] = []
        for order in orders:
            where = self.network.locate(order.destination)
            if where is None:
                index.append(-1)
                continue
            index.append(len(rows))
            lines = [(ln.sku, ln.qty, ln.kg * ln.qty) for ln in order.lines]
            rows.append((where[0], where[1], where[2], order.promised_by, lines))
        batch, skus = pack_batch(rows)
        rules, restricted = self._constraints(outcomes, index, len(rows))
        return Prepared(tuple(orders), batch, skus, tuple(index), rules, restricted)

    def _constraints(self, outcomes: Sequence[Outcome] | None, index: list[int], n_rows: int
                     ) -> tuple[Constraints | None, frozenset[int]]:
        """Per-row rule arrays, or None when no order has a rule that shapes candidates."""
        if outcomes is None:
            return None, frozenset()
        shaped = [(row, o) for row, o in zip(index, outcomes, strict=True) if row >= 0 and (
            o.restricts or o.node_pref is not None or o.svc_pref is not None)]
        if not shaped:
            return None, frozenset()
        n_nodes, _, n_svc = self.arrays.shape
        node_ok = np.ones((n_rows, n_nodes), dtype=np.bool_)
        svc_ok = np.ones((n_rows, n_svc), dtype=np.bool_)
        node_pref = np.ones((n_rows, n_nodes), dtype=np.bool_)
        svc_pref = np.ones((n_rows, n_svc), dtype=np.bool_)
        max_splits = np.full(n_rows, self.params.max_splits, dtype=np.int64)
        for row, o in shaped:
            if o.node_ok is not None:
                node_ok[row] = o.node_ok
            if o.svc_ok is not None:
                svc_ok[row] = o.svc_ok
            if o.node_pref is not None:
                node_pref[row] = o.node_pref
            if o.svc_pref is not None:
                svc_pref[row] = o.svc_pref
            if o.max_splits is not None:
                max_splits[row] = min(o.max_splits, self.params.max_splits)
        restricted = frozenset(row for row, o in shaped if o.restricts)
        return Constraints(node_ok, svc_ok, node_pref, svc_pref, max_splits), restricted

    def plan(self, prep: Prepared, atp: np.ndarray, load: np.ndarray, lanes: LaneArrays,
             now_ms: int) -> list[Plan | Unroutable]:
        """Best plan per order (in `prep.orders` order), or why there is none."""
        out: list[Plan | Unroutable] = []
        if prep.batch.n_orders == 0:
            return [Unroutable("unknown-destination") for _ in prep.orders]
        full: BatchInput = prep.batch.with_stock(atp, load)
        cands = build_candidates(full, self.arrays, lanes, now_ms, self.params, prep.rules)
        fill_miss_probability(full, cands, self.arrays, self.model, now_ms)
        if self.kept:
            keep_clock(prep.orders, prep.index, full, cands, self.arrays, self.model, self.kept,
                       now_ms)
        scores, best, second = score_batch(cands.X, cands.offsets, cands.mask, self.weights)
        chosen = allocate(full, cands, scores, self.arrays.node_capacity,
                          self.params.enforce_capacity)
        best_l, second_l, chosen_l = best.tolist(), second.tolist(), chosen.tolist()
        self._any_delay = bool(lanes.delay_hours.any())
        picks: list[tuple[int, int, int, int]] = []  # (order's position, row, chosen, runner-up)
        for row in prep.index:
            if row < 0:
                out.append(Unroutable("unknown-destination"))
                continue
            b = best_l[row]
            if b < 0:
                why = why_none(full, cands, row)
                if row in prep.restricted and why != "no-stock":
                    why = "restricted-by-rules"
                out.append(Unroutable(why))
                continue
            c = chosen_l[row]
            if c < 0:
                out.append(Unroutable(EXHAUSTED))
                continue
            # The runner-up explains the choice: the second best, or the best if the batch's
            # other orders had taken its stock.
            picks.append((len(out), row, c, second_l[row] if c == b else b))
            out.append(_PLACE_HOLDER)  # replaced by the plan below
        if picks:
            plans = self._unpack_many(prep.orders, full, cands, picks, scores, lanes, now_ms)
            for (pos, *_), plan in zip(picks, plans, strict=True):
                out[pos] = plan
        return out

    def _unpack_many(self, orders: Sequence[OrderData], batch: BatchInput, cands: Any,
                     picks: list[tuple[int, int, int, int]], scores: np.ndarray,
                     lanes: LaneArrays, now_ms: int) -> list[Plan]:
        """The winners as Plans. Their figures are gathered from the candidate arrays in a few
        numpy calls for the whole batch: reading them one numpy scalar at a time per order cost
        more than building the Plan."""
        ms = np.asarray([m for _, _, m, _ in picks], dtype=np.int64)
        m2c = np.maximum(np.asarray([m2 for *_, m2 in picks], dtype=np.int64), 0)
        svc_l, est_l = cands.service[ms].tolist(), cands.est_ms[ms].tolist()
        nn_l, score_l = cands.n_nodes[ms].tolist(), scores[ms].tolist()
        feats = cands.X[ms][:, _UNPACK_COLS].tolist()  # distance, cost, co2e, miss probability
        a0_l, a1_l = cands.assign_offsets[ms].tolist(), cands.assign_offsets[ms + 1].tolist()
        svc2_l, score2_l = cands.service[m2c].tolist(), scores[m2c].tolist()
        assign, delay = cands.assign, lanes.delay_hours
        plans: list[Plan] = []
        for k, (pos, row, _, m2) in enumerate(picks):
            s, est_ms = svc_l[k], est_l[k]
            promised_by = orders[pos].promised_by  # `pos`: the order's place in the batch
            dist, cost, co2e, miss = feats[k]
            shipments = tuple(self._shipments_of(batch, row, assign[a0_l[k]:a1_l[k]].tolist(), s,
                                                 nn_l[k], est_ms, (dist, cost, co2e), lanes,
                                                 now_ms))
            total = cost if len(shipments) == 1 else float(sum(sh.cost for sh in shipments))
            runner = None
            if m2 >= 0:
                runner = RunnerUp(tuple(cands.nodes(m2)), svc2_l[k], score2_l[k])
            reasons = ["single-node" if len(shipments) == 1 else "split",
                       "on-time" if est_ms <= promised_by else "late-vs-promise"]
            if self._express[s]:
                reasons.append("express")
            if self._any_delay:
                region = int(batch.dest_region[row])
                if any(delay[self._node_region[sh.node], region, s] > 0 for sh in shipments):
                    reasons.append("lane-delay")
            plans.append(Plan(shipments, est_ms, score_l[k], total, runner, tuple(reasons),
                              miss))
        return plans

    def shipments(self, batch: BatchInput, cands: Any, row: int, m: int, lanes: LaneArrays,
                  now_ms: int) -> list[Shipment]:
        """The shipments of candidate ``m`` of batch order ``row`` (also the evaluator's)."""
        x = cands.X[m].tolist()
        return self._shipments_of(batch, row, cands.assignment(m).tolist(), int(cands.service[m]),
                                  int(cands.n_nodes[m]), int(cands.est_ms[m]),
                                  (x[Feature.DISTANCE_KM], x[Feature.COST], x[Feature.CO2E_KG]),
                                  lanes, now_ms)

    def _shipments_of(self, batch: BatchInput, row: int, assign: list[int], s: int,
                      n_nodes: int, est_ms: int, figures: tuple[float, float, float],
                      lanes: LaneArrays, now_ms: int) -> list[Shipment]:
        """A candidate's shipments from its line assignment, service, node count, estimate and
        (distance, cost, CO2e) features."""
        if n_nodes == 1:  # most orders: the candidate's features already are its one shipment
            return [Shipment(assign[0], s, tuple(range(len(assign))), est_ms, *figures)]
        return self._split_shipments(batch, row, assign, s, int(batch.dest_region[row]), lanes,
                                     now_ms)

    def _split_shipments(self, batch: BatchInput, row: int, assign: list[int], s: int,
                         region: int, lanes: LaneArrays, now_ms: int) -> list[Shipment]:
        """Per-shipment estimate, distance, cost and CO2e of a split plan (the kernel's
        formulas)."""
        net = self.arrays
        lat, lng = float(batch.dest_lat[row]), float(batch.dest_lng[row])
        l0 = int(batch.line_offsets[row])
        by_node: dict[int, list[int]] = {}
        for i, node in enumerate(assign):
            by_node.setdefault(node, []).append(i)
        shipments = []
        for node, lines in by_node.items():
            kg = float(sum(batch.line_kg[l0 + i] for i in lines))
            dist = float(haversine_km(net.node_lat[node], net.node_lng[node], lat, lng))
            o = int(net.node_region[node])
            est = round(
                ready_ms(now_ms, net.node_utc_offset[node], net.node_cutoff_hour[node],
                         net.node_handling_hours[node])
                + net.lane_transit_mean[o, region, s] * MS_PER_DAY
                + lanes.delay_hours[o, region, s] * MS_PER_HOUR
            )
            cost = float(net.node_handling_cost[node] + net.service_base_cost[s]
                         + net.service_per_kg[s] * kg + net.service_per_100km[s] * dist / 100.0)
            co2e = co2e_g(dist, kg, float(net.service_co2e[s])) / G_PER_KG
            shipments.append(Shipment(node, s, tuple(lines), est, dist, cost, co2e))
        return shipments


def why_none(batch: BatchInput, cands: Any, row: int) -> str:
    """Why batch order ``row`` has no feasible candidate: candidates but all masked, a line no
    node holds enough of, or no lane covers it (also the evaluator's)."""
    if cands.offsets[row + 1] > cands.offsets[row]:
        return "lanes-blocked-or-full"
    l0, l1 = batch.line_offsets[row], batch.line_offsets[row + 1]
    for j in range(l0, l1):
        if batch.atp[:, batch.line_sku[j]].max(initial=0) < batch.line_qty[j]:
            return "no-stock"
    return "no-coverage"
