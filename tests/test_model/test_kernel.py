"""The compiled per-candidate functions equal a plain-Python specification, and the miss
probability never falls when the slack shrinks (what the router relies on)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.delivery_dist import MEDIAN_INDEX, PROBS
from operators.delivery_kernel import (
    FEATURE_SIGNS,
    FEATURES,
    N_MODEL_FEATURES,
    WEIGHT_EDGES_KG,
    design_matrix,
    miss_probability,
    transit_cdf,
    transit_quantile,
)


def _cdf(q: list[float], x: float) -> float:
    probs = list(PROBS)
    if x < q[0]:
        return 0.0
    if x > q[-1]:
        return 1.0
    j = max(i for i in range(len(q)) if q[i] <= x)
    if j == len(q) - 1:
        return probs[-1]
    return probs[j] + (x - q[j]) / (q[j + 1] - q[j]) * (probs[j + 1] - probs[j])


def _logit(p: float) -> float:
    p = min(max(p, 0.005), 0.995)
    return math.log(p / (1 - p))


def miss_reference(q: list[float], promise: float, late_logit: float, express: float,
                   coef: list[float], distance: float, dow: float, hour: float, delay: float,
                   load: float, kg: float) -> float:  # fmt: skip
    """FEATURES written out one by one, as docs/model.md defines them."""
    x = dict.fromkeys(FEATURES, 0.0)
    x["bias"] = 1.0
    d_days = 0.0 if math.isnan(delay) else delay / 24
    budget = promise - d_days
    if not math.isnan(budget) and not math.isnan(q[0]):
        x["cdf_miss_logit"] = _logit(1 - _cdf(q, budget))
        x["slack_days"] = min(max(budget - q[MEDIAN_INDEX], -30), 30)
    if not math.isnan(late_logit):
        x["lane_late_logit"] = min(max(late_logit, -6), 6)
    x["express"] = express
    if not math.isnan(distance):
        x["distance_1000km"] = distance / 1000
    if not math.isnan(dow):
        x["dow_sin"] = math.sin(2 * math.pi * dow / 7)
        x["dow_cos"] = math.cos(2 * math.pi * dow / 7)
    if not math.isnan(hour):
        x["hour_sin"] = math.sin(2 * math.pi * hour / 24)
        x["hour_cos"] = math.cos(2 * math.pi * hour / 24)
    x["delay_days"] = d_days
    if not math.isnan(load):
        x["load"] = load
    if not math.isnan(kg):
        names = ["kg_0", "kg_0_5", "kg_1", "kg_2", "kg_4", "kg_8", "kg_16"]
        cls = max([0] + [i for i, e in enumerate(WEIGHT_EDGES_KG) if kg >= e])
        x[names[cls]] = 1.0
    z = sum(c * x[f] for c, f in zip(coef, FEATURES, strict=True))
    return 1 / (1 + math.exp(-z))


_maybe = st.floats(0, 40) | st.just(math.nan)
_qrow = st.lists(st.floats(0, 30) | st.sampled_from([1.0, 2.0, 2.0]), min_size=len(PROBS),
                 max_size=len(PROBS)).map(sorted)
_coef = st.lists(st.floats(-2, 2), min_size=N_MODEL_FEATURES, max_size=N_MODEL_FEATURES)


@settings(max_examples=400, deadline=None)
@given(_qrow, _maybe, st.floats(-8, 8) | st.just(math.nan), st.sampled_from([0.0, 1.0]), _coef,
       st.floats(0, 4000) | st.just(math.nan), st.integers(0, 6).map(float) | st.just(math.nan),
       st.floats(0, 23.99) | st.just(math.nan), st.floats(0, 96) | st.just(math.nan),
       st.floats(0, 2) | st.just(math.nan), st.floats(-1, 40) | st.just(math.nan))
def test_miss_probability_equals_the_reference(q, promise, late, express, coef, distance, dow,
                                                hour, delay, load, kg) -> None:  # fmt: skip
    qd = np.array(q).reshape(1, 1, 1, -1)
    got = miss_probability(qd, np.array([[[late]]]), np.array([express]), np.array(coef), PROBS,
                           MEDIAN_INDEX, 0, 0, 0, promise, delay, distance, kg, dow, hour, load,
                           np.empty(N_MODEL_FEATURES))  # fmt: skip
    want = miss_reference(q, promise, late, express, coef, distance, dow, hour, delay, load, kg)
    assert abs(got - want) < 1e-9


@settings(max_examples=200, deadline=None)
@given(_qrow, st.floats(0, 1), st.floats(-1, 40))
def test_transit_quantile_and_cdf_read_the_right_lane(q, p, x) -> None:
    qd = np.full((2, 3, 2, len(PROBS)), np.nan)
    qd[1, 2, 0] = q
    assert abs(transit_quantile(qd, PROBS, 1, 2, 0, p) - np.interp(p, PROBS, q)) < 1e-9
    assert transit_cdf(qd, PROBS, 1, 2, 0, x) == _cdf(q, x)
    assert math.isnan(transit_quantile(qd, PROBS, 0, 0, 0, p))


@settings(max_examples=300, deadline=None)
@given(_qrow, st.floats(0, 30), st.floats(0, 30), st.floats(0, 48), _coef)
def test_less_slack_or_more_delay_never_lowers_the_miss_probability(q, a, b, delay, coef) -> None:
    """With coefficients of the signs the fit enforces, P(miss) is monotone in the budget."""
    c = np.array([abs(v) * s if s else v for v, s in zip(coef, FEATURE_SIGNS, strict=True)])
    qd = np.array(q).reshape(1, 1, 1, -1)
    args = (qd, np.array([[[0.0]]]), np.array([0.0]), c, PROBS, MEDIAN_INDEX, 0, 0, 0)
    tail = (np.nan, np.nan, 2.0, 10.0, 0.5, np.empty(N_MODEL_FEATURES))
    lo, hi = min(a, b), max(a, b)
    p_short = miss_probability(*args, lo, 0.0, *tail)
    p_long = miss_probability(*args, hi, 0.0, *tail)
    p_delayed = miss_probability(*args, hi, delay, *tail)
    assert p_short >= p_long - 1e-12
    assert p_delayed >= p_long - 1e-12


def test_design_matrix_rows_are_the_per_candidate_features() -> None:
    rng = np.random.default_rng(2)
    qd = np.sort(rng.uniform(0, 10, (2, 2, 2, len(PROBS))), axis=-1)
    late = rng.normal(0, 1, (2, 2, 2))
    express = np.array([0.0, 1.0])
    n = 50
    o, d, s = (rng.integers(0, 2, n) for _ in range(3))
    cols = [rng.uniform(0, 12, n) for _ in range(7)]
    X = np.zeros((n, N_MODEL_FEATURES))
    design_matrix(X, qd, late, express, PROBS, MEDIAN_INDEX, o, d, s, *cols)
    coef = rng.normal(0, 0.5, N_MODEL_FEATURES)
    promise, delay, dist, kg, dow, hour, load = cols
    for i in range(n):
        want = miss_reference(list(qd[o[i], d[i], s[i]]), promise[i], late[o[i], d[i], s[i]],
                              express[s[i]], list(coef), dist[i], dow[i], hour[i], delay[i],
                              load[i], kg[i])  # fmt: skip
        assert abs(1 / (1 + math.exp(-X[i] @ coef)) - want) < 1e-9
