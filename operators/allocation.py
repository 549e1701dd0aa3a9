"""Batch allocation: give each order its best candidate that the batch's *remaining* stock allows.

Candidates are generated and scored against the stock read at the start of the batch. Picking
every order's top-scored candidate independently would send all the orders for a popular sku to
the same nearest node; all but the first few would lose their reservation race in Redis and be
re-planned round after round (each round costs two Redis round trips), and after the last round
they would be reported unroutable although other nodes still held stock. A flash sale on one sku
is exactly that case.

So after scoring, one numba pass walks the orders in batch order (the router sorts the batch by
priority first, so urgent orders claim scarce stock first) and gives each its highest-scored
feasible candidate whose lines still fit the batch's working copy of ATP and whose nodes still
have capacity today, then takes that stock and capacity from the working copy. An order none of
whose candidates still fit gets -1: the router re-plans it against fresh stock (another worker
may have released some) rather than calling it unroutable at once.

The reservation in Redis stays the authority (another worker may have taken the stock since the
read); this pass only keeps one batch from competing with itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from operators.candidates import BatchInput, CandidateSet
from operators.scoring import require_array


@njit(cache=True, nogil=True)
def _first_use(assign, a0, j):  # pragma: no cover - compiled
    """Is line j the first of its candidate's lines shipped from its node (one shipment)?"""
    k = assign[a0 + j]
    for j2 in range(j):  # noqa: SIM110 - numba compiles loops, not generators in all()
        if assign[a0 + j2] == k:
            return False
    return True


@njit(cache=True, nogil=True)
def _fits_and_take(b, i, assign, assign_offsets, line_offsets, line_sku, line_qty, work, used,
                   capacity, enforce_capacity):  # pragma: no cover - compiled
    """Take candidate b's lines from `work` (and one shipment per node from capacity) if they
    all fit; otherwise leave everything as it was and return False."""
    l0 = line_offsets[i]
    nl = line_offsets[i + 1] - l0
    a0 = assign_offsets[b]
    ok = True
    took = 0
    for j in range(nl):
        k = assign[a0 + j]
        u = line_sku[l0 + j]
        work[k, u] -= line_qty[l0 + j]
        took += 1
        if work[k, u] < 0:
            ok = False
            break
    if ok and enforce_capacity:
        for j in range(nl):
            k = assign[a0 + j]
            if _first_use(assign, a0, j) and used[k] + 1 > capacity[k]:
                ok = False
                break
    if not ok:
        for j in range(took):
            work[assign[a0 + j], line_sku[l0 + j]] += line_qty[l0 + j]
        return False
    for j in range(nl):
        if _first_use(assign, a0, j):
            used[assign[a0 + j]] += 1
    return True


@njit(cache=True, nogil=True)
def _allocate_kernel(offsets, scores, mask, assign, assign_offsets, line_offsets, line_sku,
                     line_qty, atp, load, capacity, enforce_capacity):  # pragma: no cover
    n = offsets.shape[0] - 1
    work = atp.copy()
    used = load.astype(np.float64)
    chosen = np.full(n, -1, dtype=np.int64)
    tried = np.zeros(scores.shape[0], dtype=np.bool_)
    for i in range(n):
        lo = offsets[i]
        hi = offsets[i + 1]
        while True:
            b = -1
            best_s = -np.inf
            for m in range(lo, hi):
                s = scores[m]
                if mask[m] and not tried[m] and s == s and (b < 0 or s > best_s):
                    b = m
                    best_s = s
            if b < 0:
                break
            tried[b] = True
            if _fits_and_take(b, i, assign, assign_offsets, line_offsets, line_sku, line_qty,
                              work, used, capacity, enforce_capacity):
                chosen[i] = b
                break
    return chosen


def allocate(batch: BatchInput, cands: CandidateSet, scores: np.ndarray,
             capacity: np.ndarray, enforce_capacity: bool) -> np.ndarray:
    """Per order, the chosen candidate row (i8[n]), or -1 when nothing fits any more."""
    require_array("allocate", "scores", scores, np.float64, 1, (len(cands),))
    require_array("allocate", "capacity", capacity, np.float64, 1, (batch.atp.shape[0],))
    return _allocate_kernel(
        cands.offsets, scores, cands.mask, cands.assign, cands.assign_offsets,
        batch.line_offsets, batch.line_sku, batch.line_qty, batch.atp, batch.load, capacity,
        enforce_capacity,
    )
