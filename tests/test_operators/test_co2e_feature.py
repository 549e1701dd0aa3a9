"""The kernel's CO2E_KG feature: the emissions formula per candidate, and what its weight does.

The candidates come from the 3-node network of ``test_candidates`` with emission factors added
(PAC 100 g/tkm, SEDEX 600 g/tkm); the expected CO2e is recomputed in plain Python from each
candidate's line-to-node assignment with ``operators.emissions.shipment_co2e_g``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.candidates import CandidateParams, CandidateSet, LaneArrays, build_candidates
from operators.emissions import co2e_g, shipment_co2e_g
from operators.network import Service
from operators.scoring import Feature, Weights, score_batch, score_batch_reference

from .test_candidates import DEST_SP, NODE_LAT, NODE_LNG, NOW, _haversine, make_batch, make_network
from .test_candidates import random_batches as candidate_batches

FACTORS = (100.0, 600.0)  # g CO2e per tonne-km of PAC and SEDEX


def _network(**kw: Any):
    return make_network(service_co2e=np.array(FACTORS), **kw)


def _by_hand(cs: CandidateSet, m: int, line_kg: list[float], dest: tuple[float, float]) -> float:
    """kg CO2e of candidate ``m``: one shipment per node, weights summed over its lines."""
    kg_at: dict[int, float] = {}
    for node, kg in zip(cs.assignment(m).tolist(), line_kg, strict=True):
        kg_at[node] = kg_at.get(node, 0.0) + kg
    svc = Service("x/y", "x", "y", "standard", 0.0, 0.0, 0.0, FACTORS[int(cs.service[m])])
    return sum(shipment_co2e_g(_haversine(NODE_LAT[k], NODE_LNG[k], *dest), kg, svc)
               for k, kg in kg_at.items()) / 1000.0


def test_one_shipment_is_km_times_tonnes_times_the_factor() -> None:
    # 3 kg to a customer near Sao Paulo: by PAC (100 g/tkm) and by SEDEX (600 g/tkm)
    batch = make_batch([[("a", 2, 3.0)]], {"a": (5, 0, 0)})
    cs = build_candidates(batch, _network(), LaneArrays.healthy(2, 2), NOW)
    km = _haversine(NODE_LAT[0], NODE_LNG[0], *DEST_SP)
    got = {int(cs.service[m]): cs.X[m, Feature.CO2E_KG] for m in range(len(cs))}
    assert got[0] == pytest.approx(km * 0.003 * 100.0 / 1000.0, rel=1e-12)
    assert got[1] == pytest.approx(6 * got[0], rel=1e-12)
    assert co2e_g(500.0, 2.0, 100.0) == 100.0  # the compiled formula the kernel calls


def test_a_network_without_factors_has_zero_co2e() -> None:
    batch = make_batch([[("a", 1, 1.0)]], {"a": (5, 5, 5)})
    cs = build_candidates(batch, make_network(), LaneArrays.healthy(2, 2), NOW)
    assert len(cs) > 0 and not cs.X[:, Feature.CO2E_KG].any()


@settings(max_examples=150, deadline=None)
@given(candidate_batches(), st.lists(st.floats(0.05, 30.0), min_size=5, max_size=5))
def test_every_candidate_co2e_is_the_sum_over_its_shipments(drawn: tuple, kgs: list) -> None:
    # Given random orders (splits included) whose lines weigh what hypothesis draws
    orders, stock, load, params = drawn
    orders = [[(s, q, kgs[j]) for j, (s, q, _) in enumerate(lines)] for lines in orders]
    batch = make_batch(orders, stock, load=load)
    cs = build_candidates(batch, _network(), LaneArrays.healthy(2, 2), NOW, params)
    # Then each candidate's feature is shipment_co2e_g summed over its shipments
    for i, lines in enumerate(orders):
        line_kg = [kg for _, _, kg in lines]
        for m in range(cs.offsets[i], cs.offsets[i + 1]):
            assert cs.X[m, Feature.CO2E_KG] == pytest.approx(
                _by_hand(cs, m, line_kg, DEST_SP), rel=1e-9)


def _many_candidates() -> CandidateSet:
    """Orders of one to three lines with stock spread out: singles and splits, both services."""
    orders = [[("a", 1, 2.0)], [("a", 1, 1.0), ("b", 2, 4.0)], [("c", 1, 0.5), ("a", 1, 8.0)],
              [("b", 1, 3.0), ("c", 2, 1.0), ("a", 1, 2.5)]]
    stock = {"a": (3, 4, 2), "b": (0, 3, 3), "c": (2, 0, 4)}
    return build_candidates(make_batch(orders, stock), _network(), LaneArrays.healthy(2, 2), NOW,
                            CandidateParams(max_nodes=3, min_single_nodes=2))


@settings(max_examples=200, deadline=None)
@given(st.floats(-50.0, 0.0), st.floats(-5.0, 0.0), st.floats(-60.0, 0.0))
def test_kernel_equals_reference_with_a_co2e_weight(price: float, cost: float, miss: float
                                                    ) -> None:
    cs = _many_candidates()
    w = Weights(co2e_kg=price, cost=cost, miss_prob=miss).as_array()
    got = score_batch(cs.X, cs.offsets, cs.mask, w)
    want = score_batch_reference(cs.X, cs.offsets, cs.mask, w)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 200.0), st.floats(0.0, 200.0))
def test_a_higher_carbon_price_never_picks_a_dirtier_plan(p1: float, p2: float) -> None:
    # For any two prices, the order's best plan at the higher price emits no more CO2e: if
    # a = argmax(s - p_lo c) and b = argmax(s - p_hi c), adding both optimality conditions
    # gives (p_hi - p_lo) (c_a - c_b) >= 0.
    lo, hi = sorted((p1, p2))
    cs = _many_candidates()
    co2e = cs.X[:, Feature.CO2E_KG]
    best_lo = score_batch(cs.X, cs.offsets, cs.mask, Weights(co2e_kg=-lo).as_array())[1]
    best_hi = score_batch(cs.X, cs.offsets, cs.mask, Weights(co2e_kg=-hi).as_array())[1]
    for a, b in zip(best_lo.tolist(), best_hi.tolist(), strict=True):
        assert co2e[b] <= co2e[a] + 1e-9


def test_weights_refuse_a_non_finite_carbon_price() -> None:
    assert Weights().co2e_kg == 0.0  # no carbon price unless the business sets one
    with pytest.raises(ValueError, match="co2e_kg"):
        Weights.from_mapping({"co2e_kg": math.nan})
