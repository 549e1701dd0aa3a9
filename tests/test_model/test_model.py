"""Fitting, shrinkage, the artifact (round trip, version hash) and the network alignment."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from operators.delivery_align import kernel_arrays, lognormal_quantiles, prior_arrays
from operators.delivery_dist import PROBS
from operators.delivery_kernel import FEATURES
from operators.delivery_metrics import time_split
from operators.delivery_model import SOURCES, DeliveryModel, Hyper, ModelError, fit
from operators.network import load_default

from .helpers import LANES, synthetic

Z = {0.1: -1.2816, 0.5: 0.0, 0.9: 1.2816}


@pytest.fixture(scope="module")
def model() -> DeliveryModel:
    return fit(synthetic(rare=3), Hyper(prior_strength=20.0))


def _cell(model: DeliveryModel, o: str, d: str, s: str) -> dict:
    return next(c for c in model.doc["nodes"]["cells"]
                if (c["origin"], c["dest"], c["service"]) == (o, d, s))  # fmt: skip


def test_fit_recovers_each_lanes_quantiles(model: DeliveryModel) -> None:
    a = model.arrays()
    for (o, d), (svc, med, sig) in LANES.items():
        q = a.quantile_days[a.regions.index(o), a.regions.index(d), a.services.index(svc)]
        for p, z in Z.items():
            want = med * math.exp(sig * z)
            assert abs(q[list(PROBS).index(p)] - want) < 0.03 * want + 0.05, (o, d, p)


def test_a_lane_with_three_deliveries_is_shrunk_toward_its_service(model: DeliveryModel) -> None:
    rare = _cell(model, "MG", "BA", "slow")
    assert (rare["n"], rare["n_rate"]) == (3, 3)  # the counts are kept
    service = model.doc["nodes"]["services"]["slow"]
    median = list(PROBS).index(0.5)
    # 3 deliveries at ~10 days against 20 pseudo-deliveries of the service (median ~5 days)
    assert abs(rare["q"][median] - service["q"][median]) < 1.0
    assert rare["q"][median] < 8.0
    many = fit(synthetic(n=3000, rare=3000), Hyper(prior_strength=20.0))
    assert abs(_cell(many, "MG", "BA", "slow")["q"][median] - 10.0) < 0.3


def test_miss_probability_is_learnt_and_uses_the_slack(model: DeliveryModel) -> None:
    coef = dict(zip(FEATURES, model.doc["coef"], strict=True))
    assert coef["cdf_miss_logit"] > 0.2 or coef["slack_days"] < -0.05
    assert model.doc["unused_features"] == ["distance_1000km", "delay_days", "load"]
    test = synthetic(n=4000, seed=9)
    p, _, _ = model.predict(test)
    assert abs(p.mean() - test.late.mean()) < 0.03  # calibrated on fresh data


def test_artifact_round_trip_keeps_arrays_and_version(model: DeliveryModel) -> None:
    again = DeliveryModel.from_json(model.to_json())
    assert again.version == model.version
    for x, y in zip(model.arrays(), again.arrays(), strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


def test_version_is_a_stable_content_hash() -> None:
    data = synthetic(n=3000, seed=4)
    a = fit(data, Hyper(), {"trained_at": "2026-01-01T00:00:00Z"})
    b = fit(data, Hyper(), {"trained_at": "2030-06-01T00:00:00Z"})  # when is not what
    assert a.version == b.version and a.version.startswith("dm-")
    assert fit(data, Hyper(prior_strength=5.0)).version != a.version
    doc = orjson.loads(a.to_json())
    doc["coef"][1] += 0.5
    with pytest.raises(ModelError, match="does not match its version"):
        DeliveryModel.from_dict(doc)
    with pytest.raises(ModelError, match="not a delivery model"):
        DeliveryModel.from_dict({"format": "something else"})


def test_the_model_never_sees_hold_out_rows() -> None:
    """Changing every hold-out outcome leaves the trained model (and its version) unchanged."""
    data = synthetic(n=4000, seed=6)
    train, test, _ = time_split(data.time_ms, 0.25)
    before = fit(data.take(train)).version
    data.actual_days[test] *= 3.0
    data.late[test] = 1 - data.late[test]
    assert fit(data.take(train)).version == before


def test_kernel_arrays_on_the_shipped_network(model: DeliveryModel) -> None:
    net = load_default()
    ka = kernel_arrays(model, net)
    r, s = len(net.regions), len(net.services)
    assert ka.quantile_days.shape == (r, r, s, len(PROBS))
    uncovered = np.isnan(net.lane_transit_mean)
    assert np.isnan(ka.quantile_days[uncovered]).all()
    covered = ~uncovered
    # the synthetic model knows no network service: every covered lane reads lane x level or a
    # level node, never a lane x service cell
    used = set(np.unique(ka.source[covered]).tolist())
    assert used <= {SOURCES.index(x) for x in ("lane-level", "level", "global")}
    sp, rj = net.region_index["SP"], net.region_index["RJ"]
    express = [i for i, sv in enumerate(net.services) if sv.level == "express"]
    assert ka.source[sp, rj, express[0]] == SOURCES.index("lane-level")
    with_net = kernel_arrays(model, net, fill="network")
    no_data = (ka.source >= SOURCES.index("service")) & covered
    np.testing.assert_array_equal(with_net.quantile_days[no_data],
                                  prior_arrays(net).quantile_days[no_data])
    assert not ka.quantile_days.flags.writeable


def test_prior_arrays_follow_the_network_mean_and_p90() -> None:
    q = lognormal_quantiles(4.0, 7.0)
    assert abs(q[list(PROBS).index(0.9)] - 7.0) < 1e-6
    rng = np.random.default_rng(0)
    mu, sigma = math.log(q[list(PROBS).index(0.5)]), (math.log(7.0) - math.log(
        q[list(PROBS).index(0.5)])) / 1.2815515655446004
    assert abs(np.exp(mu + sigma * rng.normal(0, 1, 400_000)).mean() - 4.0) < 0.02
    net = load_default()
    pa = prior_arrays(net)
    assert pa.transit_from == "handover" and pa.version == f"prior:{net.version}"
    assert np.isnan(pa.quantile_days[np.isnan(net.lane_transit_mean)]).all()
