"""CO2e of a shipment by hand; the kernel's per-candidate CO2e, the decisions' and the CO2e
what-if (the kernel's weight) agree with it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson
import pytest

from fulfil.config import Config
from operators.candidates import LaneArrays, build_candidates
from operators.decisions import routed_decision
from operators.emissions import shipment_co2e_g
from operators.eval.policies import candidate_co2e_kg, co2e_policy, make_policy, shipments_of
from operators.eval.run import expand_policies
from operators.network import Service, load_default
from operators.planner import Plan, Planner
from operators.scoring import Feature
from schemas.validation import validate

from .conftest import NOW, decide, inventory, tiny_network
from .conftest import order as order_event


def test_shipment_co2e_is_km_times_tonnes_times_the_factor() -> None:
    pac = Service("correios/pac", "correios", "pac", "standard", 17.5, 2.1, 0.95, 100.0)
    assert shipment_co2e_g(500.0, 2.0, pac) == 100.0  # 500 km x 0.002 t x 100 g/tkm
    assert shipment_co2e_g(0.0, 2.0, pac) == 0.0
    sedex = load_default().services[load_default().service_index["correios/sedex"]]
    assert sedex.co2e_g_per_tkm == 600.0  # the network file's factor (fulfil/netbuild.py)
    assert shipment_co2e_g(250.0, 0.8, sedex) == pytest.approx(120.0)
    for bad in ((-1.0, 1.0), (1.0, -0.5), (math.nan, 1.0), (1.0, math.inf)):
        with pytest.raises(ValueError, match="shipment_co2e_g"):
            shipment_co2e_g(bad[0], bad[1], pac)


def test_candidate_co2e_is_the_sum_over_its_shipments(real_batch) -> None:
    # Given every candidate of a real batch, single-node and split ones
    net, orders, atp_of = real_batch
    planner = Planner(net, Config())
    prep = planner.prepare(orders)
    full = prep.batch.with_stock(atp_of(prep.skus), np.zeros(len(net.nodes), dtype=np.int64))
    lanes = LaneArrays.healthy(len(net.regions), len(net.services))
    cands = build_candidates(full, planner.arrays, lanes, NOW, planner.params)
    # When the what-if scorer computes their CO2e in one vectorized pass
    per_cand = candidate_co2e_kg(cands, full, net)
    # Then it equals shipment_co2e_g summed over each candidate's shipments
    rows = {row: o for o, row in zip(orders, prep.index, strict=True) if row >= 0}
    splits = 0
    for row, order in rows.items():
        for m in range(int(cands.offsets[row]), int(cands.offsets[row + 1])):
            ships = shipments_of(planner, full, cands, row, m, lanes, NOW)
            by_hand = sum(shipment_co2e_g(
                s.distance_km, sum(order.lines[i].kg * order.lines[i].qty for i in s.lines),
                net.services[s.service]) for s in ships)
            assert per_cand[m] * 1000 == pytest.approx(by_hand, rel=1e-9)
            splits += len(ships) > 1
    assert splits > 0


def test_a_decision_carries_the_co2e_of_its_shipments(real_batch) -> None:
    # Given a real batch planned by the production planner (single-node and split plans)
    net, orders, atp_of = real_batch
    planner = Planner(net, Config())
    prep = planner.prepare(orders)
    atp = atp_of(prep.skus)
    plans = planner.plan(prep, atp, np.zeros(len(net.nodes), dtype=np.int64),
                         LaneArrays.healthy(len(net.regions), len(net.services)), NOW)
    routed = [(o, p) for o, p in zip(orders, plans, strict=True) if isinstance(p, Plan)]
    assert any(len(p.shipments) > 1 for _, p in routed)
    for order, plan in routed:
        # When the decision is built
        event = {"event_id": f"{order.order_id}/c", "type": "order.created", "occurred_at": NOW}
        d = orjson.loads(routed_decision(order, 1, event, plan, net, [], NOW, NOW))
        validate("decision", d)
        # Then every shipment carries operators.emissions' figure to the gram, and the decision
        # their sum
        for sh, out in zip(plan.shipments, d["shipments"], strict=True):
            kg = sum(order.lines[i].kg * order.lines[i].qty for i in sh.lines)
            want = shipment_co2e_g(sh.distance_km, kg, net.services[sh.service]) / 1000.0
            assert out["co2e_kg"] == pytest.approx(want, abs=5e-4 + 1e-9)
            assert sh.co2e_kg == pytest.approx(want, rel=1e-9)
        assert d["co2e_kg"] == pytest.approx(sum(s["co2e_kg"] for s in d["shipments"]), abs=1e-9)


def _heavy_late_case() -> tuple[list[dict], list[dict]]:
    """20 kg, stock only at N2 (333 km): express (600 g/tkm) is on time, standard a day late."""
    return [inventory("N2", "A", 5)], [order_event("o1", [("A", 1, 20_000)], promise_days=2.0)]


def test_a_higher_carbon_price_never_raises_the_chosen_plans_co2e() -> None:
    # Given an order for which the greener service is late and the dirtier one on time
    net = tiny_network()
    stock, orders = _heavy_late_case()
    chosen = []
    for price in (0.0, 0.5, 2.0, 5.0, 20.0, 50.0, 200.0):
        # When fulfil plans it with the kernel's CO2e weight at that carbon price
        (plan,) = decide(net, co2e_policy(price), stock, orders)
        chosen.append(sum(s.co2e_kg for s in plan.shipments))
    # Then the plan's CO2e never rises with the price, and a high enough price goes green
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(chosen))
    assert chosen[0] > 5 * chosen[-1]


def test_the_co2e_what_if_is_the_kernels_weight_not_a_python_score() -> None:
    net = tiny_network()
    pol = make_policy(co2e_policy(2.5), net, Config(weights={"cost": -1.0}))
    assert pol.scorer is None  # the production Planner.plan, nothing added in Python
    assert pol.planner.weights[Feature.CO2E_KG] == -2.5
    assert make_policy("fulfil+co2e", net, Config(), 0.5).planner.weights[Feature.CO2E_KG] == -0.5
    assert expand_policies(["fulfil", "fulfil+co2e"], [0.0, 2.0]) == [
        "fulfil", "fulfil+co2e@0", "fulfil+co2e@2"]
    assert expand_policies(["fulfil+co2e"], 0.5) == ["fulfil+co2e"]
    with pytest.raises(ValueError, match="CO2e price"):
        make_policy("fulfil+co2e@-1", net, Config())
