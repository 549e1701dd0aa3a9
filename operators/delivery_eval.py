"""Score a delivery model on held-out outcomes, next to the baselines it has to beat.

Baselines (why these): the *lane rate* is what a planner without a model would use -- the
historical late rate of the lane and service (smoothed exactly like the model's own lane
feature, from the same training rows); the *constant* is the training set's overall late rate
(AUC 0.5 by construction, its Brier score is the hold-out's variance plus the drift).
The *distribution only* row is the quantile half of the model on its own: P(transit > budget)
read from the lane's quantiles, before the logistic regression (shown when every row has a
promise; not calibrated, so its Brier score is not the point -- its ranking is).
Quantiles are checked by coverage (a calibrated p90 covers ~90% of deliveries) and pinball
loss, against the global transit distribution (one distribution for every lane).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from operators.delivery_metrics import (
    auc,
    brier,
    calibration_table,
    expected_calibration_error,
    log_loss,
    pinball_loss,
    quantile_coverage,
)
from operators.delivery_model import SOURCES, DeliveryModel, Outcomes, encode

__all__ = ["COVERAGE_PROBS", "evaluate"]

COVERAGE_PROBS = (0.1, 0.5, 0.9)


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    table = calibration_table(y, p)
    return {
        "auc": auc(y, p), "brier": brier(y, p), "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(table), "calibration": table,
    }  # fmt: skip


def evaluate(model: DeliveryModel, out: Outcomes) -> dict[str, Any]:
    """Figures of ``model`` on ``out`` (normally the time-ordered hold-out)."""
    labelled = out.late >= 0
    y = out.late[labelled].astype(np.float64)
    report: dict[str, Any] = {"rows": len(out), "labelled": int(labelled.sum())}
    if not labelled.any():
        raise ValueError("no hold-out row has a known outcome")
    p, lane_rate, dist = model.predict(out)
    g_rate = model.doc["nodes"]["global"]["rate"]
    report["late_rate"] = float(y.mean())
    report["train_late_rate"] = g_rate
    report["model"] = _scores(y, p[labelled])
    report["baseline_lane_rate"] = _scores(y, np.nan_to_num(lane_rate[labelled], nan=g_rate))
    report["baseline_constant"] = _scores(y, np.full(y.shape, g_rate))
    if np.isfinite(dist[labelled]).all():
        report["distribution_only"] = _scores(y, dist[labelled])

    a = model.arrays()
    o, d, s = encode(model.regions, model.services, out)
    src = a.source[o, d, s]
    report["answered_by"] = {name: int(np.sum(src == i)) for i, name in enumerate(SOURCES)
                             if np.any(src == i)}  # fmt: skip
    has_t = np.isfinite(out.actual_days) & np.isfinite(a.quantile_days[o, d, s, 0])
    if has_t.any():
        probs = a.probs
        pick = [int(np.argmin(np.abs(probs - c))) for c in COVERAGE_PROBS]
        q_lane = a.quantile_days[o[has_t], d[has_t], s[has_t]]
        g_q = np.asarray(model.doc["nodes"]["global"]["q"], dtype=np.float64)
        q_glob = np.broadcast_to(g_q, q_lane.shape)
        actual = out.actual_days[has_t]
        report["quantiles"] = {
            "rows": int(has_t.sum()),
            "levels": list(COVERAGE_PROBS),
            "coverage_model": quantile_coverage(actual, q_lane[:, pick]).tolist(),
            "coverage_global": quantile_coverage(actual, q_glob[:, pick]).tolist(),
            "pinball_model": pinball_loss(actual, q_lane, probs),
            "pinball_global": pinball_loss(actual, q_glob, probs),
        }  # fmt: skip
    return report
