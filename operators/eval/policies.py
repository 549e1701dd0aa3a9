"""Routing policies compared by the evaluation, all on the production planner's candidates.

Why they share everything but the choice: a comparison is only honest when every policy sees the
same candidate nodes and services (``operators.candidates.build_candidates`` with the configured
``max_nodes``/``max_splits``), the same cost model (the kernel's COST feature: handling + carrier
base + per kg + per 100 km), the same stock and capacity (``operators.allocation.allocate`` on the
same ATP), and the same lane health. Policies differ only in the score that ranks candidates:

- ``fulfil``: the real ``Planner.plan`` with the configured weights (nothing re-implemented).
- ``nearest``: the legacy rule, nearest node with stock: the smallest distance, then the cheapest
  service (a legacy system books the cheapest carrier product on the lane).
- ``nearest-sla``: the legacy rule with rate shopping: nearest node with stock, then the service
  that the planner expects to be least late (on time when any is), then the cheapest.
- ``fewest-splits``: the common commercial default: fewest shipments, then nearest, then cheapest.
- ``fulfil-learned``: the real ``Planner.plan`` on the network as perfectly learned delivery
  outcomes would describe it (``Truth.learned_network``: every lane's true transit): the
  ceiling of learning lanes from delivered orders (issue 3's online learning).
- ``fulfil+co2e``: a what-if: the real ``Planner.plan`` with the configured weights but the
  kernel's CO2E_KG weight set to a carbon price (``weights.co2e_kg`` = minus the BRL per kg
  CO2e); ``fulfil+co2e@W`` names the policy at W BRL/kg (a sweep has one per price).
- ``fulfil-priced``: a bound, not a policy: the real planner's weights with each candidate's score
  lowered by the hindsight shadow price of the stock it takes (``operators.eval.prices``): the
  ceiling of a reservation-aware score term on tight stock.

The baselines rank lexicographically (exact ranks, not weights with large ratios), so "nearest
first" can never be overturned by a cost difference. ``plan_with_scores`` is ``Planner.plan``
with the score passed in (same candidates, same delivery-risk pass, same allocation);
``tests/test_eval`` checks that it reproduces ``Planner.plan`` exactly when given the planner's
own weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from operators.allocation import allocate
from operators.candidates import (
    BatchInput,
    CandidateSet,
    LaneArrays,
    build_candidates,
)
from operators.network import Network
from operators.planner import EXHAUSTED, Plan, Planner, Prepared, Shipment, Unroutable, why_none
from operators.scoring import Feature, Weights, score_batch

__all__ = [
    "CO2E_POLICY",
    "POLICY_NAMES",
    "PRICED_POLICY",
    "Policy",
    "Scorer",
    "candidate_co2e_kg",
    "candidate_risk",
    "co2e_policy",
    "fill_risk",
    "lexicographic",
    "line_price",
    "linear",
    "make_policy",
    "plan_with_scores",
    "policy_label",
    "shipments_of",
    "with_co2e_weight",
]

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000

try:  # the planner's delivery-risk pass (MISS_PROB feature), where the planner has one
    from operators.risk import fill_miss_probability as _fill_risk
except ImportError:  # pragma: no cover - a planner without a delivery-risk model
    _fill_risk = None
_MISS = getattr(Feature, "MISS_PROB", None)

#: A scorer maps a batch's candidates to one score per candidate (higher is better).
Scorer = Callable[[CandidateSet, BatchInput], np.ndarray]

POLICY_NAMES: dict[str, str] = {
    "fulfil": "fulfil (as configured)",
    "nearest": "nearest node with stock",
    "nearest-sla": "nearest, service meeting the promise",
    "fewest-splits": "fewest splits, then nearest",
    "fulfil+co2e": "fulfil + CO2e weight (what-if)",
    "fulfil-learned": "fulfil, lanes learned perfectly (ceiling)",
    "fulfil-priced": "fulfil, hindsight stock prices (ceiling)",
}
PRICED_POLICY = "fulfil-priced"
CO2E_POLICY = "fulfil+co2e"


def co2e_policy(brl_per_kg: float) -> str:
    """The name of the CO2e what-if at one carbon price: ``fulfil+co2e@2`` for 2 BRL/kg."""
    return f"{CO2E_POLICY}@{brl_per_kg:g}"


def _co2e_price(name: str) -> float | None:
    """The BRL/kg of a ``fulfil+co2e@W`` name, None for any other name."""
    head, at, price = name.partition("@")
    if head != CO2E_POLICY or not at:
        return None
    try:
        value = float(price)
    except ValueError:
        raise ValueError(f"policy {name!r}: the CO2e price after '@' must be a number") from None
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"policy {name!r}: the CO2e price must be a finite number >= 0")
    return value


def policy_label(name: str) -> str:
    """How a policy is named in the table."""
    price = _co2e_price(name)
    if price is not None:
        return f"fulfil + CO2e at {price:g} BRL/kg"
    return POLICY_NAMES.get(name, name)


@dataclass(frozen=True)
class Policy:
    """A named way of choosing among the planner's candidates.

    ``scorer`` None means the production ``Planner.plan`` itself. ``unit_prices`` (BRL per unit
    by (node index, sku), ``operators.eval.prices``) lowers each candidate's weighted score by
    the price of the units it takes.
    """

    name: str
    planner: Planner
    scorer: Scorer | None = None
    unit_prices: Mapping[tuple[int, str], float] | None = None

    def plan(self, prep: Prepared, atp: np.ndarray, load: np.ndarray, lanes: LaneArrays,
             now_ms: int) -> list[Plan | Unroutable]:
        if self.unit_prices is not None:
            w, prices, skus = self.planner.weights, self.unit_prices, prep.skus

            def priced(cands: CandidateSet, batch: BatchInput) -> np.ndarray:
                scores = score_batch(cands.X, cands.offsets, cands.mask, w)[0]
                return scores - line_price(prices, skus, cands, batch)

            return plan_with_scores(self.planner, prep, atp, load, lanes, now_ms, priced)
        if self.scorer is None:
            return self.planner.plan(prep, atp, load, lanes, now_ms)
        return plan_with_scores(self.planner, prep, atp, load, lanes, now_ms, self.scorer)


# ------------------------------------------------------------------------------------ scorers


def linear(weights: Weights) -> Scorer:
    """The kernel's weighted sum (``score_batch``): the production score as a Scorer."""
    w = weights.as_array()

    def score(cands: CandidateSet, batch: BatchInput) -> np.ndarray:
        return score_batch(cands.X, cands.offsets, cands.mask, w)[0]

    return score


def lexicographic(*features: Feature) -> Scorer:
    """Smaller is better on ``features[0]``, ties broken by ``features[1]``, ...; exact.

    Scores are minus the candidate's global rank, so within an order the lexicographically
    smallest candidate scores highest; equal keys rank by index (the kernel's tie rule).
    """

    def score(cands: CandidateSet, batch: BatchInput) -> np.ndarray:
        m = len(cands)
        if m == 0:
            return np.zeros(0)
        keys = [cands.X[:, f] for f in reversed(features)]
        order = np.lexsort([np.arange(m), *keys])
        rank = np.empty(m, dtype=np.float64)
        rank[order] = np.arange(m, dtype=np.float64)
        return -rank

    return score


def line_price(prices: Mapping[tuple[int, str], float], skus: list[str], cands: CandidateSet,
               batch: BatchInput) -> np.ndarray:
    """Per candidate, the summed price of the units it takes (``skus``: the batch's columns)."""
    out = np.zeros(len(cands))
    col = [{k: p for (k, s), p in prices.items() if s == sku} for sku in skus]
    if not any(col):
        return out
    line_sku, line_qty = batch.line_sku.tolist(), batch.line_qty.tolist()
    for i in range(batch.n_orders):
        l0 = int(batch.line_offsets[i])
        for m in range(int(cands.offsets[i]), int(cands.offsets[i + 1])):
            for j, node in enumerate(cands.assignment(m).tolist()):
                p = col[line_sku[l0 + j]].get(node)
                if p:
                    out[m] += line_qty[l0 + j] * p
    return out


def candidate_co2e_kg(cands: CandidateSet, batch: BatchInput, network: Network) -> np.ndarray:
    """kg CO2e of every candidate: the kernel's CO2E_KG column (sum over its shipments of km x
    t x the service's g/tkm / 1000, ``operators.emissions``). ``batch`` and ``network`` are
    kept for the callers of the time this was computed here."""
    del batch, network
    return np.array(cands.X[:, Feature.CO2E_KG], dtype=np.float64)


def with_co2e_weight(config: Any, brl_per_kg: float) -> Any:
    """``config`` with the kernel's CO2e weight set to a carbon price of ``brl_per_kg``."""
    weights = {**dict(config.weights), "co2e_kg": -float(brl_per_kg)}
    Weights.from_mapping(weights)  # refuse a bad price here, not deep in the planner
    return replace(config, weights=weights)


def make_policy(name: str, network: Network, config: Any, co2e_brl_per_kg: float = 0.0,
                learned: Network | None = None,
                unit_prices: Mapping[tuple[int, str], float] | None = None) -> Policy:
    """One of ``POLICY_NAMES`` (or ``fulfil+co2e@W``) on a fresh planner for ``config``.

    ``co2e_brl_per_kg`` is the price of a bare ``fulfil+co2e``; ``learned`` the network
    ``fulfil-learned`` plans on (``Truth.learned_network()``, which the evaluation passes;
    without it, ``network`` itself, as when the truth has no lane bias); ``unit_prices`` those
    ``fulfil-priced`` charges (``operators.eval.prices.stock_prices``; without them, none).
    """
    if name == "fulfil-learned":
        return Policy(name, Planner(learned if learned is not None else network, config))
    price = _co2e_price(name)
    if price is not None or name == CO2E_POLICY:
        cfg = with_co2e_weight(config, co2e_brl_per_kg if price is None else price)
        return Policy(name, Planner(network, cfg))  # the kernel's own weight: nothing added
    planner = Planner(network, config)
    if name == "fulfil":
        return Policy(name, planner)
    if name == PRICED_POLICY:
        return Policy(name, planner, unit_prices=dict(unit_prices or {}))
    if name == "nearest":
        return Policy(name, planner, lexicographic(Feature.DISTANCE_KM, Feature.COST))
    if name == "nearest-sla":
        return Policy(name, planner, lexicographic(Feature.DISTANCE_KM, Feature.LATE_HOURS,
                                                   Feature.COST))
    if name == "fewest-splits":
        return Policy(name, planner,
                      lexicographic(Feature.SPLITS, Feature.DISTANCE_KM, Feature.COST))
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")


# ------------------------------------------------------------------------ planning with scores


def plan_with_scores(planner: Planner, prep: Prepared, atp: np.ndarray, load: np.ndarray,
                     lanes: LaneArrays, now_ms: int, scorer: Scorer) -> list[Plan | Unroutable]:
    """``Planner.plan`` with the candidates ranked by ``scorer`` instead of the weights.

    Same candidates, same batch allocation against remaining stock and capacity, same
    unroutable reasons; the plans carry no runner-up (nothing here explains choices).
    """
    if prep.batch.n_orders == 0:
        return [Unroutable("unknown-destination") for _ in prep.orders]
    full = prep.batch.with_stock(atp, load)
    cands = build_candidates(full, planner.arrays, lanes, now_ms, planner.params, prep.rules)
    fill_risk(planner, full, cands, now_ms)  # as Planner.plan does
    scores = np.ascontiguousarray(scorer(cands, full), dtype=np.float64)
    chosen = allocate(full, cands, scores, planner.arrays.node_capacity,
                      planner.params.enforce_capacity).tolist()
    ok = np.concatenate(([0], np.cumsum(cands.mask & ~np.isnan(scores)))).tolist()
    out: list[Plan | Unroutable] = []
    for order, row in zip(prep.orders, prep.index, strict=True):
        if row < 0:
            out.append(Unroutable("unknown-destination"))
            continue
        lo, hi = int(cands.offsets[row]), int(cands.offsets[row + 1])
        if ok[hi] == ok[lo]:  # no feasible candidate (the kernel's best == -1)
            out.append(Unroutable(why_none(full, cands, row)))
            continue
        c = chosen[row]
        if c < 0:
            out.append(Unroutable(EXHAUSTED))
            continue
        shipments = shipments_of(planner, full, cands, row, c, lanes, now_ms)
        est = int(cands.est_ms[c])
        reasons = ("single-node" if len(shipments) == 1 else "split",
                   "on-time" if est <= order.promised_by else "late-vs-promise")
        out.append(_plan(shipments, est, float(scores[c]), reasons, cands, c))
    return out


def fill_risk(planner: Planner, batch: BatchInput, cands: CandidateSet, now_ms: int) -> None:
    """Write the planner's delivery-risk feature (MISS_PROB) into ``cands``, when it has one."""
    if _fill_risk is not None and getattr(planner, "model", None) is not None:
        _fill_risk(batch, cands, planner.arrays, planner.model, now_ms)


def candidate_risk(cands: CandidateSet) -> np.ndarray:
    """Each candidate's probability of missing the promise (zeros without the feature)."""
    return np.zeros(len(cands)) if _MISS is None else cands.X[:, _MISS]


def _plan(shipments: list[Shipment], est: int, score: float, reasons: tuple[str, ...],
          cands: CandidateSet, m: int) -> Plan:
    """A Plan, with the delivery-risk the planner reports when it has that feature."""
    risk = {} if _MISS is None else {"risk": float(cands.X[m, _MISS])}
    return Plan(tuple(shipments), est, score, float(sum(s.cost for s in shipments)), None,
                reasons, **risk)


def shipments_of(planner: Planner, batch: BatchInput, cands: CandidateSet, row: int, m: int,
                 lanes: LaneArrays, now_ms: int) -> list[Shipment]:
    """One shipment per node of candidate ``m``: the planner's own unpacking."""
    return planner.shipments(batch, cands, row, m, lanes, now_ms)
