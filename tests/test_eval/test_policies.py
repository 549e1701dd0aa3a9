"""Each policy's choice on hand-built cases, and plan_with_scores == Planner.plan."""

from __future__ import annotations

import numpy as np

from operators.candidates import LaneArrays
from operators.eval.policies import linear, plan_with_scores
from operators.planner import Plan, Unroutable
from operators.scoring import Weights

from .conftest import NOW, _node, decide, inventory, order, prepared, tiny_network


def _where(net, plan: Plan) -> list[tuple[str, str]]:
    return [(net.nodes[s.node].id, net.services[s.service].id) for s in plan.shipments]


def test_nearest_takes_the_nearest_node_and_the_cheapest_service_even_when_late(net) -> None:
    # Given A at N1 (56 km) and N2 (334 km); standard takes 3 days, the promise is 2 days
    stock = [inventory("N1", "A", 5), inventory("N2", "A", 5)]
    o = [order("o1", [("A", 1, 1000)], promise_days=2.0)]
    # Then the legacy rule ships standard from N1 (late); rate shopping and fulfil go express
    (near,) = decide(net, "nearest", stock, o)
    assert _where(net, near) == [("N1", "post/std")] and near.est_ms > o[0]["promised_by"]
    (sla,) = decide(net, "nearest-sla", stock, o)
    assert _where(net, sla) == [("N1", "post/exp")]
    (ours,) = decide(net, "fulfil", stock, o)
    assert _where(net, ours) == [("N1", "post/exp")] and ours.est_ms <= o[0]["promised_by"]


def test_nearest_skips_a_node_without_enough_stock(net) -> None:
    stock = [inventory("N1", "A", 1), inventory("N2", "A", 5)]
    (near,) = decide(net, "nearest", stock, [order("o1", [("A", 2, 1000)])])
    assert _where(net, near) == [("N2", "post/std")]


def test_fewest_splits_prefers_two_far_shipments_to_three_near_ones() -> None:
    # Given no node holds A, B and C together: N1 (far, 1,000 km) holds A and B, N2/N3/N4
    # (100-130 km) hold C, A and B. The kernel's greedy splits give [N1, N2] and [N2, N3, N4].
    net = tiny_network([_node("N1", 9.0), _node("N2", 0.9), _node("N3", 1.08),
                        _node("N4", 1.17)])
    stock = [inventory("N1", "A", 1), inventory("N1", "B", 1), inventory("N2", "C", 1),
             inventory("N3", "A", 1), inventory("N4", "B", 1)]
    o = [order("o1", [("A", 1, 500), ("B", 1, 500), ("C", 1, 500)], promise_days=5.0)]
    (few,) = decide(net, "fewest-splits", stock, o)
    assert sorted(n for n, _ in _where(net, few)) == ["N1", "N2"]
    (near,) = decide(net, "nearest", stock, o)
    assert sorted(n for n, _ in _where(net, near)) == ["N2", "N3", "N4"]
    assert {s for _, s in _where(net, near)} == {"post/std"}


def test_no_stock_anywhere_is_unroutable_for_every_policy(net) -> None:
    for p in ("fulfil", "nearest", "nearest-sla", "fewest-splits", "fulfil+co2e"):
        (res,) = decide(net, p, [inventory("N1", "A", 1)], [order("o1", [("B", 1, 1000)])])
        assert res == Unroutable("no-stock"), p


def test_plan_with_scores_reproduces_the_planner_exactly(real_batch) -> None:
    # Given a real batch on the Olist network with scarce stock (splits, exhausted orders)
    net, planner, prep, atp, load = prepared(real_batch)
    delay = np.zeros((len(net.regions), len(net.regions), len(net.services)))
    delay[:, net.region_index["RJ"], :] = 18.0
    lanes = LaneArrays(delay, np.zeros(delay.shape, dtype=np.bool_))
    # When the production planner and the evaluation's scored path plan it
    ours = plan_with_scores(planner, prep, atp, load, lanes, NOW, linear(Weights()))
    theirs = planner.plan(prep, atp, load, lanes, NOW)
    # Then every decision is the same: shipments, estimates, costs, reasons for failing
    assert any(isinstance(p, Plan) and len(p.shipments) > 1 for p in theirs)
    assert any(isinstance(p, Unroutable) for p in theirs)
    for a, b in zip(ours, theirs, strict=True):
        if isinstance(b, Unroutable):
            assert a == b
            continue
        assert isinstance(a, Plan)
        assert a.shipments == b.shipments and a.est_ms == b.est_ms
        assert a.cost == b.cost and a.score == b.score
        assert getattr(a, "risk", 0.0) == getattr(b, "risk", 0.0)  # the delivery-risk pass too

