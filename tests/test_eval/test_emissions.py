"""CO2e of a shipment, by hand; the what-if scorer's per-candidate CO2e agrees with it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fulfil.config import Config
from operators.candidates import LaneArrays, build_candidates
from operators.emissions import shipment_co2e_g
from operators.eval.policies import candidate_co2e_kg, shipments_of
from operators.network import Service, load_default
from operators.planner import Planner

from .conftest import NOW


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
