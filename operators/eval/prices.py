"""Hindsight unit prices of stock: what a reservation-aware term could at best be worth.

Why: on tight stock (olist-flash) fulfil's gap to the hindsight optimum comes from *which order
gets the near unit*, not from its per-order choice among the options it had (docs/evaluation.md).
A reservation-aware score term charges an order for the units it takes, so that an order with a
cheap alternative leaves the near stock to one without. The best such charge any per-order term
could compute is the **shadow price** of each (node, sku) unit in the hindsight optimum: the dual
value of its stock row in the linear relaxation of the same-service model of
``operators.eval.optimum`` (same candidates, same stock budgets, the same cap on expected-late
plans and expected misses). ``fulfil-priced`` (``operators.eval.policies``) replays the real
planner with that price per unit taken subtracted from each candidate's score: the ceiling of a
reservation-aware term, as ``fulfil-learned`` is the ceiling of learning lanes. It knows the
future, so it is a bound, never a policy.

The prices are static over the sample (an LP's duals are); node capacity rows are left out of the
relaxation (their price would be a per-shipment, not a per-unit, charge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from operators.eval.optimum import _collect, _late_flags, _pareto
from operators.eval.policies import candidate_risk
from operators.planner import Planner
from operators.scoring import Feature

__all__ = ["UnitPrices", "stock_prices"]

#: BRL per unit taken, by (node index, sku); pairs whose stock does not bind are absent (0).
UnitPrices = Mapping[tuple[int, str], float]


def stock_prices(events: Sequence[Mapping[str, Any]], network: Any, config: Any, *,
                 max_late: float | None = None, max_risk: float | None = None,
                 batch_ms: int = 1000, unrouted_penalty: float = 1000.0
                 ) -> dict[tuple[int, str], float]:
    """The shadow price of every binding (node, sku) stock row of the relaxed hindsight model.

    ``max_late`` / ``max_risk`` as for ``solve_hindsight`` (the evaluation passes fulfil's own).
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_array

    planner = Planner(network, config)
    planner.params = replace(planner.params, max_nodes=len(network.nodes))
    batches, budget = _collect(events, planner, batch_ms)
    cost: list[float] = []
    late: list[float] = []
    risk: list[float] = []
    order_of: list[int] = []
    uses: dict[tuple[int, str], dict[int, float]] = {}
    n_orders = 0
    for batch in batches:
        c = batch.cands
        c_risk = candidate_risk(c)
        for order, row in zip(batch.orders, batch.rows, strict=True):
            flags = {} if row < 0 else _late_flags(batch, order, row, None)
            for m in _pareto(c, flags, c_risk):
                v = len(cost)
                cost.append(float(c.X[m, Feature.COST]))
                late.append(flags[m])
                risk.append(float(c_risk[m]))
                order_of.append(n_orders)
                l0 = int(batch.full.line_offsets[row])
                for j, node in enumerate(c.assignment(m).tolist()):
                    per = uses.setdefault((node, batch.skus[int(batch.full.line_sku[l0 + j])]),
                                          {})
                    per[v] = per.get(v, 0.0) + order.lines[j].qty
            cost.append(unrouted_penalty * sum(ln.qty for ln in order.lines))
            late.append(0.0)
            risk.append(0.0)
            order_of.append(n_orders)
            n_orders += 1
    n = len(cost)
    if n == 0:
        return {}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    rhs: list[float] = []
    pairs = list(uses)
    for pair in pairs:
        for v, q in uses[pair].items():
            rows.append(len(rhs))
            cols.append(v)
            vals.append(q)
        rhs.append(float(budget.get(pair, 0)))
    for limit, key in ((max_late, late), (max_risk, risk)):
        if limit is None:
            continue
        for v in np.flatnonzero(key).tolist():
            rows.append(len(rhs))
            cols.append(v)
            vals.append(key[v])
        rhs.append(float(limit))
    a_ub = coo_array((vals, (rows, cols)), shape=(len(rhs), n)).tocsr()
    a_eq = coo_array((np.ones(n), (order_of, np.arange(n))), shape=(n_orders, n)).tocsr()
    lp = linprog(np.array(cost), A_ub=a_ub, b_ub=rhs, A_eq=a_eq, b_eq=np.ones(n_orders),
                 bounds=(0, 1), method="highs")
    if lp.status != 0:
        raise RuntimeError(f"stock_prices: HiGHS could not solve the relaxation: {lp.message}")
    duals = -np.asarray(lp.ineqlin.marginals)  # <= rows: marginals are <= 0 when binding
    return {pair: float(duals[i]) for i, pair in enumerate(pairs) if duals[i] > 1e-9}
