"""Delivery risk in the batch: the miss probability written per candidate is the delivery-time
model's for that node, lane and service, and tighter promises are riskier."""

from __future__ import annotations

import math

import numpy as np

from fulfil.config import Config
from operators.candidate_kernel import ready_ms
from operators.candidates import LaneArrays, NetworkArrays, build_candidates
from operators.delivery_dist import cdf_at
from operators.network import load_default
from operators.orders import order_from_created
from operators.planner import Planner
from operators.risk import fill_miss_probability, load_model
from operators.scoring import Feature

NET = load_default()
NOW = 1795556252000
DAY = 86_400_000


def _order(i: int, promise_days: float) -> object:
    return order_from_created({
        "type": "order.created", "event_id": f"e{i}", "order_id": f"o{i}", "occurred_at": NOW,
        "channel": "web", "promised_by": int(NOW + promise_days * DAY),
        "destination": {"postal_code": "20040", "lat": -22.9, "lng": -43.2},
        "lines": [{"line_id": "1", "sku": "s", "qty": 1}]})


def _candidates(promise_days: list[float]):
    planner = Planner(NET, Config())
    prep = planner.prepare([_order(i, p) for i, p in enumerate(promise_days)])
    atp = np.full((len(NET.nodes), len(prep.skus)), 5, dtype=np.int64)
    full = prep.batch.with_stock(atp, np.zeros(len(NET.nodes), dtype=np.int64))
    arrays = NetworkArrays.from_network(NET)
    cands = build_candidates(full, arrays, LaneArrays.healthy(len(NET.regions),
                                                              len(NET.services)), NOW)
    model = load_model(NET, None)
    fill_miss_probability(full, cands, arrays, model, NOW)
    return full, cands, arrays, model


def test_the_prior_gives_p_transit_beyond_the_time_left() -> None:
    full, cands, arrays, model = _candidates([3.0])
    for m in range(len(cands)):
        k = int(cands.assign[cands.assign_offsets[m]])
        s = int(cands.service[m])
        ready = ready_ms(NOW, arrays.node_utc_offset[k], arrays.node_cutoff_hour[k],
                         arrays.node_handling_hours[k])
        budget = (full.promise_ms[0] - ready) / DAY
        o, d = int(arrays.node_region[k]), int(full.dest_region[0])
        expected = 1.0 - cdf_at(model.quantile_days[o, d, s], model.probs, budget)
        assert math.isclose(cands.X[m, Feature.MISS_PROB], expected, rel_tol=1e-6, abs_tol=1e-6)


def test_a_tighter_promise_is_never_less_risky() -> None:
    _, cands, _, _ = _candidates([1.0, 8.0])
    tight = cands.X[cands.offsets[0]:cands.offsets[1], Feature.MISS_PROB]
    loose = cands.X[cands.offsets[1]:cands.offsets[2], Feature.MISS_PROB]
    assert (tight >= loose - 1e-12).all() and tight.max() > loose.max()
    assert ((cands.X[:, Feature.MISS_PROB] >= 0) & (cands.X[:, Feature.MISS_PROB] <= 1)).all()
