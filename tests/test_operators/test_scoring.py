"""The numba scoring kernel against its plain-Python specification, and its input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.scoring import (
    N_FEATURES,
    Feature,
    Weights,
    score_batch,
    score_batch_reference,
)

# Small integers make ties (equal rows, equal sums) common; wide floats exercise the arithmetic.
_values = st.one_of(
    st.integers(-3, 3).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random CSR batches: orders with 0..6 candidates, any mask (so all-masked orders too)."""
    counts = draw(st.lists(st.integers(0, 6), max_size=8))
    n_rows = sum(counts)
    n_feat = draw(st.integers(1, N_FEATURES))
    flat = draw(st.lists(_values, min_size=n_rows * n_feat, max_size=n_rows * n_feat))
    if n_rows and draw(st.booleans()):  # force exact duplicate rows: ties by construction
        flat = flat[:n_feat] * n_rows
    X = np.array(flat, dtype=np.float64).reshape(n_rows, n_feat)
    mask = np.array(draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)), dtype=bool)
    w = np.array(draw(st.lists(_values, min_size=n_feat, max_size=n_feat)), dtype=np.float64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts, dtype=np.int64)
    return X, offsets, mask.reshape(n_rows), w


def _assert_same(got: tuple, want: tuple) -> None:
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


@settings(max_examples=400, deadline=None)
@given(batches())
def test_kernel_matches_reference_on_random_batches(batch: tuple) -> None:
    _assert_same(score_batch(*batch), score_batch_reference(*batch))


@settings(max_examples=100, deadline=None)
@given(batches())
def test_parallel_kernel_matches_reference(batch: tuple) -> None:
    _assert_same(score_batch(*batch, parallel=True), score_batch_reference(*batch))


def test_ties_go_to_the_lowest_index_and_the_next_tie_is_runner_up() -> None:
    X = np.array([[1.0], [5.0], [5.0], [5.0]])
    scores, best, second = score_batch(X, np.array([0, 4]), np.ones(4, bool), np.array([1.0]))
    assert best.tolist() == [1]
    assert second.tolist() == [2]
    assert scores.tolist() == [1.0, 5.0, 5.0, 5.0]


def test_infeasible_candidates_score_minus_inf_and_are_never_chosen() -> None:
    X = np.array([[100.0], [1.0], [7.0], [8.0]])
    mask = np.array([False, True, False, False])
    scores, best, second = score_batch(X, np.array([0, 2, 4]), mask, np.array([1.0]))
    assert scores[0] == -math.inf and scores[2] == -math.inf and scores[3] == -math.inf
    assert best.tolist() == [1, -1]  # order 1 is all-masked
    assert second.tolist() == [-1, -1]


def test_orders_without_candidates_get_minus_one() -> None:
    X = np.array([[2.0], [1.0]])
    _, best, second = score_batch(X, np.array([0, 0, 2, 2]), np.ones(2, bool), np.array([1.0]))
    assert best.tolist() == [-1, 0, -1]
    assert second.tolist() == [-1, 1, -1]


def test_feasible_candidate_scoring_minus_inf_is_chosen_only_when_nothing_else_is_feasible() -> (
    None
):
    X = np.array([[-1e308], [-1e308], [3.0]])  # w * X overflows to -inf
    w = np.array([1e10])
    _, best, second = score_batch(X, np.array([0, 1, 3]), np.ones(3, bool), w)
    assert best.tolist() == [0, 2]
    assert second.tolist() == [-1, 1]
    _assert_same(
        score_batch(X, np.array([0, 1, 3]), np.ones(3, bool), w),
        score_batch_reference(X, np.array([0, 1, 3]), np.ones(3, bool), w),
    )


def test_default_weights_rank_a_late_expensive_candidate_below_an_on_time_cheap_one() -> None:
    X = np.zeros((2, N_FEATURES))
    X[0, Feature.LATE_HOURS], X[0, Feature.COST] = 10.0, 30.0
    X[1, Feature.COST] = 25.0
    _, best, _ = score_batch(X, np.array([0, 2]), np.ones(2, bool), Weights().as_array())
    assert best.tolist() == [1]


# ------------------------------------------------------------------------------ input checks


def _ok() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((3, 2)), np.array([0, 1, 3]), np.ones(3, bool), np.ones(2)


@pytest.mark.parametrize(
    ("arg", "bad"),
    [
        ("X", np.zeros((3, 2), dtype=np.float32)),
        ("X", np.zeros(6)),
        ("X", np.zeros((3, 4))[:, ::2]),  # right shape, not contiguous
        ("X", [[0.0, 0.0]] * 3),
        ("offsets", np.array([0, 1, 3], dtype=np.int32)),
        ("offsets", np.array([0, 1, 2])),  # does not end at len(X)
        ("offsets", np.array([1, 1, 3])),  # does not start at 0
        ("offsets", np.array([0, 2, 1, 3])),  # decreasing
        ("offsets", np.zeros(0, dtype=np.int64)),
        ("mask", np.ones(2, bool)),
        ("mask", np.ones(3, dtype=np.int64)),
        ("w", np.ones(3)),
        ("w", np.ones(2, dtype=np.int64)),
    ],
)
@pytest.mark.parametrize("func", [score_batch, score_batch_reference])
def test_bad_arguments_raise_value_error_naming_the_argument(func, arg: str, bad: object) -> None:
    args = dict(zip(("X", "offsets", "mask", "w"), _ok(), strict=True))
    args[arg] = bad
    with pytest.raises(ValueError, match=f"'{arg}'"):
        func(**args)


# ---------------------------------------------------------------------------------- Weights


def test_weights_array_follows_feature_order() -> None:
    w = Weights(late_hours=1.0, transit_hours=8.0, stock_cover=7.0).as_array()
    assert w.dtype == np.float64 and w.shape == (N_FEATURES,)
    assert w[Feature.LATE_HOURS] == 1.0
    assert w[Feature.STOCK_COVER] == 7.0
    assert w[Feature.TRANSIT_HOURS] == 8.0
    assert w[Feature.COST] == Weights().cost


def test_weights_from_mapping_overrides_given_keys_and_keeps_defaults() -> None:
    w = Weights.from_mapping({"cost": -2.5, "splits": 0})
    assert w.cost == -2.5 and w.splits == 0.0
    assert w.late_hours == Weights().late_hours


def test_weights_from_mapping_rejects_unknown_keys_by_name() -> None:
    with pytest.raises(ValueError, match="'lateness'"):
        Weights.from_mapping({"cost": -1.0, "lateness": -3.0})


@pytest.mark.parametrize("value", [math.nan, math.inf, "heavy"])
def test_weights_reject_non_finite_or_non_numeric_values(value: object) -> None:
    with pytest.raises(ValueError, match="cost"):
        Weights.from_mapping({"cost": value})
