"""The evaluator's metrics against values worked out by hand on the tiny network."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from fulfil.config import Config
from operators.eval.metrics import expected_late, measure
from operators.eval.policies import make_policy
from operators.eval.replay import replay
from operators.eval.truth import Disruption, Truth, disruptions_from_events, lognormal_params

from .conftest import DAY, HOUR, KM_PER_DEG, NOW, inventory, order, tiny_network


def _stream() -> list[dict]:
    cancelled = order("o4", [("A", 1, 1000)], at=NOW + 1000)
    return [
        inventory("N1", "A", 1), inventory("N2", "A", 5),
        order("o1", [("A", 1, 1000)], promise_days=2.0),       # N1 express, on time
        order("o2", [("A", 1, 1000)], at=NOW + 1000, promise_days=1.0),  # N2 express, late
        order("o3", [("B", 2, 1000)], at=NOW + 2000),          # nobody holds B: 2 units
        cancelled,
        {"type": "order.cancelled", "event_id": "o4/x", "order_id": "o4",
         "occurred_at": NOW + 5000},
    ]


def test_metrics_match_hand_computation(net) -> None:
    # Given the rate-shopping rule (nearest node, least late service, cheapest) -- its choices
    # can be read off without weights: o1 -> N1 express; o2 -> N2 (N1 is empty) express
    events = _stream()
    pol = make_policy("nearest-sla", net, Config())
    res = replay(events, pol, batch_ms=500)
    truth = Truth(net, disruptions_from_events(events), seed=1)
    m = measure(res, net, truth)
    km1, km2 = 0.5 * KM_PER_DEG, 3.0 * KM_PER_DEG
    cost1 = 1.0 + 20.0 + 2.0 * 1.0 + 2.0 * km1 / 100  # handling + base + per kg + per 100 km
    cost2 = 1.0 + 20.0 + 2.0 * 1.0 + 2.0 * km2 / 100
    assert (m.orders, m.routed, m.shipments, m.split) == (3, 2, 2, 0)  # o4 was cancelled
    assert m.cost == pytest.approx(cost1 + cost2, abs=0.01)
    # p90 == mean on every lane: the truth is exactly ready + 1 day; o2 promised 1 day out
    assert (m.on_time, m.late, m.est_late) == (1, 1, 1)
    assert m.on_time_rate == 0.5
    assert m.units_unroutable == 2
    assert m.avg_km == pytest.approx((km1 + km2) / 2)
    assert m.co2e_kg == pytest.approx((km1 + km2) * 0.001 * 600 / 1000)
    assert m.util_max == pytest.approx(0.01)  # one parcel a node, capacity 100 a day
    assert m.util_sd == pytest.approx(statistics.pstdev([0.01, 0.01, 0.0]))
    assert m.cost_per_order == pytest.approx((cost1 + cost2) / 2, abs=0.01)


def test_truth_without_spread_is_ready_plus_mean_plus_scripted_delay(net) -> None:
    # handed over at 12:00 (10:00 + 2 h handling), AA->AA express 1 day
    truth = Truth(net, [], seed=1)
    assert truth.delivered_ms("o", 0, 1, 0, NOW) == NOW + 2 * HOUR + DAY
    delayed = Disruption("post", None, None, "AA", NOW, NOW + 6 * HOUR, 30.0, False)
    truth = Truth(net, [delayed], seed=1)
    assert truth.delivered_ms("o", 0, 1, 0, NOW) == NOW + 2 * HOUR + DAY + 30 * HOUR
    # handed over after the delay window ended: no delay
    assert truth.delivered_ms("o", 0, 1, 0, NOW + 4 * HOUR) == NOW + 6 * HOUR + DAY
    # an outage from 18:00 to 06:00 the next day stops the parcel for 12 hours
    down = Disruption("post", "exp", "AA", "AA", NOW + 8 * HOUR, NOW + 20 * HOUR, 0.0, True)
    truth = Truth(net, [down], seed=1)
    assert truth.delivered_ms("o", 0, 1, 0, NOW) == NOW + 2 * HOUR + DAY + 12 * HOUR
    assert truth.delivered_ms("o", 0, 0, 0, NOW) == NOW + 2 * HOUR + 3 * DAY  # other service


def test_disruption_windows_come_from_the_lane_events() -> None:
    events = [
        {"type": "lane.status", "carrier": "post", "status": "delayed", "dest_region": "AA",
         "delay_hours": 30, "occurred_at": NOW},
        {"type": "lane.status", "carrier": "post", "status": "normal", "occurred_at": NOW + 10},
        {"type": "lane.status", "carrier": "post", "status": "normal", "dest_region": "AA",
         "occurred_at": NOW + 3 * HOUR},
        {"type": "lane.status", "carrier": "post", "status": "outage", "dest_region": "BB",
         "occurred_at": NOW + HOUR, "valid_until": NOW + 2 * HOUR},
        {"type": "lane.status", "carrier": "x", "status": "outage", "occurred_at": NOW + HOUR},
        {"type": "lane.status", "carrier": "y", "status": "delayed", "delay_hours": 5,
         "occurred_at": NOW, "valid_from": NOW + 2 * HOUR},  # a forecast: from then on
        {"type": "order.created", "occurred_at": NOW + 4 * HOUR},
    ]
    got = sorted(disruptions_from_events(events), key=lambda d: (d.start_ms, d.carrier))
    assert got == [
        Disruption("post", None, None, "AA", NOW, NOW + 3 * HOUR, 30.0, False),
        Disruption("post", None, None, "BB", NOW + HOUR, NOW + 2 * HOUR, 0.0, True),
        Disruption("x", None, None, None, NOW + HOUR, NOW + 4 * HOUR, 0.0, True),
        Disruption("y", None, None, None, NOW + 2 * HOUR, NOW + 4 * HOUR, 5.0, False),
    ]


def test_lane_bias_moves_each_lane_by_a_seeded_factor(net) -> None:
    exact = Truth(net, [], seed=1)
    a, b = Truth(net, [], seed=1, lane_bias=0.3), Truth(net, [], seed=1, lane_bias=0.3)
    c = Truth(net, [], seed=2, lane_bias=0.3)
    ready = NOW + 2 * HOUR
    for svc in (0, 1):
        base = exact.delivered_ms("o", 0, svc, 0, NOW) - ready
        got = a.delivered_ms("o", 0, svc, 0, NOW) - ready
        assert got != base and got == b.delivered_ms("o", 0, svc, 0, NOW) - ready
        assert got != c.delivered_ms("o", 0, svc, 0, NOW) - ready
        # every order on the lane gets the same factor (spread 0 on the tiny network)
        assert a.delivered_ms("other", 0, svc, 0, NOW) - ready == got
    with pytest.raises(ValueError, match="lane_bias"):
        Truth(net, [], seed=1, lane_bias=-0.1)


@pytest.mark.parametrize("outage", [False, True])
def test_the_true_miss_probability_is_the_share_of_draws_that_arrive_late(outage) -> None:
    # Given lanes that scatter, a scripted delay and (one case) an outage while on the road
    net = tiny_network(p90_factor=1.8)
    scripted = [Disruption("post", None, None, "AA", NOW, NOW + 6 * HOUR, 10.0, False)]
    if outage:
        scripted.append(Disruption("post", "std", "AA", "AA", NOW + 2 * DAY,
                                   NOW + 3 * DAY, 0.0, True))
    truth = Truth(net, scripted, seed=3, lane_bias=0.2)
    start = truth.handover_ms(0, NOW)
    between = 0
    for svc in (0, 1):
        for promise_days in (1.5, 3.0, 4.5):
            promise = NOW + round(promise_days * DAY)
            p = truth.miss_probability(0, svc, 0, NOW, promise)
            between += 0.01 < p < 0.99
            # Then a draw arrives late exactly when it lies in the top p of the distribution
            for u in (0.01, 0.2, 0.4, 0.6, 0.8, 0.99):
                late = truth._arrival(0, svc, 0, start, u) > promise
                if abs(u - (1 - p)) > 1e-6:
                    assert late == (u > 1 - p), (svc, promise_days, u, p)
    assert between >= 2


def test_the_learned_network_has_the_truths_lanes(net) -> None:
    assert np.array_equal(Truth(net, [], seed=1).learned_network().lane_transit_mean,
                          net.lane_transit_mean)  # no bias: the network was right
    truth = Truth(net, [], seed=1, lane_bias=0.3)
    learned = truth.learned_network()
    assert not np.array_equal(learned.lane_transit_mean, net.lane_transit_mean)
    mu, sigma = lognormal_params(learned.lane_transit_mean, learned.lane_transit_p90)
    np.testing.assert_allclose(mu, truth.mu, rtol=1e-12)
    np.testing.assert_allclose(sigma, truth.sigma, rtol=1e-12)
    assert learned.version != net.version and learned.nodes == net.nodes


def test_expected_late_is_the_sum_of_true_miss_probabilities() -> None:
    net = tiny_network(p90_factor=1.8)
    truth = Truth(net, [], seed=1, lane_bias=0.3)
    res = replay(_stream(), make_policy("nearest", net, Config()))
    want = sum(truth.miss_probability(s.node, s.service, 0, st.planned_ms, st.order.promised_by)
               for st in res.orders.values() if st.plan is not None and not st.cancelled
               for s in st.plan.shipments)  # one shipment each
    assert expected_late(res, net, truth) == pytest.approx(want, rel=1e-12)
    assert 0 < want < 2 and want != 1.0
