"""The hindsight MILP against brute force over every combination of choices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fulfil.config import Config
from operators.candidates import LaneArrays, build_candidates
from operators.eval.metrics import expected_late, measure
from operators.eval.optimum import solve_hindsight
from operators.eval.policies import candidate_risk, fill_risk
from operators.eval.truth import Truth
from operators.orders import order_from_created
from operators.planner import Planner

from .conftest import DAY, HOUR, KM_PER_DEG, NOW, _node, inventory, order, tiny_network

PENALTY = 1000.0  # BRL per unit left unroutable, as solve_hindsight's default
SERVICES = {"post/std": (10.0, 1.0, 1.0), "post/exp": (20.0, 2.0, 2.0)}  # base, per kg, per 100km


def _case(p90_factor: float = 1.0):
    """Four one-unit orders; the nearest node holds one unit and N2 ships one parcel a day."""
    net = tiny_network([_node("N1", 0.5, handling=1.0), _node("N2", 3.0, capacity=1,
                                                                 handling=0.5),
                        _node("N3", 10.0, "BB", handling=0.2)], p90_factor=p90_factor)
    stock = {"N1": 1, "N2": 5, "N3": 2}
    dests = [(0.0, "AA"), (0.2, "AA"), (9.5, "BB"), (2.0, "AA")]
    promises = [2.0, 2.0, 2.0, 5.0]
    events = [inventory(n, "A", q) for n, q in stock.items()]
    events += [order(f"o{i}", [("A", 1, 1500)], promise_days=p,
                     dest={"lat": 0.0, "lng": lng, "region": reg})
               for i, ((lng, reg), p) in enumerate(zip(dests, promises, strict=True))]
    return net, stock, dests, promises, events


def _risks(net, events) -> dict[tuple[int, str, str], float]:
    """The planner's miss probability per (order, node, service), from its own risk pass."""
    planner = Planner(net, Config())
    orders = [order_from_created(e) for e in events if e["type"] == "order.created"]
    prep = planner.prepare(orders)
    full = prep.batch.with_stock(np.full((3, 1), 9, dtype=np.int64), np.zeros(3, np.int64))
    at = NOW + 1000  # the orders' replay window ends one second after they arrive
    cands = build_candidates(full, planner.arrays, LaneArrays.healthy(2, 2), at, planner.params)
    fill_risk(planner, full, cands, at)
    risk = candidate_risk(cands)
    return {(i, net.nodes[int(cands.assignment(m)[0])].id, net.services[int(cands.service[m])].id):
            float(risk[m]) for i in range(len(orders))
            for m in range(int(cands.offsets[i]), int(cands.offsets[i + 1]))}


def _brute_force(net, stock, dests, promises, max_late=None, risks=None, max_risk=None
                 ) -> float:
    """Cheapest feasible combination, every option written out by hand from the tariffs."""
    options = []
    ready = NOW + 2 * HOUR  # 10:00 + 2 h handling, before the 15:00 cut-off
    for i, ((lng, reg), promise) in enumerate(zip(dests, promises, strict=True)):
        opts: list[tuple[str, float, bool, float] | None] = [None]
        for node in net.nodes:
            km = abs(node.lng - lng) * KM_PER_DEG
            for sid, (base, per_kg, per_100) in SERVICES.items():
                days = (3.0 if sid == "post/std" else 1.0) + (node.region != reg)
                late = ready + days * DAY > NOW + promise * DAY
                cost = node.handling_cost + base + per_kg * 1.5 + per_100 * km / 100
                opts.append((node.id, cost, late, (risks or {}).get((i, node.id, sid), 0.0)))
        options.append(opts)
    best = float("inf")
    for combo in itertools.product(*options):
        used = [c[0] for c in combo if c is not None]
        if any(used.count(n) > q for n, q in stock.items()):
            continue
        if any(used.count(n.id) > n.capacity_per_day for n in net.nodes):
            continue
        if max_late is not None and sum(c[2] for c in combo if c is not None) > max_late:
            continue
        if max_risk is not None and sum(c[3] for c in combo if c is not None) > max_risk:
            continue
        best = min(best, sum(PENALTY if c is None else c[1] for c in combo))
    return best


@pytest.mark.parametrize("max_late", [None, 1, 0])
def test_the_milp_optimum_equals_brute_force(max_late) -> None:
    net, stock, dests, promises, events = _case()
    opt = solve_hindsight(events, net, Config(), max_late=max_late, unrouted_penalty=PENALTY)
    assert opt.status == "optimal"
    want = _brute_force(net, stock, dests, promises, max_late)
    assert opt.objective == pytest.approx(want, abs=1e-6)
    # and the decisions it returns cost exactly that
    plans = [st.plan for st in opt.result.orders.values()]
    got = sum(PENALTY if p is None else p.cost for p in plans)
    assert got == pytest.approx(want, abs=1e-6)
    assert len(plans) == 4


def test_an_expected_miss_budget_equals_brute_force() -> None:
    # Given the planner's own miss probabilities (a lane spread, so they are not just 0 or 1)
    net, stock, dests, promises, events = _case(p90_factor=1.6)
    risks = _risks(net, events)
    assert any(0.01 < r < 0.99 for r in risks.values())
    free = solve_hindsight(events, net, Config(), unrouted_penalty=PENALTY)
    budget = 0.8 * sum(st.plan.risk for st in free.result.orders.values() if st.plan)
    opt = solve_hindsight(events, net, Config(), max_risk=budget, unrouted_penalty=PENALTY)
    want = _brute_force(net, stock, dests, promises, risks=risks, max_risk=budget)
    assert want > free.objective + 1e-6  # the budget binds
    assert opt.objective == pytest.approx(want, abs=1e-6)


def test_fewest_late_within_a_budget_equals_brute_force() -> None:
    net, stock, dests, promises, events = _case()
    budget = _brute_force(net, stock, dests, promises) + 15.0  # a little above the cheapest
    opt = solve_hindsight(events, net, Config(), minimize="late", max_cost=budget,
                          unrouted_penalty=PENALTY)
    late = sum(st.plan.est_ms > st.order.promised_by for st in opt.result.orders.values()
               if st.plan is not None)
    cost = sum(st.plan.cost for st in opt.result.orders.values() if st.plan is not None)
    fewest = min(k for k in range(5) if _brute_force(net, stock, dests, promises, k) <= budget)
    assert late == fewest and cost <= budget + 1e-9
    assert cost == pytest.approx(_brute_force(net, stock, dests, promises, fewest), abs=1e-6)


def test_the_clairvoyant_bound_is_the_fewest_really_late_within_the_budget() -> None:
    # Given transit that scatters (p90 = 1.6 x the mean), so the truth differs per shipment
    net, stock, dests, promises, events = _case(p90_factor=1.6)
    truth = Truth(net, [], seed=5, lane_bias=0.2)
    at = NOW + 1000  # when the replay plans the orders (the end of their window)
    # Every option written out: cost from the tariffs, lateness from what really happened
    options = []
    for i, ((lng, reg), promise) in enumerate(zip(dests, promises, strict=True)):
        opts: list[tuple[str, float, bool] | None] = [None]
        for k, node in enumerate(net.nodes):
            km = abs(node.lng - lng) * KM_PER_DEG
            for s, (sid, (base, per_kg, per_100)) in enumerate(SERVICES.items()):
                assert net.services[s].id == sid
                real = truth.delivered_ms(f"o{i}", k, s, net.region_index[reg], at)
                cost = node.handling_cost + base + per_kg * 1.5 + per_100 * km / 100
                opts.append((node.id, cost, real > NOW + promise * DAY))
        options.append(opts)
    budget = _brute_force(net, stock, dests, promises) + 15.0
    fewest = 99
    for combo in itertools.product(*options):
        used = [c[0] for c in combo if c is not None]
        if any(used.count(n) > q for n, q in stock.items()) or used.count("N2") > 1:
            continue
        if None in combo or sum(c[1] for c in combo) > budget:
            continue  # every order can be routed within this budget
        fewest = min(fewest, sum(c[2] for c in combo))
    # When the MILP minimizes real late deliveries within the budget
    opt = solve_hindsight(events, net, Config(), minimize="late", max_cost=budget, truth=truth,
                          unrouted_penalty=PENALTY)
    m = measure(opt.result, net, truth)
    # Then it reaches exactly the brute-force fewest, within the budget, and beats the
    # optimum that only knew the estimates (1 real late against 3 on this draw)
    assert m.routed == 4 and m.late == fewest and m.cost <= budget + 1e-9
    estimated = solve_hindsight(events, net, Config(), minimize="late", max_cost=budget,
                                unrouted_penalty=PENALTY)
    assert measure(estimated.result, net, truth).late > m.late


def test_the_expected_bound_is_the_fewest_expected_late_within_the_budget() -> None:
    # Given lanes that scatter and are off the network's figures (the truth's lane bias)
    net, stock, dests, promises, events = _case(p90_factor=1.6)
    truth = Truth(net, [], seed=5, lane_bias=0.2)
    at = NOW + 1000
    options = []
    for (lng, reg), promise in zip(dests, promises, strict=True):
        opts = []
        for k, node in enumerate(net.nodes):
            km = abs(node.lng - lng) * KM_PER_DEG
            for s, (base, per_kg, per_100) in enumerate(SERVICES.values()):
                p = truth.miss_probability(k, s, net.region_index[reg], at, NOW + promise * DAY)
                opts.append((node.id, node.handling_cost + base + per_kg * 1.5
                             + per_100 * km / 100, p))
        options.append(opts)
    budget = _brute_force(net, stock, dests, promises) + 15.0
    fewest = min(sum(c[2] for c in combo) for combo in itertools.product(*options)
                 if all([c[0] for c in combo].count(n) <= q for n, q in stock.items())
                 and [c[0] for c in combo].count("N2") <= 1
                 and sum(c[1] for c in combo) <= budget)
    assert 0.05 < fewest % 1 < 0.95  # probabilities, not whole late plans
    # When the MILP minimizes the expected real late deliveries within the budget
    opt = solve_hindsight(events, net, Config(), minimize="late", max_cost=budget, truth=truth,
                          expected=True, unrouted_penalty=PENALTY)
    # Then it reaches the brute-force fewest, and its plans are expected late exactly that much
    assert opt.fewest == pytest.approx(fewest, abs=1e-6)
    assert expected_late(opt.result, net, truth) == pytest.approx(fewest, abs=1e-6)
    assert sum(st.plan.cost for st in opt.result.orders.values()) <= budget + 1e-9
