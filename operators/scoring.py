"""Score a batch of routing candidates and pick each order's best and runner-up.

Candidates of a batch are laid out CSR-style (see docs/DESIGN.md, "Scoring"): the rows
``offsets[i]:offsets[i + 1]`` of ``X`` are order ``i``'s candidates, ``mask`` marks the feasible
ones. One numba call scores the whole batch: at a few ns per candidate the kernel is noise next
to candidate generation, but only if nothing on the way allocates per order, so the wrapper
checks its inputs once and hands the flat arrays straight to the kernel.

``score_batch_reference`` is the specification written as plain Python loops; the kernel is
tested against it (tests/test_operators/test_scoring.py).

Selection rule, shared by both:

- ``score = sum(w[f] * X[m, f] for f in 0..F-1)``, accumulated in feature order; higher is better.
- Infeasible candidates (``mask`` False) get score ``-inf`` and are never chosen.
- Among feasible candidates, the highest score wins; ties go to the lowest index, so a replay of
  the same batch yields the same decision. A feasible candidate whose score is ``-inf`` (overflow)
  can still be chosen when nothing better exists; a NaN score (only possible from non-finite
  features or weights) is never chosen.
- ``best``/``second`` are global candidate indices, ``-1`` when there is none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np
from numba import njit, prange

__all__ = [
    "N_FEATURES",
    "Feature",
    "Weights",
    "require_array",
    "score_batch",
    "score_batch_reference",
]


class Feature(IntEnum):
    """Column of the feature matrix ``X``; the order is part of the contract (DESIGN.md)."""

    LATE_HOURS = 0
    COST = 1
    DISTANCE_KM = 2
    LOAD = 3
    LANE_DELAY_HOURS = 4
    SPLITS = 5
    STOCK_COVER = 6
    TRANSIT_HOURS = 7
    NOT_PREFERRED = 8  # 1 when a business rule prefers other nodes/services for the order
    MISS_PROB = 9  # P(missing the promise), from the delivery-time model (operators/risk.py)
    CO2E_KG = 10  # estimated kg CO2e of the candidate's shipments (operators/emissions.py)


N_FEATURES = len(Feature)


@dataclass(frozen=True, slots=True)
class Weights:
    """User-tunable weight per feature; higher score is better, so costs carry negative weights.

    Field names are the lower-case ``Feature`` names, which is what ``from_mapping`` accepts
    (e.g. from a config file) and what ``as_array`` relies on to keep the kernel's column order.
    """

    late_hours: float = -4.0
    cost: float = -1.0
    distance_km: float = -0.002
    load: float = -5.0
    lane_delay_hours: float = -0.5
    splits: float = -15.0
    stock_cover: float = 0.5
    transit_hours: float = -0.05
    not_preferred: float = -25.0  # a preference is worth about 25 currency units of cost
    miss_prob: float = -40.0  # a certain miss costs about 40 currency units (on top of lateness)
    # A carbon price, currency units per kg CO2e (negative: a cost). 0 by default: what CO2e is
    # worth is the business's call, and an upgrade must not silently re-route anyone. A common
    # starting point is the EU ETS allowance price, ~70 EUR/t in 2025 (EEX auction results),
    # about -0.4 BRL/kg; docs/evaluation.md ("price of green") shows what each price costs.
    co2e_kg: float = 0.0

    def __post_init__(self) -> None:
        # A NaN or infinite weight would silently make every score NaN/inf: refuse it at the edge.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"Weights.{f.name} must be a finite number; got {v!r}")

    def as_array(self) -> np.ndarray:
        """The weights as ``f8[N_FEATURES]`` in ``Feature`` order, ready for ``score_batch``."""
        return np.array([getattr(self, f.name.lower()) for f in Feature], dtype=np.float64)

    @classmethod
    def from_mapping(cls, m: Mapping[str, float]) -> Weights:
        """Weights from a (partial) mapping; missing keys keep their defaults.

        Unknown keys raise ``ValueError`` naming the key: a typo in a config file must not be
        silently ignored, or the operator believes a weight changed when it did not.
        """
        known = {f.name for f in fields(cls)}
        for key in m:
            if key not in known:
                raise ValueError(
                    f"unknown weight {key!r}; expected one of {', '.join(sorted(known))}"
                )
        values: dict[str, float] = {}
        for key, value in m.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"weight {key!r} must be a number; got {value!r}") from None
        return cls(**values)


# ----------------------------------------------------------------------------- input checks


def require_array(
    func: str, name: str, a: object, dtype: type, ndim: int, shape: tuple[int | None, ...]
) -> np.ndarray:
    """Check one kernel argument; ``ValueError`` names the function and the argument.

    Kernels index raw memory, so a wrong dtype, rank, length or a strided view must be refused
    before the call rather than produce garbage (or a numba recompile for a new type).
    ``shape`` entries of ``None`` are not checked.
    """
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{func}: argument {name!r} must be a numpy array; got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(
            f"{func}: argument {name!r} must have dtype {np.dtype(dtype).name}; got {a.dtype.name}"
        )
    if a.ndim != ndim:
        raise ValueError(f"{func}: argument {name!r} must be {ndim}-d; got {a.ndim}-d")
    for got, want in zip(a.shape, shape, strict=True):
        if want is not None and got != want:
            raise ValueError(
                f"{func}: argument {name!r} must have shape "
                f"{tuple('*' if s is None else s for s in shape)}; got {a.shape}"
            )
    if not a.flags.c_contiguous:
        raise ValueError(f"{func}: argument {name!r} must be C-contiguous")
    return a


def _check_inputs(
    func: str, X: object, offsets: object, mask: object, w: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = require_array(func, "X", X, np.float64, 2, (None, None))
    n_rows, n_feat = X.shape
    offsets = require_array(func, "offsets", offsets, np.int64, 1, (None,))
    mask = require_array(func, "mask", mask, np.bool_, 1, (n_rows,))
    w = require_array(func, "w", w, np.float64, 1, (n_feat,))
    if offsets.shape[0] < 1:
        raise ValueError(f"{func}: argument 'offsets' must have n_orders + 1 >= 1 entries")
    if offsets[0] != 0 or offsets[-1] != n_rows:
        raise ValueError(
            f"{func}: argument 'offsets' must start at 0 and end at len(X)={n_rows}; "
            f"got {offsets[0]}..{offsets[-1]}"
        )
    if offsets.shape[0] > 1 and bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError(f"{func}: argument 'offsets' must be non-decreasing")
    return X, offsets, mask, w


# ---------------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True)
def _score_order(X, mask, w, lo, hi, scores):  # pragma: no cover - compiled
    """Score rows lo:hi into ``scores``; return (best, second) by the module's selection rule."""
    n_feat = X.shape[1]
    best = -1
    second = -1
    best_s = -np.inf
    second_s = -np.inf
    for m in range(lo, hi):
        if not mask[m]:
            scores[m] = -np.inf
            continue
        acc = 0.0
        for f in range(n_feat):
            acc += w[f] * X[m, f]
        scores[m] = acc
        if acc != acc:  # NaN: never chosen
            continue
        if best < 0 or acc > best_s:
            second = best
            second_s = best_s
            best = m
            best_s = acc
        elif second < 0 or acc > second_s:
            second = m
            second_s = acc
    return best, second


@njit(cache=True, nogil=True)
def _score_kernel(X, offsets, mask, w):  # pragma: no cover - compiled
    n = offsets.shape[0] - 1
    scores = np.empty(X.shape[0], dtype=np.float64)
    best = np.empty(n, dtype=np.int64)
    second = np.empty(n, dtype=np.int64)
    for i in range(n):
        best[i], second[i] = _score_order(X, mask, w, offsets[i], offsets[i + 1], scores)
    return scores, best, second


@njit(cache=True, nogil=True, parallel=True)
def _score_kernel_parallel(X, offsets, mask, w):  # pragma: no cover - compiled
    n = offsets.shape[0] - 1
    scores = np.empty(X.shape[0], dtype=np.float64)
    best = np.empty(n, dtype=np.int64)
    second = np.empty(n, dtype=np.int64)
    for i in prange(n):
        b, s = _score_order(X, mask, w, offsets[i], offsets[i + 1], scores)
        best[i] = b
        second[i] = s
    return scores, best, second


def score_batch(
    X: np.ndarray, offsets: np.ndarray, mask: np.ndarray, w: np.ndarray, *, parallel: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score every candidate and pick each order's best and runner-up (one numba call).

    Args: ``X`` f8[M, F], ``offsets`` i8[n + 1] (order i owns rows offsets[i]:offsets[i+1]),
    ``mask`` bool[M] (False = infeasible), ``w`` f8[F] (e.g. ``Weights().as_array()``).
    Returns ``(scores f8[M], best i8[n], second i8[n])``; see the module docstring for the rule.

    ``parallel=True`` spreads orders over numba's threads. It is off by default: on the 2-core
    target it saves at most ~0.1 µs per order (a few tens of µs per 500-order batch, against
    ~3 µs per order for candidate generation), and when the other core is busy (Kafka client,
    bytewax, Redis client, another worker) a call waits for a scheduler slice and takes
    milliseconds instead (benchmarks/kernel_bench.py).

    >>> X = np.array([[1.0], [3.0], [2.0]]); w = np.array([1.0])
    >>> s, best, second = score_batch(X, np.array([0, 3]), np.array([True, False, True]), w)
    >>> best.tolist(), second.tolist()
    ([2], [0])
    """
    X, offsets, mask, w = _check_inputs("score_batch", X, offsets, mask, w)
    kernel = _score_kernel_parallel if parallel else _score_kernel
    return kernel(X, offsets, mask, w)


def score_batch_reference(
    X: np.ndarray, offsets: np.ndarray, mask: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The specification of ``score_batch`` in plain Python (slow; for tests only).

    Written independently of the kernel's single pass: it scores every row, then ranks each
    order's feasible, non-NaN candidates by ``(-score, index)`` and takes the first two.
    """
    X, offsets, mask, w = _check_inputs("score_batch_reference", X, offsets, mask, w)
    n_rows, n_feat = X.shape
    scores = np.empty(n_rows, dtype=np.float64)
    for m in range(n_rows):
        if not mask[m]:
            scores[m] = -math.inf
            continue
        acc = 0.0
        for f in range(n_feat):
            acc += float(w[f]) * float(X[m, f])
        scores[m] = acc
    n = len(offsets) - 1
    best = np.full(n, -1, dtype=np.int64)
    second = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        ranked = sorted(
            (-float(scores[m]), m)
            for m in range(int(offsets[i]), int(offsets[i + 1]))
            if mask[m] and not math.isnan(scores[m])
        )
        if ranked:
            best[i] = ranked[0][1]
        if len(ranked) > 1:
            second[i] = ranked[1][1]
    return scores, best, second
