"""A re-route that keeps a node keeps that node's handling clock.

Why: the candidate kernel times every candidate from the batch's ``now`` (a parcel released to
a node now is handed to the carrier at ``ready_ms(now)``: handling hours before the cut-off,
else the next day). That is right for a new order, and for a re-route to another node. But when
a proactive re-route (or a join) keeps the node and only swaps the carrier or service, the
parcel is already being handled there: the carrier picks it up when the original plan said,
not a fresh handling time later. Timing it from ``now`` made every carrier swap look late, and
after the cut-off a full day late (docs/predictive.md, *Evidence*), which skews the re-plan
towards dearer services and moves that are not needed.

So the router tells the planner, per re-routed order, the pick-up its current plan expects at
each node it is held at (`kept_ready`: the node's clock on the decision's time), and the
planner rewrites the single-node candidates at such a node after the kernels (`keep_clock`):
estimate, lateness, transit hours and miss probability from ``max(now, that pick-up)``.
Split candidates keep the kernel's timing (a conservative estimate; they are rare in re-routes).
Pure; numpy in place on the candidate set, like the risk pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from operators.candidate_kernel import ready_ms
from operators.candidates import BatchInput, CandidateSet, NetworkArrays
from operators.closures import NodeClock
from operators.delivery_kernel import N_MODEL_FEATURES, miss_probability
from operators.delivery_model import ModelArrays
from operators.orders import OrderRecord
from operators.scoring import Feature

__all__ = ["keep_clock", "kept_ready"]

HOUR_MS = 3_600_000.0
DAY_MS = 86_400_000.0

#: order id -> {node index: the pick-up (ms) its current plan expects at that node}
Kept = Mapping[str, Mapping[int, float]]


def kept_ready(records: Iterable[OrderRecord], clock: NodeClock) -> dict[str, dict[int, float]]:
    """The pick-up each record's plan expects at each node it holds stock at: the node's clock
    on the decision's time (`NodeClock.pickup`, the closures' rule)."""
    out: dict[str, dict[int, float]] = {}
    for rec in records:
        if not rec.reservations:
            continue
        decided = int(orjson.loads(rec.decision)["timings"]["decided_at"])
        at = {clock.index[n]: clock.pickup(clock.index[n], decided)
              for n in rec.reservations if n in clock.index}
        if at:
            out[rec.order.order_id] = at
    return out


def keep_clock(orders: Sequence[Any], index: Sequence[int], batch: BatchInput,
               cands: CandidateSet, net: NetworkArrays, model: ModelArrays, kept: Kept,
               now_ms: int) -> int:
    """Re-time the single-node candidates of the ``kept`` orders at a node they are held at
    (``orders[i]`` is batch row ``index[i]``): hand-over at ``max(now, kept pick-up)`` instead
    of ``ready_ms(now)``. Returns how many candidates moved earlier."""
    changed = 0
    scratch = np.empty(N_MODEL_FEATURES)
    from_order = model.transit_from == "order"
    X = cands.X
    for order, row in zip(orders, index, strict=True):
        at = kept.get(order.order_id) if row >= 0 else None
        if not at:
            continue
        promise = float(batch.promise_ms[row])
        l0, l1 = int(batch.line_offsets[row]), int(batch.line_offsets[row + 1])
        kg = float(batch.line_kg[l0:l1].sum())
        rd = int(batch.dest_region[row])
        for m in range(int(cands.offsets[row]), int(cands.offsets[row + 1])):
            if int(cands.n_nodes[m]) != 1:
                continue
            k = int(cands.assign[cands.assign_offsets[m]])
            if k not in at:
                continue
            fresh = float(ready_ms(now_ms, float(net.node_utc_offset[k]),
                                   float(net.node_cutoff_hour[k]),
                                   float(net.node_handling_hours[k])))
            start = max(float(now_ms), at[k])
            if start >= fresh:
                continue
            est = math.floor(float(cands.est_ms[m]) - fresh + start + 0.5)
            cands.est_ms[m] = est
            X[m, Feature.LATE_HOURS] = max(est - promise, 0.0) / HOUR_MS
            X[m, Feature.TRANSIT_HOURS] = (est - now_ms) / HOUR_MS
            if not from_order:
                s = int(cands.service[m])
                p = miss_probability(
                    model.quantile_days, model.late_logit, model.service_express, model.coef,
                    model.probs, int(model.median_index), int(net.node_region[k]), rd, s,
                    (promise - start) / DAY_MS, X[m, Feature.LANE_DELAY_HOURS],
                    X[m, Feature.DISTANCE_KM], kg, math.nan, math.nan, X[m, Feature.LOAD],
                    scratch)  # fmt: skip
                X[m, Feature.MISS_PROB] = p if p == p else 1.0  # unknown counts as risky
            changed += 1
    return changed
