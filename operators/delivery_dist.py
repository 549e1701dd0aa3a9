"""Transit-time distributions on one fixed day grid: histograms, shrinkage, quantiles, CDF.

Why a fixed grid: the offline fit (`operators.delivery_model`) and the online sketch
(`operators.model_online`) must describe a lane the same way, and a histogram over fixed bins is
both an exact sufficient statistic for pooling (counts add) and a bounded online state (decayed
counts). Bins are centred on multiples of 3 h up to 14 days (so whole-day data such as DataCo's
"days for shipping" sits in the middle of a bin and its quantiles come out exact), 12 h up to
30 days and 2 days up to 120 days; values outside are clipped into the end bins (and counted by
the caller). Within a bin, mass is spread uniformly: the CDF is piecewise linear through the bin
edges.

Shrinkage (why and how): a lane with 3 deliveries says little about its p90. Its posterior is
``(counts + k * parent_pmf) / (n + k)`` -- the parent's distribution acts as ``k`` pseudo
observations (a Dirichlet prior on the bin probabilities), so a lane with ``n >> k`` keeps its
own shape and a lane with ``n << k`` looks like its parent. ``k`` is a hyper-parameter recorded
in the model artifact.

The kernel keeps only quantiles (``PROBS``, 13 of them) per lane: ``quantile_at`` and ``cdf_at``
interpolate between them. Below the first and above the last stored quantile the CDF is flat
(0 and 1): the model claims nothing beyond p01/p99. Both are ``@njit`` and cost O(Q) per call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "CENTERS", "EDGES", "MEDIAN_INDEX", "N_BINS", "PROBS", "bin_index", "cdf_at", "histogram",
    "pmf_mean", "pmf_quantiles", "pmf_quantiles_row", "quantile_at", "quantiles_to_pmf", "shrink",
]  # fmt: skip


def _centers() -> np.ndarray:
    return np.concatenate(
        [np.arange(0.0, 14.0, 0.125), np.arange(14.0, 30.0, 0.5), np.arange(30.0, 120.5, 2.0)]
    )


CENTERS = _centers()
#: Bin edges: midpoints between centres, and half a bin beyond the first and last centre.
EDGES = np.concatenate(
    [[CENTERS[0] - 0.0625], (CENTERS[1:] + CENTERS[:-1]) / 2.0, [CENTERS[-1] + 1.0]]
)
N_BINS = CENTERS.shape[0]
#: Quantile levels stored per lane (p01 .. p99); the kernel interpolates between them.
PROBS = np.array([0.01, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 0.99])
MEDIAN_INDEX = 6
for _a in (CENTERS, EDGES, PROBS):
    _a.setflags(write=False)


def bin_index(days: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Bin of each value, plus how many were clipped below / above the grid."""
    x = np.asarray(days, dtype=np.float64)
    idx = np.searchsorted(EDGES, x, side="right") - 1
    low = int(np.count_nonzero(idx < 0))
    high = int(np.count_nonzero(idx >= N_BINS))
    return np.clip(idx, 0, N_BINS - 1), low, high


def histogram(group: np.ndarray, days: np.ndarray, n_groups: int) -> np.ndarray:
    """Counts ``f8[n_groups, N_BINS]`` of ``days`` per integer ``group`` (0..n_groups-1)."""
    idx, _, _ = bin_index(days)
    flat = np.asarray(group, dtype=np.int64) * N_BINS + idx
    counts = np.bincount(flat, minlength=n_groups * N_BINS).astype(np.float64)
    return counts.reshape(n_groups, N_BINS)


def shrink(counts: np.ndarray, parent_pmf: np.ndarray | None, k: float) -> np.ndarray | None:
    """Posterior bin probabilities: ``(counts + k * parent) / (n + k)`` (last axis = bins).

    Without a parent (the global node) it is the empirical pmf; with no counts and no parent
    there is nothing to say (None).
    """
    n = counts.sum(axis=-1, keepdims=True)
    if parent_pmf is None:
        if not np.all(n > 0):
            return None
        return counts / n
    return (counts + k * parent_pmf) / (n + k)


def pmf_quantiles(pmf: np.ndarray, probs: np.ndarray = PROBS) -> np.ndarray:
    """Quantiles (days, >= 0) of bin pmfs ``[..., N_BINS]`` -> ``[..., len(probs)]``.

    Inverse of the piecewise-linear CDF through the bin edges; rows with no mass give NaN.
    """
    p = np.asarray(pmf, dtype=np.float64)
    total = p.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf = np.cumsum(p, axis=-1) / total
    out = np.empty((*p.shape[:-1], len(probs)))
    widths = np.diff(EDGES)
    for qi, prob in enumerate(probs):
        j = np.argmax(cdf >= prob - 1e-12, axis=-1)  # first bin reaching prob
        c_hi = np.take_along_axis(cdf, j[..., None], -1)[..., 0]
        mass = np.take_along_axis(p, j[..., None], -1)[..., 0] / total[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(mass > 0, 1.0 - (c_hi - prob) / mass, 1.0)
        out[..., qi] = EDGES[j] + np.clip(frac, 0.0, 1.0) * widths[j]
    out = np.maximum(out, 0.0)
    out[(total[..., 0] <= 0) | ~np.isfinite(total[..., 0])] = np.nan
    return out


def pmf_mean(pmf: np.ndarray) -> np.ndarray:
    """Mean days of bin pmfs ``[..., N_BINS]`` (bin centres; NaN without mass)."""
    p = np.asarray(pmf, dtype=np.float64)
    total = p.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (p @ CENTERS) / total


def quantiles_to_pmf(q: np.ndarray, probs: np.ndarray = PROBS) -> np.ndarray:
    """Bin pmf whose CDF follows the stored quantiles (used to seed an online sketch).

    The flat CDF tails put p01's mass just below the first quantile and p99's just above the
    last, so the round trip quantiles -> pmf -> quantiles is exact to within a bin.
    """
    cdf = np.array([cdf_at(q, probs, float(e)) for e in EDGES])
    cdf[-1] = 1.0
    pmf = np.diff(cdf)
    pmf[0] += cdf[0]
    return pmf / pmf.sum()


@njit(cache=True, nogil=True, inline="always")
def quantile_at(qrow: np.ndarray, probs: np.ndarray, p: float) -> float:
    """Days at quantile level ``p`` by linear interpolation over ``(probs, qrow)``.

    ``p`` outside ``[probs[0], probs[-1]]`` is clamped to the end quantile. O(Q).
    """
    n = probs.shape[0]
    if p <= probs[0]:
        return qrow[0]
    for j in range(1, n):
        if p <= probs[j]:
            t = (p - probs[j - 1]) / (probs[j] - probs[j - 1])
            return qrow[j - 1] + t * (qrow[j] - qrow[j - 1])
    return qrow[n - 1]


@njit(cache=True, nogil=True, inline="always")
def cdf_at(qrow: np.ndarray, probs: np.ndarray, x: float) -> float:
    """P(transit <= x days) from stored quantiles: 0 below the first, 1 above the last.

    Between stored quantiles the CDF is linear; at a tie of quantiles (a point mass, e.g. whole
    days) it takes the highest level reached, so P(T <= 4) of "always 4 days" is ~1. NaN when
    the lane has no distribution. O(Q).
    """
    n = probs.shape[0]
    if math.isnan(qrow[0]) or math.isnan(x):
        return math.nan
    if x < qrow[0]:
        return 0.0
    if x > qrow[n - 1]:
        return 1.0
    j = n - 1
    while j > 0 and qrow[j] > x:
        j -= 1
    if j == n - 1:
        return probs[n - 1]
    t = (x - qrow[j]) / (qrow[j + 1] - qrow[j])
    return probs[j] + t * (probs[j + 1] - probs[j])


@njit(cache=True, nogil=True)
def pmf_quantiles_row(pmf: np.ndarray, probs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`pmf_quantiles` of one pmf row, compiled: the online sketch calls it per delivery."""
    out = np.empty(probs.shape[0])
    total = 0.0
    for j in range(pmf.shape[0]):
        total += pmf[j]
    if not total > 0.0:
        out[:] = np.nan
        return out
    c = 0.0
    j = 0
    for qi in range(probs.shape[0]):
        target = probs[qi] - 1e-12
        while j < pmf.shape[0] - 1 and (c + pmf[j]) / total < target:
            c += pmf[j]
            j += 1
        mass = pmf[j] / total
        frac = 1.0 - ((c + pmf[j]) / total - probs[qi]) / mass if mass > 0.0 else 1.0
        frac = min(max(frac, 0.0), 1.0)
        out[qi] = max(edges[j] + frac * (edges[j + 1] - edges[j]), 0.0)
    return out
