"""What the routing kernel calls per candidate: transit quantiles, and the probability of
missing the promise (features + logistic model), all ``@njit``.

Why one feature function: training (`operators.delivery_model.fit`), evaluation and the routing
kernel all call `miss_features`, so a feature cannot mean one thing offline and another online.

Features (``FEATURES``, in this order; column 0 is the intercept):

=================  ===========================================================================
``bias``           1
``cdf_miss_logit`` logit of P(transit > budget) read from the lane's quantiles, where budget =
                   promise days - announced lane delay; clipped to [0.005, 0.995] first
``slack_days``     budget - lane median transit (days), clipped to +-30
``lane_late_logit``logit of the lane+service late rate, smoothed toward its parents
``express``        1 for an express service level
``distance_1000km``distance / 1000
``dow_sin/cos``    day of week (0 = Monday) on the unit circle
``hour_sin/cos``   local hour of day on the unit circle
``delay_days``     announced lane delay (lane health) in days
``load``           node backlog / daily capacity
``kg_0..kg_16``    one-hot weight class: [0,0.5) [0.5,1) [1,2) [2,4) [4,8) [8,16) [16,inf) kg
                   (unknown weight is the reference class: all zeros)
=================  ===========================================================================

A missing input (NaN) contributes 0 to its features; a feature that never varied in the training
data got a zero coefficient, so a data set without weights simply ignores weight. Lane health
also enters without training data: the announced delay shifts the budget the lane's transit
distribution is read at.

Cost: ``miss_probability`` is ~Q + F floating-point steps (Q = 13 quantiles, F = 19 features):
~70 ns per candidate inside a numba loop (``benchmarks/model_bench.py``); every function here is
``inline="always"`` so a calling kernel pays no call or array-view overhead.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from operators.delivery_dist import cdf_at, quantile_at

__all__ = [
    "FEATURES", "FEATURE_SIGNS", "N_MODEL_FEATURES", "WEIGHT_EDGES_KG", "design_matrix",
    "logit", "miss_features", "miss_from_row", "miss_probability", "sigmoid", "transit_cdf",
    "transit_quantile",
]  # fmt: skip

FEATURES = (
    "bias", "cdf_miss_logit", "slack_days", "lane_late_logit", "express", "distance_1000km",
    "dow_sin", "dow_cos", "hour_sin", "hour_cos", "delay_days", "load",
    "kg_0", "kg_0_5", "kg_1", "kg_2", "kg_4", "kg_8", "kg_16",
)  # fmt: skip
N_MODEL_FEATURES = len(FEATURES)
#: Required coefficient signs (+1 >= 0, -1 <= 0): less slack, more announced delay, a higher
#: chance of exceeding the budget can never lower the miss probability.
FEATURE_SIGNS = tuple(
    {"cdf_miss_logit": 1, "slack_days": -1, "delay_days": 1}.get(f, 0) for f in FEATURES
)
WEIGHT_EDGES_KG = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
WEIGHT_EDGES = np.array(WEIGHT_EDGES_KG)  # read by the compiled code as a constant
_KG0 = FEATURES.index("kg_0")
_N_KG = len(WEIGHT_EDGES_KG)
P_CLIP = 0.005
SLACK_CLIP = 30.0
LOGIT_CLIP = 6.0


@njit(cache=True, nogil=True, inline="always")
def logit(p: float) -> float:
    """log(p / (1 - p)) with p clipped to [P_CLIP, 1 - P_CLIP]."""
    p = min(max(p, P_CLIP), 1.0 - P_CLIP)
    return math.log(p / (1.0 - p))


@njit(cache=True, nogil=True, inline="always")
def sigmoid(z: float) -> float:
    """1 / (1 + exp(-z)), without overflow for large |z|."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, nogil=True, inline="always")
def miss_features(
    out, qrow, probs, median_index, promise_days, late_logit, express,
    distance_km, dow, hour, delay_hours, load, weight_kg,
):  # fmt: skip
    """Write the feature vector of one candidate into ``out`` (f8[N_MODEL_FEATURES]).

    ``qrow``: the lane's quantiles (days, f8[Q], NaN = no distribution); ``promise_days``: days
    from the start of transit to the promise (NaN = no promise); ``late_logit``: the lane's
    smoothed late-rate logit (NaN = unknown); ``dow`` 0..6, ``hour`` 0..24 local (NaN = unknown).
    """
    for j in range(out.shape[0]):
        out[j] = 0.0
    out[0] = 1.0
    delay_days = 0.0 if math.isnan(delay_hours) else delay_hours / 24.0
    budget = promise_days - delay_days
    if not math.isnan(budget) and not math.isnan(qrow[0]):
        out[1] = logit(1.0 - cdf_at(qrow, probs, budget))
        out[2] = min(max(budget - qrow[median_index], -SLACK_CLIP), SLACK_CLIP)
    if not math.isnan(late_logit):
        out[3] = min(max(late_logit, -LOGIT_CLIP), LOGIT_CLIP)
    out[4] = express
    if not math.isnan(distance_km):
        out[5] = distance_km / 1000.0
    if not math.isnan(dow):
        a = 2.0 * math.pi * dow / 7.0
        out[6] = math.sin(a)
        out[7] = math.cos(a)
    if not math.isnan(hour):
        a = 2.0 * math.pi * hour / 24.0
        out[8] = math.sin(a)
        out[9] = math.cos(a)
    out[10] = delay_days
    if not math.isnan(load):
        out[11] = load
    if not math.isnan(weight_kg):
        b = _N_KG - 1
        while b > 0 and weight_kg < WEIGHT_EDGES[b]:
            b -= 1
        out[_KG0 + b] = 1.0  # a negative weight (bad data) counts as the lightest class


@njit(cache=True, nogil=True, inline="always")
def miss_from_row(coef, x) -> float:
    """sigmoid(coef . x): the probability of missing the promise for one feature row."""
    z = 0.0
    for j in range(x.shape[0]):
        z += coef[j] * x[j]
    return sigmoid(z)


# ---------------------------------------------------------------- what the routing kernel calls


@njit(cache=True, nogil=True, inline="always")
def transit_quantile(quantile_days, probs, o, d, s, p):  # pragma: no cover - compiled
    """Transit days at level ``p`` on lane ``o -> d`` with service ``s`` (NaN = not covered).

    ``quantile_days``: f8[R, R, S, Q] (``ModelArrays.quantile_days``). O(Q), ~25 ns inlined.
    """
    return quantile_at(quantile_days[o, d, s], probs, p)


@njit(cache=True, nogil=True, inline="always")
def transit_cdf(quantile_days, probs, o, d, s, x_days):  # pragma: no cover - compiled
    """P(transit <= ``x_days``) on lane ``o -> d`` with service ``s``. O(Q)."""
    return cdf_at(quantile_days[o, d, s], probs, x_days)


@njit(cache=True, nogil=True, inline="always")
def miss_probability(
    quantile_days, late_logit, service_express, coef, probs, median_index,
    o, d, s, promise_days, delay_hours, distance_km, weight_kg, dow, hour, load, scratch,
):  # fmt: skip  # pragma: no cover - compiled
    """P(delivery later than the promise) for one candidate.

    Arrays come from ``ModelArrays`` (one per model version, shared by every call);
    ``promise_days`` is the transit budget: (promise - start of transit) in days, where the
    start is the node's hand-over time when ``ModelArrays.transit_from == "handover"`` and the
    order time when it is ``"order"``. ``delay_hours`` is the lane's announced delay (lane
    health), ``dow``/``hour`` the local order time; NaN = unknown for any of the scalars.
    ``scratch`` is a caller-owned f8[N_MODEL_FEATURES] (allocate once per batch, not per call).
    """
    miss_features(
        scratch, quantile_days[o, d, s], probs, median_index, promise_days, late_logit[o, d, s],
        service_express[s], distance_km, dow, hour, delay_hours, load, weight_kg,
    )  # fmt: skip
    return miss_from_row(coef, scratch)


@njit(cache=True, nogil=True)
def design_matrix(
    X, quantile_days, late_logit, service_express, probs, median_index,
    o, d, s, promise_days, delay_hours, distance_km, weight_kg, dow, hour, load,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``X[i]`` with the features of row i (the same code path as ``miss_probability``)."""
    for i in range(X.shape[0]):
        miss_features(
            X[i], quantile_days[o[i], d[i], s[i]], probs, median_index, promise_days[i],
            late_logit[o[i], d[i], s[i]], service_express[s[i]], distance_km[i], dow[i],
            hour[i], delay_hours[i], load[i], weight_kg[i],
        )  # fmt: skip
