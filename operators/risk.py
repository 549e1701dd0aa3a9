"""Delivery risk per candidate: the probability of missing the promise, inside the batch's numba
pass, from the delivery-time model (`operators/delivery_model.py`, `docs/model.md`).

Why a separate pass over the candidates rather than more code in the candidate kernel: the
model's arrays change with the model version (and online updates), the candidate kernel's with
the network; keeping them apart keeps each kernel small and each input checked in one place.
The pass writes the MISS_PROB feature column in place, so scoring weighs risk like any other
feature (weight `miss_prob`, default -40: a likely miss costs about 40 currency units).

Without a trained artifact the model is the network's own lognormal prior per lane
(`prior_arrays`): miss = P(transit > time left after the node hands the parcel over), which
already prefers lanes with slack over lanes that are on time only on average.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import njit

from operators.candidate_kernel import ready_ms
from operators.candidates import BatchInput, CandidateSet, NetworkArrays
from operators.delivery_align import kernel_arrays, prior_arrays
from operators.delivery_kernel import N_MODEL_FEATURES, miss_probability
from operators.delivery_model import DeliveryModel, ModelArrays
from operators.network import Network
from operators.scoring import Feature

DAY_MS = 86_400_000.0


def load_model(network: Network, path: str | None) -> ModelArrays:
    """The model arrays for `network`: a trained artifact (lanes without data fall back to the
    network's prior), or the prior alone when `path` is None."""
    if path is None:
        return prior_arrays(network)
    model = DeliveryModel.from_json(Path(path).read_bytes())
    return kernel_arrays(model, network, fill="network")


@njit(cache=True, nogil=True)
def _risk_kernel(offsets, service, assign, assign_offsets, X, dest_region, promise_ms,
                 line_offsets, line_kg, node_region, node_utc_offset, node_cutoff_hour,
                 node_handling_hours, now_ms, qd, late_logit, service_express, coef, probs,
                 median_index, from_order, delay_col, dist_col, load_col, out_col
                 ):  # pragma: no cover - compiled
    scratch = np.empty(N_MODEL_FEATURES)
    n = offsets.shape[0] - 1
    for i in range(n):
        l0 = line_offsets[i]
        nl = line_offsets[i + 1] - l0
        kg = 0.0
        for j in range(nl):
            kg += line_kg[l0 + j]
        for m in range(offsets[i], offsets[i + 1]):
            s = service[m]
            worst = 0.0
            a0 = assign_offsets[m]
            for j in range(nl):
                k = assign[a0 + j]
                if j > 0 and k == assign[a0 + j - 1]:
                    continue  # same shipment as the line before (always so off splits)
                start = now_ms if from_order else ready_ms(
                    now_ms, node_utc_offset[k], node_cutoff_hour[k], node_handling_hours[k])
                budget = (promise_ms[i] - start) / DAY_MS
                p = miss_probability(
                    qd, late_logit, service_express, coef, probs, median_index,
                    node_region[k], dest_region[i], s, budget, X[m, delay_col],
                    X[m, dist_col], kg, math.nan, math.nan, X[m, load_col], scratch,
                )  # fmt: skip
                if p > worst or p != p:
                    worst = p
            X[m, out_col] = worst if worst == worst else 1.0  # unknown counts as risky
    return 0


def fill_miss_probability(batch: BatchInput, cands: CandidateSet, network: NetworkArrays,
                          model: ModelArrays, now_ms: int) -> None:
    """Write each candidate's probability of missing its order's promise into
    ``cands.X[:, Feature.MISS_PROB]`` (the worst shipment's, for split candidates)."""
    if len(cands) == 0:
        return
    _risk_kernel(
        cands.offsets, cands.service, cands.assign, cands.assign_offsets, cands.X,
        batch.dest_region, batch.promise_ms, batch.line_offsets, batch.line_kg,
        network.node_region, network.node_utc_offset, network.node_cutoff_hour,
        network.node_handling_hours, int(now_ms), model.quantile_days, model.late_logit,
        model.service_express, model.coef, model.probs, int(model.median_index),
        model.transit_from == "order", int(Feature.LANE_DELAY_HOURS), int(Feature.DISTANCE_KM),
        int(Feature.LOAD), int(Feature.MISS_PROB),
    )  # fmt: skip
