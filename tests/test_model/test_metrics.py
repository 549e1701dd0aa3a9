"""AUC, Brier, calibration against hand-computed values; the time split never leaks the future."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.delivery_metrics import (
    auc,
    brier,
    calibration_table,
    expected_calibration_error,
    log_loss,
    pinball_loss,
    quantile_coverage,
    time_split,
)


def test_auc_by_hand() -> None:
    # pairs (pos, neg): (0.35 > 0.1) (0.35 < 0.4) (0.8 > 0.1) (0.8 > 0.4) -> 3 of 4
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    # a tie between a positive and a negative counts one half: (0.5 = 0.5) 0.5 + (0.5 > 0.2) 1
    assert auc(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.2])) == 0.75
    assert auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert math.isnan(auc(np.array([1, 1]), np.array([0.3, 0.4])))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.1, 0.2, 0.5, 0.7]) | st.floats(0, 1)),
                min_size=2, max_size=40))
def test_auc_equals_the_pair_count_definition(rows: list[tuple[bool, float]]) -> None:
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    pos, neg = p[y], p[~y]
    if pos.size == 0 or neg.size == 0:
        return
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    assert auc(y, p) == pytest.approx(pairs / (pos.size * neg.size), abs=1e-12)


def test_brier_and_log_loss_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    # (0.01 + 0.04 + 0.16 + 0.25) / 4
    assert brier(y, p) == pytest.approx(0.115)
    want = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.5)) / 4
    assert log_loss(y, p) == pytest.approx(want)


def test_calibration_table_by_hand() -> None:
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    table = calibration_table(y, p, bins=3)
    assert [r["n"] for r in table] == [2, 2, 2]
    assert [r["predicted"] for r in table] == pytest.approx([0.1, 0.2, 0.85])
    assert [r["observed"] for r in table] == pytest.approx([0.0, 0.5, 1.0])
    # |0.1 - 0| + |0.2 - 0.5| + |0.85 - 1|, each on a third of the rows
    assert expected_calibration_error(table) == pytest.approx((0.1 + 0.3 + 0.15) / 3)


def test_quantile_coverage_and_pinball_by_hand() -> None:
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    q = np.array([[2.0], [2.0], [2.0], [2.0]])
    assert quantile_coverage(actual, q).tolist() == [0.5]
    # tau 0.9: under-prediction costs 0.9/day, over-prediction 0.1/day
    assert pinball_loss(actual, q, np.array([0.9])) == pytest.approx((0.1 + 0 + 0.9 + 1.8) / 4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=80), st.floats(0.0, 0.9))
def test_time_split_never_leaks_the_future(times: list[int], holdout: float) -> None:
    """Every training row is strictly earlier than every hold-out row, even with ties."""
    t = np.array(times, dtype=float)
    train, test, cut = time_split(t, holdout)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(times)))
    if train.size and test.size:
        assert t[train].max() < t[test].min()
    assert np.all(t[train] < cut) and np.all(t[test] >= cut)
    assert np.all(np.diff(t[train]) >= 0)  # returned in time order
    if holdout > 0 and len(times) * holdout >= 0.5:
        assert test.size >= round(len(times) * holdout)


def test_time_split_rejects_nan_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="NaN"):
        time_split(np.array([1.0, np.nan]), 0.2)
    with pytest.raises(ValueError, match="holdout"):
        time_split(np.array([1.0, 2.0]), 1.0)
