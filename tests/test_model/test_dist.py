"""Transit distributions on the day grid: quantiles of known distributions come back, shrinkage
behaves like pseudo-observations, and the compiled interpolation equals its Python spec."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.delivery_dist import (
    EDGES,
    PROBS,
    cdf_at,
    histogram,
    pmf_quantiles,
    pmf_quantiles_row,
    quantile_at,
    quantiles_to_pmf,
    shrink,
)


def _pmf(days: np.ndarray) -> np.ndarray:
    return histogram(np.zeros(days.size, dtype=np.int64), days, 1)[0]


def test_quantiles_of_a_lognormal_sample_match_its_true_quantiles() -> None:
    rng = np.random.default_rng(11)
    mu, sigma = math.log(4.0), 0.4
    days = rng.lognormal(mu, sigma, 200_000)
    got = pmf_quantiles(_pmf(days))
    z = np.array([-2.3263, -1.6449, -1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244,
                  0.8416, 1.2816, 1.6449, 2.3263])
    want = np.exp(mu + sigma * z)
    np.testing.assert_allclose(got, want, rtol=0.015)


def test_whole_day_data_gives_quantiles_within_half_a_bin() -> None:
    """Whole days sit mid-bin: "always 4 days" has p50 = 4.0 exactly, and every quantile of a
    2-or-4-day lane is within 1.5 h (half a 3 h bin) of 2 or 4."""
    q = pmf_quantiles(_pmf(np.full(100, 4.0)))
    assert q[list(PROBS).index(0.5)] == 4.0
    assert np.all(np.abs(q - 4.0) <= 0.0625)
    q = pmf_quantiles(_pmf(np.array([2.0] * 30 + [4.0] * 70)))
    want = np.where(PROBS <= 0.3, 2.0, 4.0)
    assert np.all(np.abs(q - want) <= 0.0625), q


def test_values_beyond_the_grid_are_clipped_into_the_end_bins() -> None:
    idx = histogram(np.zeros(3, dtype=np.int64), np.array([-3.0, 500.0, 1.0]), 1)[0]
    assert idx[0] == 1 and idx[-1] == 1 and idx.sum() == 3


def test_shrinkage_acts_like_k_pseudo_observations() -> None:
    parent = _pmf(np.full(1000, 2.0))
    parent /= parent.sum()
    few = _pmf(np.full(3, 10.0))
    many = _pmf(np.full(3000, 10.0))
    k = 20.0
    q_few = pmf_quantiles(shrink(few, parent, k))
    q_many = pmf_quantiles(shrink(many, parent, k))
    median = list(PROBS).index(0.5)
    assert abs(q_few[median] - 2.0) < 0.1  # 3 deliveries vs 20 pseudo: the parent's median
    assert abs(q_many[median] - 10.0) < 0.1  # 3000 vs 20: the lane's own
    # exactly (3 * own + 20 * parent) / 23 of the mass sits at 10 days
    post = shrink(few, parent, k)
    assert abs(post[np.searchsorted(EDGES, 10.0) - 1] - 3 / 23) < 1e-12
    assert shrink(np.zeros(len(parent)), None, k) is None


def test_quantiles_to_pmf_round_trip_is_within_a_bin() -> None:
    rng = np.random.default_rng(3)
    q = pmf_quantiles(_pmf(rng.gamma(4.0, 1.5, 50_000)))
    back = pmf_quantiles(quantiles_to_pmf(q))
    np.testing.assert_allclose(back[1:-1], q[1:-1], atol=0.13)


def _quantile_ref(q: list[float], probs: list[float], p: float) -> float:
    if p <= probs[0]:
        return q[0]
    for j in range(1, len(probs)):
        if p <= probs[j]:
            return q[j - 1] + (p - probs[j - 1]) / (probs[j] - probs[j - 1]) * (q[j] - q[j - 1])
    return q[-1]


def _cdf_ref(q: list[float], probs: list[float], x: float) -> float:
    if math.isnan(q[0]) or math.isnan(x):
        return math.nan
    if x < q[0]:
        return 0.0
    if x > q[-1]:
        return 1.0
    j = max(i for i in range(len(q)) if q[i] <= x)
    if j == len(q) - 1:
        return probs[-1]
    return probs[j] + (x - q[j]) / (q[j + 1] - q[j]) * (probs[j + 1] - probs[j])


_quantile_rows = st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.0, 3.5, 7.0]) | st.floats(0, 60),
                          min_size=len(PROBS), max_size=len(PROBS)).map(sorted)


@settings(max_examples=300, deadline=None)
@given(_quantile_rows, st.floats(-1, 70) | st.sampled_from([0.0, 2.0, 3.5]), st.floats(0, 1))
def test_compiled_interpolation_equals_the_python_spec(q: list[float], x: float, p: float) -> None:
    row = np.array(q)
    assert quantile_at(row, PROBS, p) == _quantile_ref(q, list(PROBS), p)
    assert cdf_at(row, PROBS, x) == _cdf_ref(q, list(PROBS), x)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 130), min_size=1, max_size=60))
def test_compiled_pmf_quantiles_equal_the_numpy_version(days: list[float]) -> None:
    pmf = _pmf(np.array(days))
    np.testing.assert_allclose(pmf_quantiles_row(pmf, PROBS, EDGES), pmf_quantiles(pmf),
                               atol=1e-9)


def test_cdf_at_is_nan_without_a_distribution() -> None:
    assert math.isnan(cdf_at(np.full(len(PROBS), np.nan), PROBS, 3.0))
