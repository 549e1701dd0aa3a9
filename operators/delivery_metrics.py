"""How good is a delivery model: AUC, Brier score, calibration, quantile coverage, and the
time-ordered split every figure is computed on.

Why time-ordered: a model is used on orders that come *after* the data it learnt from; a random
split lets next month's storm teach the model about last month and flatters every figure.
`time_split` puts every row at or after the cut instant in the hold-out, so no training row is
later than any hold-out row.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["auc", "brier", "calibration_table", "expected_calibration_error", "log_loss",
           "pinball_loss", "quantile_coverage", "time_split"]  # fmt: skip


def time_split(times: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(train indices, hold-out indices, cut time): the latest ``holdout`` share is held out.

    The cut is the time of the row at position ``n - round(holdout * n)`` in time order; rows
    at that exact instant all go to the hold-out (ties never straddle the cut). Indices are in
    time order (stable: equal times keep their file order). ``holdout = 0`` holds nothing out
    (cut = +inf).
    """
    t = np.asarray(times, dtype=np.float64)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1); got {holdout}")
    if np.isnan(t).any():
        raise ValueError("time_split: times must not be NaN (order rows by file position)")
    order = np.argsort(t, kind="stable")
    n = t.shape[0]
    n_test = round(holdout * n)
    if n_test == 0:
        return order, order[:0], math.inf
    cut = float(t[order[n - n_test]])
    sorted_t = t[order]
    return order[sorted_t < cut], order[sorted_t >= cut], cut


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U; tied scores count one half). NaN if one class."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.shape[0])
    sp = p[order]
    i = 0
    while i < sp.shape[0]:  # average ranks over runs of equal scores
        j = i
        while j + 1 < sp.shape[0] and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the predicted probabilities (0 = perfect, 0.25 = a coin)."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood (probabilities clipped to [1e-12, 1 - 1e-12])."""
    y = np.asarray(y, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability table: rows sorted by prediction, cut into ``bins`` equal-count groups.

    Each group: n, lowest/highest prediction, mean prediction, observed rate. Equal-count
    groups (deciles) rather than fixed probability ranges, so every row of the table rests on
    ~n/10 outcomes; equal predictions may fall in neighbouring groups (stable order).
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, max(len(order), 1))):
        if chunk.size == 0:
            continue
        out.append({
            "n": int(chunk.size),
            "p_min": float(p[chunk].min()),
            "p_max": float(p[chunk].max()),
            "predicted": float(p[chunk].mean()),
            "observed": float(y[chunk].mean()),
        })  # fmt: skip
    return out


def expected_calibration_error(table: list[dict[str, float]]) -> float:
    """Row-weighted mean |predicted - observed| over a calibration table."""
    n = sum(r["n"] for r in table)
    return float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in table) / n)


def quantile_coverage(actual: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Share of outcomes at or below each predicted quantile: ``actual[n]``, ``q[n, K]`` -> [K].

    A calibrated p90 covers ~90% of deliveries.
    """
    a = np.asarray(actual, dtype=np.float64)[:, None]
    return np.mean(a <= np.asarray(q, dtype=np.float64), axis=0)


def pinball_loss(actual: np.ndarray, q: np.ndarray, probs: np.ndarray) -> float:
    """Mean quantile (pinball) loss in days over rows and the given levels (lower is better)."""
    a = np.asarray(actual, dtype=np.float64)[:, None]
    diff = a - np.asarray(q, dtype=np.float64)
    tau = np.asarray(probs, dtype=np.float64)[None, :]
    return float(np.mean(np.maximum(tau * diff, (tau - 1.0) * diff)))
