"""The hindsight optimum: all orders of a sample solved together as one min-cost assignment.

Why: a policy decides each order when it arrives, not knowing the orders to come; the cheapest
plan for the whole sample, found knowing every order in advance, is the yardstick that says how
far from optimal the decisions are. It is a mixed-integer programme solved exactly by HiGHS
(``scipy.optimize.milp``):

- **choices**: per order, the planner's own candidates (same kernel, same cost model, same lane
  health at the moment the order was planned), but from *every* node that holds the order
  (``max_nodes`` = all nodes), not only the nearest eight; plus "leave it unroutable" at a
  penalty of ``unrouted_penalty`` BRL per unit, so it routes whatever stock allows.
  Candidates of one line-to-node assignment that are worse in both cost and lateness than
  another service's are dropped (they can never be in an optimum).
- **stock**: per node and sku, the units chosen <= on-hand at the sample's start plus every
  increase the inventory events bring during it. Candidates are built against the stock each
  order saw (so a stocked-out pair is not offered), but the budget lets an early order use a
  receipt that arrives later: a relaxation, so the optimum is a lower bound on cost.
- **capacity**: per node and UTC day, shipments <= the node's daily capacity.
- **service**: optionally at most ``max_late`` plans expected late (the planner's estimate, the
  information every policy had) and at most ``max_risk`` expected misses (the sum of the
  planner's own miss probabilities, MISS_PROB, where the planner has that feature), so the
  optimum cannot buy its savings with broken or riskier promises; the evaluation sets both to
  what ``fulfil`` achieved on the same sample.
- **the other way round** (``minimize="late"``): the fewest plans expected late whose total cost
  stays within ``max_cost`` (cost breaks ties), which says how many late deliveries a given
  budget can avoid at best.
- **fewest expected misses** (``minimize="risk"``): the same with the sum of the planner's miss
  probabilities (MISS_PROB) in place of the late count: the expected number of late deliveries
  under the planner's delivery-time model. Given a network whose lanes are the truth's
  (``Truth.learned_network``), that is the best a policy that had learned every lane perfectly
  could expect, without knowing any single parcel's luck.
- **clairvoyant** (``truth`` given): "late" means *really* late, judged on the ground truth
  (``operators.eval.truth``: every shipment's actual transit, disruptions included) instead of
  the planner's estimate. With ``minimize="late"`` and the legacy rule's cost as ``max_cost``
  this is the fewest real late deliveries any routing of these orders could reach at that
  budget, knowing the future: a bound no policy can beat. Its pruning compares real lateness.
  With ``expected=True`` "late" is instead the probability of being really late over the lane's
  true transit (``Truth.miss_probability``; a split plan is late when any parcel is): the fewest
  late deliveries a policy can *expect* knowing every lane's true distribution and every order
  in advance, but no single parcel's luck. That is the bound for any real policy.

Only ``order.created`` events are modelled: the evaluation's sample holds no order that is later
cancelled or re-addressed. Pair rows that can never bind (all candidate demand fits) are left
out; that changes nothing in the solution and keeps the model small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from operators.candidates import BatchInput, CandidateSet, LaneArrays, build_candidates
from operators.eval.ledger import day_of
from operators.eval.policies import Policy, candidate_risk, fill_risk, shipments_of
from operators.eval.replay import OrderState, Replayer, ReplayResult, windows
from operators.eval.truth import Truth
from operators.orders import OrderData, order_from_created
from operators.planner import Plan, Planner
from operators.scoring import Feature

__all__ = ["Optimum", "solve_hindsight"]


@dataclass(frozen=True)
class Optimum:
    """The solved sample: its decisions as a replay result, and how the solve went."""

    result: ReplayResult
    objective: float
    status: str  # "optimal", or HiGHS's message when it stopped early
    variables: int
    constraints: int
    mip_gap: float
    #: minimize="late"/"risk": the fewest late plans (or expected), None unless proven optimal
    fewest: float | None = None


@dataclass
class _Batch:
    orders: list[OrderData]
    rows: list[int]  # batch row per order (-1: destination unknown)
    skus: list[str]  # the batch's sku columns (``Prepared.skus``)
    full: BatchInput
    cands: CandidateSet
    lanes: LaneArrays
    now: int


def _collect(events: Sequence[Mapping[str, Any]], planner: Planner, batch_ms: int
             ) -> tuple[list[_Batch], dict[tuple[int, str], int]]:
    """Candidates of every order at its window, on the gross stock it saw; stock budgets."""
    side = Replayer(Policy("hindsight", planner), batch_size=1 << 30)
    ledger = side.ledger
    budget: dict[tuple[int, str], int] = {}
    batches: list[_Batch] = []
    zeros = np.zeros(len(planner.network.nodes), dtype=np.int64)
    for now, evs in windows(events, batch_ms):
        orders: list[OrderData] = []
        for ev in evs:
            kind = ev["type"]
            if kind == "order.created":
                orders.append(order_from_created(ev))
                continue
            if kind in ("inventory.snapshot", "inventory.adjusted"):
                node, sku = str(ev["node_id"]), str(ev["sku"])
                k = ledger.node_index.get(node)
                before = ledger.on_hand(node, sku) if k is not None else 0
                side.side_event(ev)
                if k is not None:
                    gain = max(0, ledger.on_hand(node, sku) - before)
                    budget[(k, sku)] = budget.get((k, sku), 0) + gain
                continue
            side.side_event(ev)
        if not orders:
            continue
        prep = planner.prepare(orders)
        atp, _ = ledger.availability(prep.skus, day_of(now))
        if prep.batch.n_orders == 0:
            continue
        full = prep.batch.with_stock(atp, zeros)
        lanes = side.lanes(now)
        cands = build_candidates(full, planner.arrays, lanes, now, planner.params)
        fill_risk(planner, full, cands, now)
        batches.append(_Batch(orders, list(prep.index), prep.skus, full, cands, lanes, now))
    return batches, budget


def _late_flags(batch: _Batch, order: OrderData, row: int, truth: Truth | None,
                expected: bool = False) -> dict[int, float]:
    """Per feasible candidate of ``order``: 1 when expected late (the planner's estimate), or,
    with ``truth``, really late (some shipment really arrives after the promise), else 0; with
    ``expected`` the true probability of that instead."""
    c = batch.cands
    out: dict[int, float] = {}
    region = int(batch.full.dest_region[row])
    promise = order.promised_by
    for m in range(int(c.offsets[row]), int(c.offsets[row + 1])):
        if not c.mask[m]:
            continue
        if truth is None:
            out[m] = float(c.est_ms[m] > promise)
            continue
        s = int(c.service[m])
        if expected:
            on_time = 1.0
            for node in c.nodes(m):
                on_time *= 1.0 - truth.miss_probability(node, s, region, batch.now, promise)
            out[m] = 1.0 - on_time
        else:
            out[m] = float(any(truth.delivered_ms(order.order_id, node, s, region, batch.now)
                               > promise for node in c.nodes(m)))
    return out


def _pareto(cands: CandidateSet, late: Mapping[int, float], risk: np.ndarray) -> list[int]:
    """Feasible candidates of one order (the keys of ``late``) that no other service of the
    same line-to-node assignment beats on cost, lateness and risk at once (ties: the lower
    index stays)."""
    groups: dict[tuple[int, ...], list[tuple[float, float, float, int]]] = {}
    for m, is_late in late.items():
        key = tuple(cands.assignment(m).tolist())
        groups.setdefault(key, []).append((float(cands.X[m, Feature.COST]), is_late,
                                           float(risk[m]), m))
    keep = []
    for group in groups.values():
        group.sort()
        for i, (c, late, r, m) in enumerate(group):
            if not any(c2 <= c and late2 <= late and r2 <= r
                       for c2, late2, r2, _ in group[:i]):
                keep.append(m)
    return sorted(keep)


def solve_hindsight(events: Sequence[Mapping[str, Any]], network: Any, config: Any, *,
                    max_late: int | None = None, max_risk: float | None = None,
                    minimize: str = "cost", all_nodes: bool = True,
                    max_cost: float | None = None, batch_ms: int = 1000,
                    unrouted_penalty: float = 1000.0, time_limit_s: float = 300.0,
                    truth: Truth | None = None, expected: bool = False) -> Optimum:
    """Solve the ``order.created`` events of ``events`` together (see the module docstring).

    ``truth``: judge lateness (``max_late``, ``minimize="late"``) on what really happened;
    with ``expected`` on the true probability of it.

    ``unrouted_penalty`` is per unit left unroutable: BRL when minimizing cost, late plans when
    minimizing lateness (either way larger than anything routing an order can save).
    """
    if minimize not in ("cost", "late", "risk"):
        raise ValueError("solve_hindsight: minimize must be 'cost', 'late' or 'risk'; "
                         f"got {minimize!r}")
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    planner = Planner(network, config)
    if all_nodes:  # every node holding the order, not only the planner's nearest max_nodes
        planner.params = replace(planner.params, max_nodes=len(network.nodes))
    batches, budget = _collect(events, planner, batch_ms)

    var_cost: list[float] = []
    var_late: list[float] = []
    var_risk: list[float] = []
    var_ref: list[tuple[int, int, int] | None] = []  # (batch, row, candidate) or None: unrouted
    order_of_var: list[int] = []
    uses: dict[tuple[int, str], dict[int, int]] = {}  # (node, sku) -> var -> units
    node_day: dict[tuple[int, int], list[int]] = {}
    orders: list[tuple[OrderData, int]] = []  # (order, batch)
    for b, batch in enumerate(batches):
        c = batch.cands
        skus = batch.skus
        risk = candidate_risk(c)
        for order, row in zip(batch.orders, batch.rows, strict=True):
            i = len(orders)
            orders.append((order, b))
            late = {} if row < 0 else _late_flags(batch, order, row, truth, expected)
            for m in _pareto(c, late, risk):
                v = len(var_cost)
                var_cost.append(float(c.X[m, Feature.COST]))
                var_late.append(late[m])
                var_risk.append(float(risk[m]))
                var_ref.append((b, row, m))
                order_of_var.append(i)
                l0 = int(batch.full.line_offsets[row])
                for j, node in enumerate(c.assignment(m).tolist()):
                    pair = (node, skus[int(batch.full.line_sku[l0 + j])])
                    per = uses.setdefault(pair, {})
                    per[v] = per.get(v, 0) + order.lines[j].qty
                for node in set(c.assignment(m).tolist()):
                    node_day.setdefault((node, day_of(batch.now)), []).append(v)
            var_cost.append(unrouted_penalty * sum(ln.qty for ln in order.lines))
            var_late.append(0.0)
            var_risk.append(0.0)
            var_ref.append(None)
            order_of_var.append(i)

    n = len(var_cost)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []

    def add_row(entries: Mapping[int, float], low: float, high: float) -> None:
        r = len(lo)
        for v, a in entries.items():
            rows.append(r)
            cols.append(v)
            vals.append(a)
        lo.append(low)
        hi.append(high)

    by_order: dict[int, dict[int, float]] = {}
    for v, i in enumerate(order_of_var):
        by_order.setdefault(i, {})[v] = 1.0
    for entries in by_order.values():
        add_row(entries, 1.0, 1.0)
    for pair, per in uses.items():
        per_order: dict[int, int] = {}
        for v, q in per.items():
            per_order[order_of_var[v]] = max(per_order.get(order_of_var[v], 0), q)
        if sum(per_order.values()) > budget.get(pair, 0):
            add_row({v: float(q) for v, q in per.items()}, -np.inf, float(budget.get(pair, 0)))
    for (node, _), vs in node_day.items():
        if len({order_of_var[v] for v in vs}) > network.node_capacity[node]:
            add_row(dict.fromkeys(vs, 1.0), -np.inf, float(network.node_capacity[node]))
    if max_late is not None and any(var_late):
        add_row({v: var_late[v] for v in range(n) if var_late[v]}, -np.inf, float(max_late))
    routed = [v for v in range(n) if var_ref[v] is not None]
    if max_risk is not None and any(var_risk):
        add_row({v: var_risk[v] for v in routed if var_risk[v]}, -np.inf, float(max_risk))
    if max_cost is not None:
        add_row({v: var_cost[v] for v in routed}, -np.inf, float(max_cost))

    def solve(objective: np.ndarray) -> Any:
        a = coo_array((vals, (rows, cols)), shape=(len(lo), n)).tocsr()
        res = milp(objective, integrality=np.ones(n), bounds=Bounds(0, 1),
                   constraints=LinearConstraint(a, lo, hi),
                   options={"time_limit": time_limit_s, "mip_rel_gap": 0.0})
        if res.x is None:
            raise RuntimeError(f"solve_hindsight: HiGHS found no solution: {res.message}")
        return res

    best = first = None
    if minimize in ("late", "risk"):
        # Two exact solves: the fewest late plans (or expected misses; routing everything it
        # can), then the cheapest plan with no more. One weighted objective with cost as a tiny
        # tie-breaker is the same optimum but ten times slower for HiGHS to prove.
        key = var_late if minimize == "late" else var_risk
        first = solve(np.array([key[v] if var_ref[v] is not None else var_cost[v]
                                for v in range(n)]))
        fewest = sum(key[v] for v in np.flatnonzero(first.x > 0.5).tolist())
        best = fewest if first.status == 0 else None  # a proven minimum, or nothing
        counts = minimize == "late" and not expected  # whole late plans, else probabilities
        fewest = float(round(fewest)) if counts else fewest * (1 + 1e-7) + 1e-7
        unrouted = [v for v in range(n) if var_ref[v] is None]
        add_row({v: key[v] for v in range(n) if key[v]}, -np.inf, fewest)
        add_row(dict.fromkeys(unrouted, 1.0), -np.inf,
                float(round(sum(first.x[v] for v in unrouted))))
    note = ""
    try:
        res = solve(np.array(var_cost))
    except RuntimeError:
        if first is None:
            raise
        # The cheapest of the fewest-late plans was not found in time (a sum of probabilities
        # as a constraint is hard on tight stock); the first solve's plan has the fewest too.
        res, note = first, " (the cheapest such plan not found in time)"
    chosen = np.flatnonzero(res.x > 0.5)
    result = ReplayResult("hindsight")
    if events:
        result.first_ms = int(events[0]["occurred_at"])
        result.last_ms = int(events[-1]["occurred_at"])
    for v in chosen.tolist():
        order, b = orders[order_of_var[v]]
        ref = var_ref[v]
        batch = batches[b]
        if ref is None:
            result.orders[order.order_id] = OrderState(order, 1, None, "no-stock", batch.now)
            continue
        _, row, m = ref
        ships = shipments_of(planner, batch.full, batch.cands, row, m, batch.lanes, batch.now)
        est = int(batch.cands.est_ms[m])
        plan = Plan(tuple(ships), est, 0.0, float(sum(s.cost for s in ships)), None, ())
        result.orders[order.order_id] = OrderState(order, 1, plan, "", batch.now)
    status = ("optimal" if res.status == 0 else str(res.message)) + note
    gap = float(getattr(res, "mip_gap", 0.0) or 0.0)
    return Optimum(result, float(res.fun), status, n, len(lo), gap, best)

