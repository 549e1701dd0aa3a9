"""Delivery-model arrays on a network's own regions and services: what the router hands the kernel.

A model learns from whatever the data names (DataCo markets, Olist states, warehouse blocks);
the candidate kernel indexes lanes by ``network.region_index`` / ``network.service_index``.
`kernel_arrays` re-indexes a model onto a network once per (model version, network version):

- a network region the model never saw reads the model's ``?`` region (its parents);
- a network service the model never saw (``correios/pac`` when the data had no carrier) reads
  the model's ``?<level>`` service: lane x level where the lane has data, else the level;
- a lane the network does not cover stays NaN (the kernel skips it anyway).

With ``fill="network"``, lanes the data never reached (the answer would come from a whole
service, level or the global distribution) use the network's own prior instead: a lognormal
through the network file's ``transit_mean`` and ``transit_p90`` (`prior_arrays`). That prior is
also what the router should use before any model artifact exists.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from operators.delivery_dist import MEDIAN_INDEX, PROBS
from operators.delivery_kernel import FEATURES, N_MODEL_FEATURES
from operators.delivery_model import LEVELS, SOURCES, UNSEEN, DeliveryModel, ModelArrays
from operators.network import Network

__all__ = ["kernel_arrays", "lognormal_quantiles", "prior_arrays"]

_Z = np.array([NormalDist().inv_cdf(float(p)) for p in PROBS])
_Z90 = NormalDist().inv_cdf(0.9)


def lognormal_quantiles(mean: float, p90: float) -> np.ndarray:
    """Quantiles (at ``PROBS``) of the lognormal with this mean and p90; NaN if not covered.

    sigma solves ``ln(p90/mean) = z90*sigma - sigma^2/2``; when p90 is too far above the mean
    for a lognormal, sigma takes its largest admissible value (z90). A zero mean is a point
    mass at 0.
    """
    if not (math.isfinite(mean) and math.isfinite(p90)):
        return np.full(PROBS.size, np.nan)
    if mean <= 0.0:
        return np.zeros(PROBS.size)
    r = math.log(max(p90, mean) / mean)
    disc = _Z90 * _Z90 - 2.0 * r
    sigma = max(_Z90 - math.sqrt(disc), 1e-3) if disc >= 0 else _Z90
    mu = math.log(mean) - sigma * sigma / 2.0
    return np.exp(mu + sigma * _Z)


def _freeze(a: ModelArrays) -> ModelArrays:
    for x in a:
        if isinstance(x, np.ndarray):
            x.setflags(write=False)
    return a


def prior_arrays(network: Network) -> ModelArrays:
    """Arrays from the network file alone: lognormal lanes, miss probability = 1 - CDF.

    ``coef`` puts weight 1 on ``cdf_miss_logit`` and 0 elsewhere, so the miss probability is
    P(transit > budget) under the lognormal: uncalibrated, but monotone in the slack.
    """
    mean, p90 = network.lane_transit_mean, network.lane_transit_p90
    qd = np.full((*mean.shape, PROBS.size), np.nan)
    for idx in zip(*np.nonzero(np.isfinite(mean)), strict=True):
        qd[idx] = lognormal_quantiles(float(mean[idx]), float(p90[idx]))
    coef = np.zeros(N_MODEL_FEATURES)
    coef[FEATURES.index("cdf_miss_logit")] = 1.0
    return _freeze(ModelArrays(
        quantile_days=qd, mean_days=np.array(mean), late_logit=np.full(mean.shape, np.nan),
        n_obs=np.zeros(mean.shape, dtype=np.int64),
        source=np.full(mean.shape, SOURCES.index("network"), dtype=np.int8),
        service_express=np.array([float(s.level == "express") for s in network.services]),
        coef=coef, probs=PROBS.copy(), median_index=MEDIAN_INDEX, regions=network.regions,
        services=tuple(s.id for s in network.services), transit_from="handover",
        version=f"prior:{network.version}",
    ))  # fmt: skip


def kernel_arrays(model: DeliveryModel, network: Network, fill: str = "model") -> ModelArrays:
    """The model's arrays indexed by ``network``'s regions and services (see module doc).

    ``fill``: ``"model"`` (lanes without data use the model's service/level/global answer) or
    ``"network"`` (they use `prior_arrays`). ``source`` and ``n_obs`` say, per lane, which
    node answered and on how many deliveries.
    """
    if fill not in ("model", "network"):
        raise ValueError(f"fill must be 'model' or 'network'; got {fill!r}")
    a = model.arrays()
    r_idx = {r: i for i, r in enumerate(model.regions)}
    s_idx = {s: i for i, s in enumerate(model.services)}
    m_r = np.array([r_idx.get(r, r_idx[UNSEEN]) for r in network.regions], dtype=np.int64)
    m_s = np.array(
        [s_idx.get(s.id, s_idx[f"?{s.level}"]) for s in network.services], dtype=np.int64
    )
    grid = np.ix_(m_r, m_r, m_s)
    qd = a.quantile_days[grid].copy()
    mean, late, n_obs, src = (x[grid].copy() for x in (a.mean_days, a.late_logit, a.n_obs,
                                                       a.source))  # fmt: skip
    if fill == "network":
        prior = prior_arrays(network)
        no_lane = src >= SOURCES.index("service")
        qd[no_lane] = prior.quantile_days[no_lane]
        mean[no_lane] = prior.mean_days[no_lane]
        src[no_lane] = SOURCES.index("network")
    uncovered = ~np.isfinite(network.lane_transit_mean)
    qd[uncovered] = np.nan
    mean[uncovered] = np.nan
    express = np.array([float(s.level == LEVELS[1]) for s in network.services])
    return _freeze(ModelArrays(
        quantile_days=np.ascontiguousarray(qd), mean_days=mean, late_logit=late, n_obs=n_obs,
        source=src, service_express=express, coef=a.coef.copy(), probs=a.probs.copy(),
        median_index=a.median_index, regions=network.regions,
        services=tuple(s.id for s in network.services), transit_from=model.transit_from,
        version=model.version,
    ))  # fmt: skip
