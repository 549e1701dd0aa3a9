"""Online updates of lane transit distributions: a pure step for a bytewax ``stateful_map``
keyed by lane + service, fed by delivered shipments.

Why a decayed histogram: a lane's transit time drifts (a carrier loses a hub, a road closes),
and the router must see the new distribution within seconds, without a restart or a retrain.
The state per key is the offline model's distribution for the lane (worth ``prior_weight``
pseudo-deliveries at first) plus the recent deliveries on the same day grid as the offline fit
(``operators.delivery_dist``), each weighted ``0.5 ** (age / half_life)``. The prior ages like
a delivery but never below ``prior_floor``: a busy lane ends up described by its own recent
deliveries (so it converges to a new distribution, tails included), a quiet one keeps a shape.
The state has a fixed
size (two f8[N_BINS] arrays, a few scalars and at most ``dedup`` recent event ids), and the
deliveries' total weight is capped at ``max_weight``, so one lane can always move within a few
half-lives however busy it is. Weights depend only on event time, so the result does not depend
on the order events arrive in (below the cap), and a replay after recovery is harmless: bytewax
restores the state of the snapshot the replay starts from. A redelivered event (same
``event_id``) is ignored.

The step emits a `LaneQuantiles` record when a quantile moved by ``emit_change_days`` or more
since the last record it emitted (or the late rate by ``emit_change_rate``), so the downstream
topic carries changes, not every delivery. `apply_update` patches a router's copy of
``ModelArrays.quantile_days`` / ``late_logit`` with one record.

What a delivered event must carry (see ``outcome_from_tracking``): the lane's destination
region, the hand-over time and, for the late rate, the promise -- proposed optional fields of
``shipment.tracking`` (``dest_region``, ``picked_up_at``, ``promised_by``); the origin is the
node's region.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from operators.delivery_dist import EDGES, N_BINS, PROBS, pmf_quantiles_row, quantiles_to_pmf
from operators.delivery_model import late_logit_of

__all__ = ["LaneQuantiles", "LaneSketch", "OnlineConfig", "Outcome", "apply_update",
           "lane_prior", "make_updater", "new_sketch", "outcome_from_tracking",
           "update_sketch"]  # fmt: skip

DAY_MS = 86_400_000.0


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    """How fast lanes forget, and when they speak up."""

    half_life_days: float = 7.0
    prior_weight: float = 20.0  # pseudo-deliveries of the offline model's distribution
    prior_floor: float = 1.0  # ... to which the prior's weight decays at the least
    max_weight: float = 2000.0  # cap on the decayed deliveries' total weight
    emit_change_days: float = 0.1
    emit_change_rate: float = 0.02
    dedup: int = 32  # recent event ids remembered per lane


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivered shipment, reduced to what the lane model learns from."""

    event_id: str
    origin: str
    dest: str
    service: str  # "carrier/service", the network's service id
    transit_days: float  # delivered - handed over to the carrier
    delivered_at: int  # ms, event time
    late: int  # 1 late, 0 on time, -1 no promise known

    @property
    def key(self) -> str:
        return f"{self.origin}|{self.dest}|{self.service}"


@dataclass(frozen=True, slots=True)
class LaneQuantiles:
    """What a lane's state publishes: its current quantiles (days at ``probs``)."""

    key: str  # "origin|dest|carrier/service"
    quantiles: tuple[float, ...]
    probs: tuple[float, ...]
    late_rate: float | None
    weight: float  # decayed deliveries behind it (the prior not counted)
    events: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "quantiles": list(self.quantiles), "probs": list(self.probs),
                "late_rate": self.late_rate, "weight": self.weight, "events": self.events,
                "updated_at": self.updated_at}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LaneSketch:
    """Keyed state of one lane + service (fixed size; see the module doc)."""

    prior: np.ndarray  # f8[N_BINS]: the offline model's pmf (sums to 1, or 0 = none)
    prior_rate: float  # NaN = no prior late rate
    prior_start: float  # pseudo-deliveries behind the prior before any delivery
    mass: np.ndarray  # f8[N_BINS]: decayed delivery weights per bin
    weight: float
    late: float  # decayed late deliveries among those with a promise
    promised: float  # decayed deliveries with a promise
    updated_at: int  # ms: the latest delivery; every weight is relative to it
    first_at: int  # ms: the earliest delivery; the prior has aged since then
    events: int
    recent: tuple[str, ...]
    emitted: tuple[float, ...] | None
    emitted_rate: float | None

    def prior_weight(self, cfg: OnlineConfig) -> float:
        """The prior ages from the earliest delivery to the latest -- a function of the set of
        deliveries, not of the order they arrived in -- down to ``prior_floor``."""
        aged = 0.5 ** ((self.updated_at - self.first_at) / (cfg.half_life_days * DAY_MS))
        return max(self.prior_start * aged, min(cfg.prior_floor, self.prior_start))

    def quantiles(self, cfg: OnlineConfig) -> np.ndarray:
        return pmf_quantiles_row(self.mass + self.prior_weight(cfg) * self.prior, PROBS, EDGES)

    def late_rate(self, cfg: OnlineConfig) -> float | None:
        has_prior = not math.isnan(self.prior_rate)
        k = self.prior_weight(cfg) if has_prior else 0.0
        if self.promised + k <= 0:
            return None
        return (self.late + (k * self.prior_rate if has_prior else 0.0)) / (self.promised + k)


def new_sketch(prior_q: np.ndarray | None, prior_rate: float = math.nan,
               cfg: OnlineConfig = OnlineConfig()) -> LaneSketch:  # fmt: skip
    """An empty lane seeded with the offline model's quantiles (None/NaN = no prior)."""
    q = None if prior_q is None else np.asarray(prior_q, dtype=np.float64)
    prior = np.zeros(N_BINS) if q is None or not np.isfinite(q).all() else quantiles_to_pmf(q)
    return LaneSketch(prior, float(prior_rate), cfg.prior_weight, np.zeros(N_BINS), 0.0, 0.0,
                      0.0, 0, 0, 0, (), None, None)  # fmt: skip


def update_sketch(
    state: LaneSketch, outcome: Outcome, cfg: OnlineConfig = OnlineConfig()
) -> tuple[LaneSketch, LaneQuantiles | None]:
    """Add one delivery; returns (new state, record to publish or None)."""
    if outcome.event_id in state.recent:
        return state, None
    half_life_ms = cfg.half_life_days * DAY_MS
    t = int(outcome.delivered_at)
    mass = state.mass.copy()
    weight, late, promised, now = state.weight, state.late, state.promised, state.updated_at
    first = t if state.events == 0 else min(state.first_at, t)
    if state.events == 0 or t > now:
        f = 0.5 ** ((t - now) / half_life_ms) if state.events else 1.0
        mass *= f
        weight, late, promised, now = weight * f, late * f, promised * f, t
        w = 1.0
    else:  # an older delivery arriving late counts as old as it is
        w = 0.5 ** ((now - t) / half_life_ms)

    b = min(max(int(np.searchsorted(EDGES, outcome.transit_days, side="right")) - 1, 0),
            N_BINS - 1)
    mass[b] += w
    weight += w
    if outcome.late >= 0:
        promised += w
        late += w * outcome.late
    if weight > cfg.max_weight:
        f = cfg.max_weight / weight
        mass *= f
        weight, late, promised = cfg.max_weight, late * f, promised * f
    recent = (*state.recent, outcome.event_id)[-cfg.dedup:]
    new = replace(state, mass=mass, weight=weight, late=late, promised=promised,
                  updated_at=now, first_at=first,
                  events=state.events + 1, recent=recent)  # fmt: skip
    q = new.quantiles(cfg)
    rate = new.late_rate(cfg)
    moved = state.emitted is None or float(np.max(np.abs(q - state.emitted))) \
        >= cfg.emit_change_days  # fmt: skip
    if rate is not None and (
        state.emitted_rate is None or abs(rate - state.emitted_rate) >= cfg.emit_change_rate
    ):
        moved = True
    if not moved:
        return new, None
    qt = tuple(round(float(x), 4) for x in q)
    new = replace(new, emitted=qt, emitted_rate=rate)
    rec = LaneQuantiles(outcome.key, qt, tuple(float(p) for p in PROBS),
                        None if rate is None else round(rate, 4), round(weight, 3),
                        new.events, now)  # fmt: skip
    return new, rec


def make_updater(
    prior: Callable[[str], tuple[np.ndarray | None, float]] | None = None,
    cfg: OnlineConfig = OnlineConfig(),
) -> Callable[[LaneSketch | None, Outcome], tuple[LaneSketch, LaneQuantiles | None]]:
    """The ``stateful_map`` mapper: ``prior(key) -> (quantiles, late rate)`` seeds a new key.

    Use ``prior=lambda key: lane_prior(arrays, key)`` with the router's current ModelArrays.
    """

    def step(state: LaneSketch | None, outcome: Outcome) -> tuple[LaneSketch, Any]:
        if state is None:
            q, rate = prior(outcome.key) if prior is not None else (None, math.nan)
            state = new_sketch(q, rate, cfg)
        return update_sketch(state, outcome, cfg)

    return step


def lane_prior(arrays: Any, key: str) -> tuple[np.ndarray | None, float]:
    """(quantiles, late rate) of ``key`` in ``ModelArrays`` (None, NaN for an unknown lane)."""
    origin, dest, service = key.split("|")
    try:
        o, d = arrays.regions.index(origin), arrays.regions.index(dest)
        s = arrays.services.index(service)
    except ValueError:
        return None, math.nan
    z = float(arrays.late_logit[o, d, s])
    return np.array(arrays.quantile_days[o, d, s]), 1.0 / (1.0 + math.exp(-z)) \
        if math.isfinite(z) else math.nan  # fmt: skip


def outcome_from_tracking(event: Mapping[str, Any],
                          node_region: Mapping[str, str]) -> Outcome | str:  # fmt: skip
    """A `shipment.tracking` event -> Outcome, or the reason it teaches nothing (a string).

    Reads the proposed optional fields ``dest_region``, ``picked_up_at`` (ms) and
    ``promised_by`` (ms); the origin is ``origin_region`` if given, else the node's region.
    """
    if event.get("type") != "shipment.tracking" or event.get("status") != "delivered":
        return "not a delivery"
    origin = event.get("origin_region") or node_region.get(str(event.get("node_id")))
    dest, start = event.get("dest_region"), event.get("picked_up_at")
    if not origin:
        return "origin unknown (node not in the network)"
    if not dest or not isinstance(start, int):
        return "needs dest_region and picked_up_at"
    if not event.get("service"):
        return "needs service"
    delivered = int(event["occurred_at"])
    promised = event.get("promised_by")
    return Outcome(
        event_id=str(event["event_id"]), origin=str(origin), dest=str(dest),
        service=f"{event['carrier']}/{event['service']}",
        transit_days=(delivered - start) / DAY_MS, delivered_at=delivered,
        late=-1 if not isinstance(promised, int) else int(delivered > promised),
    )  # fmt: skip


def apply_update(
    quantile_days: np.ndarray, late_logit: np.ndarray, rec: LaneQuantiles,
    region_index: Mapping[str, int], service_index: Mapping[str, int],
) -> bool:  # fmt: skip
    """Write one record into a router's (writable) arrays; False if the lane is not there.

    An uncovered lane (NaN) stays uncovered: deliveries never open a lane the network closed.
    """
    origin, dest, service = rec.key.split("|")
    o, d, s = region_index.get(origin), region_index.get(dest), service_index.get(service)
    if o is None or d is None or s is None or len(rec.quantiles) != quantile_days.shape[3]:
        return False
    if math.isnan(quantile_days[o, d, s, 0]):
        return False
    quantile_days[o, d, s, :] = rec.quantiles
    if rec.late_rate is not None:
        late_logit[o, d, s] = float(late_logit_of(np.array(rec.late_rate)))
    return True
