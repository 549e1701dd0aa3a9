"""The IRLS logistic regression recovers known coefficients and honours sign constraints."""

from __future__ import annotations

import numpy as np

from operators.delivery_logit import fit_logit, predict_logit


def _data(n: int, coef: np.ndarray, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(0, 1, n), rng.normal(2, 3, n),
                         (rng.random(n) < 0.3).astype(float)])  # fmt: skip
    y = (rng.random(n) < predict_logit(coef, X)).astype(float)
    return X, y


def test_recovers_known_coefficients() -> None:
    true = np.array([-1.0, 1.5, -0.4, 0.8])
    X, y = _data(60_000, true)
    fit = fit_logit(X, y, l2=1e-6)
    assert fit.converged and fit.iterations < 15
    np.testing.assert_allclose(fit.coef, true, atol=0.06)


def test_constant_column_is_unused_and_gets_zero() -> None:
    true = np.array([0.3, 1.0, 0.0, 0.0])
    X, y = _data(2000, true)
    X[:, 3] = 1.0  # never varies
    fit = fit_logit(X, y)
    assert not fit.used[3] and fit.coef[3] == 0.0 and fit.used[0]


def test_sign_constraint_fixes_a_wrong_sign_at_zero_and_refits() -> None:
    true = np.array([0.0, -1.0, 0.2, 0.0])
    X, y = _data(20_000, true)
    free = fit_logit(X, y)
    assert free.coef[1] < -0.8
    fit = fit_logit(X, y, signs=np.array([0, 1, 0, 0]))  # column 1 must be >= 0
    assert fit.coef[1] == 0.0 and not fit.used[1]
    assert abs(fit.coef[2] - 0.2) < 0.05  # the others are refitted, not just copied
    assert fit.log_loss > free.log_loss


def test_ridge_shrinks_toward_zero() -> None:
    X, y = _data(300, np.array([0.0, 2.0, 0.0, 0.0]))
    assert abs(fit_logit(X, y, l2=1000.0).coef[1]) < abs(fit_logit(X, y, l2=0.01).coef[1])
