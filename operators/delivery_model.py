"""Delivery-time model: per lane and service, the distribution of transit time and a calibrated
probability of missing a promise; fitted from historical outcomes, saved as a versioned artifact.

Why distributions and not a mean: a promise is kept or broken in the tail. The routing score and
the promised date read a quantile (e.g. p90) and a miss probability, both from this model.

Structure (why): lanes are many and most have few deliveries, so every lane borrows strength
from its parents (``operators.delivery_dist.shrink``, ``prior_strength`` pseudo-observations)::

    global -> service level (standard|express) -> service -> lane x service   (cells)
    global -> service level                    -> lane x level               (lane_levels)

A cell answers for a known service; a lane x level node answers when the service is unknown to
the model (a network whose carriers the data never named, e.g. a model trained on Olist orders
used for correios/jadlog/loggi). Late rates are smoothed the same way (``rate_strength``).
Each node keeps its counts (``n`` transit observations, ``n_rate`` labelled outcomes, ``late``);
the hierarchy's code is in ``operators.delivery_nodes``.

The miss probability is a logistic regression (``operators.delivery_logit``) on the features of
``operators.delivery_kernel.FEATURES``. Lane features of the training rows are computed
*forward*: the training rows are cut into ``folds`` contiguous time blocks and block f is
encoded by a model of blocks 0..f-1 only (block 0 trains no regression row). So the regression
learns how much a lane statistic from the past is worth for later deliveries -- as in
production. (Encoding a block with the *other* blocks, past and future, was tried first: under
drift it anti-correlates a block's features with its own outcomes and learnt negative weights
for the lane late rate on the Olist orders.)

Regions ``*`` (the data did not record this end of the lane) and ``?`` (never seen in training:
always falls back to a parent) are ordinary entries of the region vocabulary. Services
``?standard``/``?express`` stand for any service of that level the model has not seen.

The model is data (``to_dict``/``from_dict``, JSON), versioned by a hash of its content; the
arrays the kernel reads come from ``arrays()`` (the model's own vocabulary) or
``operators.delivery_align.kernel_arrays`` (a network's regions and services).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import orjson

from operators.delivery_dist import (
    MEDIAN_INDEX,
    PROBS,
)
from operators.delivery_kernel import (
    FEATURE_SIGNS,
    FEATURES,
    N_MODEL_FEATURES,
    P_CLIP,
    design_matrix,  # fmt: skip
)
from operators.delivery_logit import fit_logit, predict_logit
from operators.delivery_nodes import LEVELS, SOURCES, dense_from_nodes, nodes_json, posteriors

__all__ = ["FORMAT", "LEVELS", "SOURCES", "DeliveryModel", "Hyper", "ModelArrays", "ModelError",
           "Outcomes", "encode", "fit", "late_logit_of"]  # fmt: skip

FORMAT = "fulfil.delivery-model/1"
UNKNOWN = "*"  # the data does not record this end of the lane
UNSEEN = "?"  # a region the model never saw: every lane through it uses a parent


class ModelError(ValueError):
    """A model cannot be fitted or loaded; the message says which part and why."""


@dataclass(frozen=True)
class Outcomes:
    """Historical deliveries as columns, one row each (NaN / -1 = not recorded)."""

    time_ms: np.ndarray  # f8; the row's position when the data has no time
    origin: np.ndarray  # str (object) region codes, UNKNOWN when not recorded
    dest: np.ndarray
    service: np.ndarray  # str
    level: np.ndarray  # str, one of LEVELS
    promise_days: np.ndarray  # f8: promise - start of transit
    actual_days: np.ndarray  # f8: delivered - start of transit
    late: np.ndarray  # i8: 1 late, 0 on time, -1 unknown
    weight_kg: np.ndarray
    distance_km: np.ndarray
    dow: np.ndarray  # 0 = Monday
    hour: np.ndarray  # local hour, fractional
    delay_hours: np.ndarray
    load: np.ndarray
    line: np.ndarray  # i8: source line (for messages)

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])

    def take(self, idx: np.ndarray) -> Outcomes:
        return Outcomes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass(frozen=True)
class Hyper:
    """Hyper-parameters; recorded in the artifact (and so part of its version)."""

    prior_strength: float = 20.0  # pseudo-observations a node borrows from its parent
    rate_strength: float = 20.0  # the same for late rates
    l2: float = 1.0  # ridge penalty of the logistic regression (standardised scale)
    folds: int = 5  # time blocks for forward-encoded lane features (1 = in-sample)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ModelArrays(NamedTuple):
    """Dense arrays for ``operators.delivery_kernel`` over one (regions, services) vocabulary."""

    quantile_days: np.ndarray  # f8[R, R, S, Q]; NaN = no distribution (lane not covered)
    mean_days: np.ndarray  # f8[R, R, S]
    late_logit: np.ndarray  # f8[R, R, S]; smoothed lane+service late rate, as a logit
    n_obs: np.ndarray  # i8[R, R, S]: transit observations of the node that answered
    source: np.ndarray  # i1[R, R, S]: index into SOURCES
    service_express: np.ndarray  # f8[S]: 1.0 for express
    coef: np.ndarray  # f8[N_MODEL_FEATURES]
    probs: np.ndarray  # f8[Q]
    median_index: int
    regions: tuple[str, ...]
    services: tuple[str, ...]
    transit_from: str  # "handover" | "order": where promise_days is counted from
    version: str


def late_logit_of(rate: np.ndarray) -> np.ndarray:
    """logit of late rates, clipped like the kernel's features (NaN stays NaN)."""
    p = np.clip(np.asarray(rate, dtype=np.float64), P_CLIP, 1.0 - P_CLIP)
    return np.log(p / (1.0 - p))


# ---------------------------------------------------------------- vocabulary and encoding


def _vocab(out: Outcomes) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    regions = (*sorted(set(out.origin.tolist()) | set(out.dest.tolist())), UNSEEN)
    level_of: dict[str, str] = {}
    for svc, lvl in zip(out.service.tolist(), out.level.tolist(), strict=True):
        if level_of.setdefault(svc, lvl) != lvl:
            raise ModelError(f"service {svc!r} has two levels ({level_of[svc]!r}, {lvl!r})")
    real = sorted(level_of)
    services = (*real, *(f"?{lv}" for lv in LEVELS))
    levels = (*(LEVELS.index(level_of[s]) for s in real), *range(len(LEVELS)))
    return regions, services, levels


def encode(
    regions: tuple[str, ...], services: tuple[str, ...], out: Outcomes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region/service indices of each row; unseen regions -> ``?``, unseen services -> ``?lvl``."""
    r_idx = {r: i for i, r in enumerate(regions)}
    s_idx = {s: i for i, s in enumerate(services)}
    unseen = r_idx[UNSEEN]
    o = np.array([r_idx.get(r, unseen) for r in out.origin.tolist()], dtype=np.int64)
    d = np.array([r_idx.get(r, unseen) for r in out.dest.tolist()], dtype=np.int64)
    s = np.array(
        [s_idx.get(sv, s_idx[f"?{lv}"]) for sv, lv in zip(out.service.tolist(),
                                                          out.level.tolist(), strict=True)],
        dtype=np.int64,
    )  # fmt: skip
    return o, d, s


# ---------------------------------------------------------------- fitting


def _features(dense: dict[str, Any], svc_level: tuple[int, ...], out: Outcomes,
              enc: tuple[np.ndarray, ...]) -> np.ndarray:  # fmt: skip
    """Feature matrix of ``out`` read through one set of dense arrays (the kernel's code)."""
    o, d, s = enc
    X = np.zeros((len(out), N_MODEL_FEATURES))
    express = (np.asarray(svc_level) == LEVELS.index("express")).astype(np.float64)
    design_matrix(X, dense["quantile_days"], late_logit_of(dense["rate"]), express, PROBS,
                  MEDIAN_INDEX, o, d, s, out.promise_days, out.delay_hours, out.distance_km,
                  out.weight_kg, out.dow, out.hour, out.load)  # fmt: skip
    return X


def fit(out: Outcomes, hyper: Hyper = Hyper(), meta: dict[str, Any] | None = None) -> DeliveryModel:
    """Fit the model on ``out`` (rows in time order); ``meta`` is recorded as given."""
    if len(out) == 0:
        raise ModelError("no rows to learn from")
    if not (out.late >= 0).any():
        raise ModelError("no row has a known outcome (late / on time): check the mapping")
    regions, services, svc_level = _vocab(out)
    enc = encode(regions, services, out)
    nodes = nodes_json(posteriors(out, enc, regions, services, svc_level, hyper),
                       regions, services)  # fmt: skip
    labelled = np.flatnonzero(out.late >= 0)
    X = np.zeros((labelled.size, N_MODEL_FEATURES))
    blocks = np.array_split(np.arange(len(out)), max(1, hyper.folds))
    keep = np.zeros(labelled.size, dtype=bool)
    for f, block in enumerate(blocks):
        past = block if hyper.folds <= 1 else np.arange(block[0]) if block.size else block
        rows = np.intersect1d(block, labelled)
        if past.size == 0 or rows.size == 0:
            continue
        fold_nodes = nodes_json(
            posteriors(out.take(past), tuple(e[past] for e in enc), regions, services,
                       svc_level, hyper), regions, services)  # fmt: skip
        dense = dense_from_nodes(fold_nodes, regions, services, svc_level)
        at = np.searchsorted(labelled, rows)
        X[at] = _features(dense, svc_level, out.take(rows), tuple(e[rows] for e in enc))
        keep[at] = f > 0 or hyper.folds <= 1
    if not keep.any():
        raise ModelError(f"too few labelled rows for {hyper.folds} time blocks")
    lf = fit_logit(X[keep], out.late[labelled][keep], l2=hyper.l2, signs=FEATURE_SIGNS)
    varied = X[keep].std(axis=0) > 1e-12
    doc = {
        "format": FORMAT,
        **(meta or {}),
        "hyper": {**hyper.to_dict(), "probs": PROBS.tolist(),
                  "grid_days": "centres 0..14 step 0.125, 14..30 step 0.5, 30..120 step 2"},
        "features": list(FEATURES),
        "coef": [round(float(c), 9) for c in lf.coef],
        "unused_features": [f for f, v in zip(FEATURES[1:], varied[1:], strict=True) if not v],
        "sign_constrained_to_zero": [f for f, u, v in zip(FEATURES, lf.used, varied, strict=True)
                                     if v and not u and f != "bias"],
        "fit": {"rows": int(keep.sum()), "iterations": lf.iterations,
                "converged": lf.converged, "train_log_loss": round(lf.log_loss, 6),
                # False: the data taught nothing about slack (the router then has to rely on
                # the quantiles alone to tell a tight candidate from a safe one)
                "slack_sensitive": bool(lf.coef[FEATURES.index("cdf_miss_logit")] > 0
                                        or lf.coef[FEATURES.index("slack_days")] < 0)},
        "vocab": {"regions": list(regions), "services": list(services),
                  "service_levels": [LEVELS[i] for i in svc_level]},
        "nodes": nodes,
    }  # fmt: skip
    doc.setdefault("transit_from", "order")
    return DeliveryModel.from_dict({**doc, "version": content_version(doc)})


def content_version(doc: dict[str, Any]) -> str:
    """``dm-`` + 16 hex digits of the SHA-256 of the artifact without its version/timestamps."""
    body = {k: v for k, v in doc.items() if k not in ("version", "trained_at")}
    return "dm-" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class DeliveryModel:
    """A fitted model: the artifact document plus its dense arrays (built once, read-only)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.version: str = doc["version"]
        vocab = doc["vocab"]
        self.regions = tuple(vocab["regions"])
        self.services = tuple(vocab["services"])
        self.service_levels = tuple(LEVELS.index(lv) for lv in vocab["service_levels"])
        self.coef = np.asarray(doc["coef"], dtype=np.float64)
        self.transit_from: str = doc["transit_from"]
        self._arrays: ModelArrays | None = None

    def __repr__(self) -> str:
        return f"DeliveryModel({self.version!r}, regions={len(self.regions)}, " \
               f"services={len(self.services)})"  # fmt: skip

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeliveryModel:
        """Check the document's format and that its content still matches its version."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ModelError(f"not a delivery model (format must be {FORMAT!r})")
        for key in ("version", "vocab", "coef", "nodes", "features", "transit_from"):
            if key not in doc:
                raise ModelError(f"model document: missing {key!r}")
        if list(doc["features"]) != list(FEATURES):
            raise ModelError(f"model features {doc['features']} differ from this code's "
                             f"{list(FEATURES)}: retrain the model")  # fmt: skip
        if content_version(doc) != doc["version"]:
            raise ModelError(f"model content does not match its version {doc['version']!r} "
                             "(edited or corrupted?)")  # fmt: skip
        return cls(doc)

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def to_json(self) -> bytes:
        return orjson.dumps(self.doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> DeliveryModel:
        try:
            return cls.from_dict(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"model file is not valid JSON: {exc}") from None

    def arrays(self) -> ModelArrays:
        """Dense kernel arrays over the model's own regions and services (cached)."""
        if self._arrays is None:
            dense = dense_from_nodes(self.doc["nodes"], self.regions, self.services,
                                     self.service_levels)  # fmt: skip
            self._arrays = make_arrays(dense, self.service_levels, self.coef, self.regions,
                                       self.services, self.transit_from, self.version)  # fmt: skip
        return self._arrays

    def predict(self, out: Outcomes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row of ``out``: (miss probability, lane late-rate baseline, the transit
        distribution's own P(transit > budget) -- NaN without a promise or a distribution)."""
        a = self.arrays()
        enc = encode(self.regions, self.services, out)
        dense = {"quantile_days": a.quantile_days, "rate": 1.0 / (1.0 + np.exp(-a.late_logit))}
        X = _features(dense, self.service_levels, out, enc)
        has = np.isfinite(out.promise_days) & np.isfinite(a.quantile_days[enc][:, 0])
        dist = np.where(has, predict_logit(np.ones(1), X[:, 1:2]), np.nan)
        return predict_logit(self.coef, X), dense["rate"][enc], dist


def make_arrays(dense: dict[str, np.ndarray], svc_level: tuple[int, ...], coef: np.ndarray,
                regions: tuple[str, ...], services: tuple[str, ...], transit_from: str,
                version: str) -> ModelArrays:  # fmt: skip
    """Freeze dense node tables into the kernel's ``ModelArrays``."""
    express = (np.asarray(svc_level) == LEVELS.index("express")).astype(np.float64)
    arrays = ModelArrays(
        quantile_days=np.ascontiguousarray(dense["quantile_days"]),
        mean_days=np.ascontiguousarray(dense["mean"]),
        late_logit=late_logit_of(dense["rate"]),
        n_obs=np.nan_to_num(dense["n"]).astype(np.int64),
        source=np.nan_to_num(dense["src"]).astype(np.int8),
        service_express=express, coef=np.ascontiguousarray(coef, dtype=np.float64),
        probs=PROBS.copy(), median_index=MEDIAN_INDEX, regions=regions, services=services,
        transit_from=transit_from, version=version,
    )  # fmt: skip
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return arrays
