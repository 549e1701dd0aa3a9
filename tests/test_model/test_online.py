"""Online lane updates: convergence to a shifted distribution, bounded state, order
independence, de-duplication, change-only emission, and the router-side patch."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from operators.delivery_dist import PROBS
from operators.delivery_model import fit
from operators.model_online import (
    LaneSketch,
    OnlineConfig,
    Outcome,
    apply_update,
    lane_prior,
    make_updater,
    new_sketch,
    outcome_from_tracking,
    update_sketch,
)

from .helpers import synthetic

T0 = 1_795_556_252_000
HOUR = 3_600_000
P = {p: list(PROBS).index(p) for p in (0.1, 0.5, 0.9)}


def _prior_q(mean: float, sd: float) -> np.ndarray:
    return mean + sd * np.array([-2.326, -1.645, -1.282, -0.842, -0.524, -0.253, 0, 0.253,
                                 0.524, 0.842, 1.282, 1.645, 2.326])  # fmt: skip


def _stream(n: int, mean: float, sd: float, seed: int = 0, every_ms: int = HOUR,
            start: int = T0) -> list[Outcome]:  # fmt: skip
    rng = np.random.default_rng(seed)
    return [Outcome(f"e{seed}-{i}", "SP", "RJ", "correios/pac", float(rng.normal(mean, sd)),
                    start + i * every_ms, int(rng.random() < 0.3)) for i in range(n)]  # fmt: skip


CFG = OnlineConfig()


def _feed(state: LaneSketch, events: list[Outcome], cfg: OnlineConfig = CFG):
    records = []
    for ev in events:
        state, rec = update_sketch(state, ev, cfg)
        if rec is not None:
            records.append(rec)
    return state, records


def test_converges_to_a_shifted_distribution() -> None:
    """Prior: 3 +- 0.5 days. Then the lane slows to 5 +- 0.7: after 8 weeks at one delivery an
    hour (8 half-lives), the published p10/p50/p90 are the new lane's."""
    state = new_sketch(_prior_q(3.0, 0.5), 0.1)
    state, records = _feed(state, _stream(24 * 56, 5.0, 0.7))
    last = records[-1]
    for p, z in ((0.1, -1.2816), (0.5, 0.0), (0.9, 1.2816)):
        assert abs(last.quantiles[P[p]] - (5.0 + 0.7 * z)) < 0.15, p
    assert abs(last.late_rate - 0.3) < 0.06
    # a week in, it has moved most of the way but still remembers the old lane
    week, _ = _feed(new_sketch(_prior_q(3.0, 0.5), 0.1), _stream(24 * 7, 5.0, 0.7))
    assert 4.0 < week.quantiles(OnlineConfig())[P[0.5]] < 5.0 + 0.1


def test_state_stays_bounded() -> None:
    cfg = OnlineConfig(max_weight=300.0)
    state = new_sketch(_prior_q(3.0, 0.5), 0.1, cfg)
    size0 = len(pickle.dumps(state))
    burst = _stream(20_000, 4.0, 1.0, every_ms=1)  # 20k deliveries within 20 s: no decay
    state, _ = _feed(state, burst, cfg)
    assert state.mass.shape == new_sketch(None).mass.shape
    assert len(state.recent) == cfg.dedup
    assert state.weight <= cfg.max_weight + 1e-9
    assert abs(len(pickle.dumps(state)) - size0) < 2 * cfg.dedup * 16  # only the id strings grow


def test_the_order_of_arrival_does_not_matter() -> None:
    events = _stream(400, 4.0, 1.0, seed=3)
    rng = np.random.default_rng(1)
    shuffled = [events[i] for i in rng.permutation(len(events))]
    a, _ = _feed(new_sketch(_prior_q(3.0, 0.5)), events)
    b, _ = _feed(new_sketch(_prior_q(3.0, 0.5)), shuffled)
    np.testing.assert_allclose(a.quantiles(OnlineConfig()), b.quantiles(OnlineConfig()), atol=1e-9)
    assert a.updated_at == b.updated_at == events[-1].delivered_at


def test_a_redelivered_event_is_ignored() -> None:
    ev = _stream(1, 4.0, 0.0)[0]
    state, rec = update_sketch(new_sketch(None), ev)
    again, rec2 = update_sketch(state, ev)
    assert rec is not None and rec2 is None and again is state


def test_emits_only_when_quantiles_move() -> None:
    cfg = OnlineConfig(emit_change_days=0.25, emit_change_rate=1.0)
    state = new_sketch(_prior_q(4.0, 0.5), math_nan(), cfg)
    steady = [Outcome(f"s{i}", "SP", "RJ", "correios/pac", 4.0, T0 + i * HOUR, -1)
              for i in range(200)]  # fmt: skip
    state, records = _feed(state, steady, cfg)
    assert 1 <= len(records) < 20  # the first, then only while the shape tightens
    shifted = [Outcome(f"x{i}", "SP", "RJ", "correios/pac", 9.0, T0 + (200 + i) * HOUR, -1)
               for i in range(400)]  # fmt: skip
    _, more = _feed(state, shifted, cfg)
    assert more and more[-1].quantiles[P[0.5]] > 8.0


def math_nan() -> float:
    return float("nan")


def test_tracking_event_to_outcome() -> None:
    ev = {"type": "shipment.tracking", "event_id": "c-9", "shipment_id": "o-1/N01",
          "order_id": "o-1", "carrier": "correios", "service": "pac", "node_id": "N01",
          "status": "delivered", "occurred_at": T0 + 50 * HOUR,
          "dest_region": "RJ", "picked_up_at": T0 + 2 * HOUR, "promised_by": T0 + 48 * HOUR}
    out = outcome_from_tracking(ev, {"N01": "SP"})
    assert out == Outcome("c-9", "SP", "RJ", "correios/pac", 2.0, T0 + 50 * HOUR, 1)
    assert out.key == "SP|RJ|correios/pac"
    assert outcome_from_tracking({**ev, "status": "in_transit"}, {"N01": "SP"}) == "not a delivery"
    bare = {k: v for k, v in ev.items() if k not in ("dest_region", "picked_up_at")}
    assert outcome_from_tracking(bare, {"N01": "SP"}) == "needs dest_region and picked_up_at"
    assert outcome_from_tracking(ev, {}).startswith("origin unknown")


def test_updater_seeds_from_the_model_and_the_router_patch_applies() -> None:
    model = fit(synthetic(n=6000))
    arrays = model.arrays()
    q0, rate0 = lane_prior(arrays, "SP|RJ|fast")
    assert q0 is not None and 0 < rate0 < 1
    step = make_updater(lambda key: lane_prior(arrays, key))
    _, rec = step(None, Outcome("a", "SP", "RJ", "fast", 9.0, T0, 1))
    assert rec is not None and rec.key == "SP|RJ|fast"
    assert rec.quantiles[P[0.5]] == pytest.approx(q0[P[0.5]], abs=0.3)  # one delivery vs 20
    qd = np.array(arrays.quantile_days)
    late = np.array(arrays.late_logit)
    r_idx = {r: i for i, r in enumerate(arrays.regions)}
    s_idx = {s: i for i, s in enumerate(arrays.services)}
    assert apply_update(qd, late, rec, r_idx, s_idx)
    o, d, s = r_idx["SP"], r_idx["RJ"], s_idx["fast"]
    assert tuple(qd[o, d, s]) == rec.quantiles
    assert late[o, d, s] != arrays.late_logit[o, d, s]
    unknown = type(rec)("SP|XX|fast", rec.quantiles, rec.probs, None, 1.0, 1, T0)
    assert not apply_update(qd, late, unknown, r_idx, s_idx)
