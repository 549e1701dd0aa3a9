"""Synthetic outcomes with known lane distributions (for tests that need ground truth)."""

from __future__ import annotations

import numpy as np

from operators.delivery_model import Outcomes

# lane -> (service, lognormal median days, sigma)
LANES = {
    ("SP", "RJ"): ("fast", 2.0, 0.25),
    ("SP", "BA"): ("slow", 6.0, 0.35),
    ("MG", "RJ"): ("slow", 4.0, 0.30),
}
LEVEL = {"fast": "express", "slow": "standard"}


def synthetic(n: int = 30_000, seed: int = 1, rare: int = 0) -> Outcomes:
    """Deliveries on LANES (lognormal transit), plus ``rare`` on lane MG->BA (10 days)."""
    rng = np.random.default_rng(seed)
    keys = list(LANES)
    pick = rng.integers(0, len(keys), n)
    origin = [keys[i][0] for i in pick] + ["MG"] * rare
    dest = [keys[i][1] for i in pick] + ["BA"] * rare
    service = [LANES[keys[i]][0] for i in pick] + ["slow"] * rare
    med = np.array([LANES[keys[i]][1] for i in pick] + [10.0] * rare)
    sig = np.array([LANES[keys[i]][2] for i in pick] + [0.05] * rare)
    actual = med * np.exp(sig * rng.normal(0, 1, n + rare))
    promise = np.round(med * rng.uniform(0.9, 1.8, n + rare))
    m = n + rare
    nan = np.full(m, np.nan)
    return Outcomes(
        time_ms=np.arange(m, dtype=float) * 60_000.0,
        origin=np.array(origin, dtype=object), dest=np.array(dest, dtype=object),
        service=np.array(service, dtype=object),
        level=np.array([LEVEL[s] for s in service], dtype=object),
        promise_days=promise, actual_days=actual, late=(actual > promise).astype(np.int64),
        weight_kg=rng.uniform(0.1, 30, m), distance_km=nan.copy(),
        dow=rng.integers(0, 7, m).astype(float), hour=rng.uniform(0, 24, m),
        delay_hours=nan.copy(), load=nan.copy(), line=np.arange(m) + 2,
    )  # fmt: skip
