"""L2-regularised logistic regression by Newton's method (IRLS), in numpy.

Why not scikit-learn: the model has ~19 features and a few thousand to a few million rows; one
Newton solve of an 18x18 system per iteration converges in < 10 iterations, which is fewer lines
than wiring a new dependency, and the coefficients must end up on the *raw* feature scale anyway
(the routing kernel does not standardise).

The penalty is on the *raw* coefficients (columns are only centred, for conditioning): the
features are built on comparable scales (logits, days, 0/1 classes), and a rare 0/1 class -- a
weight class seen on 50 of 3,000 rows -- must not get a cheap, huge coefficient, which it would
on a standardised scale. Column 0 is the intercept: never penalised. A column that never varies
in the training data gets coefficient 0 and is reported as unused; so does one whose sign is
constrained (see ``fit_logit``) and comes out wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LogitFit", "fit_logit", "predict_logit"]


@dataclass(frozen=True, slots=True)
class LogitFit:
    """Coefficients on the raw feature scale, and how the fit went."""

    coef: np.ndarray  # f8[F]; coef[0] is the intercept
    used: np.ndarray  # bool[F]: False = never varied, or wrong sign: coefficient fixed at 0
    iterations: int
    converged: bool
    log_loss: float  # mean, on the training rows


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def predict_logit(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    """P(y = 1) for each row of ``X`` (same columns as the fit)."""
    z = np.asarray(X, dtype=np.float64) @ coef
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), overflow-free


def fit_logit(
    X: np.ndarray, y: np.ndarray, l2: float = 1.0, signs: np.ndarray | None = None,
    max_iter: int = 100, tol: float = 1e-9,
) -> LogitFit:
    """Minimise ``sum(log loss) + l2/2 * |w|^2`` (raw slopes; the intercept is free).

    ``signs[j]`` = +1 / -1 constrains coefficient j to be >= 0 / <= 0 (0 = free). Why: the
    router compares candidates by miss probability, so it must never fall as the slack
    shrinks, whatever a drifting sample says. Enforced by an active set: a coefficient that
    comes out with the wrong sign is fixed at 0 and the rest refitted.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"fit_logit: need X[n, F] and y[n] with n > 0; got {X.shape}, {y.shape}")
    signs = np.zeros(X.shape[1]) if signs is None else np.asarray(signs, dtype=np.float64)
    used = X.std(axis=0) > 1e-12
    used[0] = True
    while True:
        fit = _fit(X, y, used, l2, max_iter, tol)
        wrong = np.flatnonzero(signs * fit.coef < -1e-12)
        if wrong.size == 0:
            return fit
        worst = wrong[np.argmax(np.abs(fit.coef[wrong]))]
        used[worst] = False


def _fit(X: np.ndarray, y: np.ndarray, used: np.ndarray, l2: float, max_iter: int,
         tol: float) -> LogitFit:  # fmt: skip
    n_feat = X.shape[1]
    mean = X.mean(axis=0)
    cols = np.flatnonzero(used[1:]) + 1
    Z = np.empty((X.shape[0], cols.size + 1))
    Z[:, 0] = 1.0
    Z[:, 1:] = X[:, cols] - mean[cols]
    penalty = np.full(Z.shape[1], l2)
    penalty[0] = 0.0
    w = np.zeros(Z.shape[1])
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w[0] = np.log(rate / (1.0 - rate))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        p = predict_logit(w, Z)
        grad = Z.T @ (p - y) + penalty * w
        hess = (Z.T * (p * (1.0 - p))) @ Z + np.diag(penalty) + 1e-10 * np.eye(Z.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    coef = np.zeros(n_feat)
    coef[cols] = w[1:]
    coef[0] = w[0] - float(np.sum(w[1:] * mean[cols]))
    return LogitFit(coef, used.copy(), it, converged, _log_loss(predict_logit(coef, X), y))
