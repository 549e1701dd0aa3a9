"""What the simulator offers: one frozen, serialisable `Scenario` per run.

A scenario is the whole recipe of a synthetic day (rate, mixes, error rates, daily rhythm, stock
levels and scripted disruptions), so a demo, a benchmark and a later issue's ground truth are all
reproducible from `(seed, scenario.to_dict())`. It knows nothing about the network or Kafka; node
selectors such as ``"nearest:SP:3"`` are resolved by the workload against the network it is given.

Time in a scenario is an offset in seconds from the start of the paced stream. The simulated
clock (``sim_start_ms + offset * time_scale``) only drives the hour-of-day rate rhythm; every
timestamp on the wire stays wall-clock so that latency and promise checks stay meaningful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "ABNORMAL_PATTERNS",
    "HOURLY_RHYTHM",
    "INVALID_KINDS",
    "AbnormalOrders",
    "Arrivals",
    "CarrierOutage",
    "Disruption",
    "LaneDelay",
    "Scenario",
    "StockOut",
    "Surge",
]

# Kinds of broken order events the simulator injects; each is tagged f"invalid:{kind}".
INVALID_KINDS: tuple[str, ...] = (
    "malformed-json",
    "qty-zero",
    "missing-lines",
    "unknown-type",
    "non-utf8",
)

# Relative order rate by local hour (0..23), normalised to mean 1 below. The shape follows the
# purchase hours of the Olist orders sample (../shared/data/olist, low 2-6h, plateau 10-22h),
# smoothed and with the evening peak at ~21h typical of Brazilian e-commerce.
_RAW_RHYTHM = (
    0.55, 0.30, 0.16, 0.09, 0.07, 0.08, 0.15, 0.32, 0.75, 1.12, 1.45, 1.62,
    1.42, 1.38, 1.36, 1.34, 1.36, 1.33, 1.31, 1.42, 1.55, 1.64, 1.40, 1.00,
)  # fmt: skip
HOURLY_RHYTHM: tuple[float, ...] = tuple(v * 24 / sum(_RAW_RHYTHM) for v in _RAW_RHYTHM)
_RHYTHM = np.array(HOURLY_RHYTHM)

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
# 2018-03-05 00:00 in Brasília (UTC-3): a Monday inside the Olist period, fixed so a seed alone
# reproduces the stream (a wall-clock default would change the rhythm from run to run).
DEFAULT_SIM_START_MS = 1_520_218_800_000


class ScenarioError(ValueError):
    """A scenario field is malformed; the message names the field."""


# ---------------------------------------------------------------- scripted disruptions


@dataclass(frozen=True, slots=True)
class Disruption:
    """Base of scripted events: active for offsets ``start_s <= t < end_s`` (None = to the end)."""

    kind: ClassVar[str] = "disruption"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return {"kind": self.kind, **d}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Disruption:
        body = dict(d)
        kind = body.pop("kind", None)
        cls = _DISRUPTIONS.get(kind)  # type: ignore[arg-type]
        if cls is None:
            known = list(_DISRUPTIONS)
            raise ScenarioError(f"disruptions[].kind: unknown {kind!r} (one of {known})")
        if isinstance(body.get("nodes"), list):
            body["nodes"] = tuple(body["nodes"])
        try:
            return cls(**body)
        except TypeError as exc:
            raise ScenarioError(f"disruptions[] of kind {kind!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class CarrierOutage(Disruption):
    """A carrier stops delivering to one destination region (lane.status outage, then normal)."""

    kind: ClassVar[str] = "carrier_outage"
    carrier: str
    dest_region: str
    start_s: float
    end_s: float | None = None


@dataclass(frozen=True, slots=True)
class LaneDelay(Disruption):
    """A carrier's deliveries to a region run late by ``delay_hours`` (lane.status delayed)."""

    kind: ClassVar[str] = "lane_delay"
    carrier: str
    dest_region: str
    delay_hours: float
    start_s: float
    end_s: float | None = None


@dataclass(frozen=True, slots=True)
class StockOut(Disruption):
    """The ``sku_rank``-th most popular sku (1 = top) drops to zero at some nodes.

    ``nodes`` is a tuple of node ids, ``"all"``, or ``"nearest:<REGION>:<k>"`` (the k warehouses
    nearest to that region's demand centroid), resolved against the network by the workload.
    Sent as inventory snapshots with on_hand 0; restored to the initial level at ``end_s``.
    """

    kind: ClassVar[str] = "stock_out"
    sku_rank: int
    nodes: tuple[str, ...] | str
    start_s: float
    end_s: float | None = None


@dataclass(frozen=True, slots=True)
class Surge(Disruption):
    """Order rate times ``factor`` for one channel (or all when None) during the window."""

    kind: ClassVar[str] = "surge"
    factor: float
    channel: str | None
    start_s: float
    end_s: float | None = None


#: Patterns of `AbnormalOrders` (the watchtower's and the router's, operators/watch/abnormal.py).
ABNORMAL_PATTERNS: tuple[str, ...] = ("duplicate", "quantity", "address")


@dataclass(frozen=True, slots=True)
class AbnormalOrders(Disruption):
    """``count`` abnormal orders of one ``pattern``, evenly spread over ``start_s..end_s``
    (``end_s`` None: one a second), each from a customer of its own:

    - ``duplicate``: an order, then the same customer, items and address again on another
      channel ``gap_s`` later (the second one is the duplicate);
    - ``quantity``: one line of ``qty`` units of the ``sku_rank``-th sku (its norm is 1-3);
    - ``address``: a postal code of one region sent with another region (inconsistent).
    """

    kind: ClassVar[str] = "abnormal_orders"
    pattern: str
    count: int
    start_s: float
    end_s: float | None = None
    gap_s: float = 1.0
    sku_rank: int = 10
    qty: int = 80

    def times(self) -> list[float]:
        """Offsets of the abnormal orders (for a duplicate: of its second order)."""
        span = (self.end_s - self.start_s) if self.end_s is not None else float(self.count)
        return [self.start_s + span * k / self.count for k in range(self.count)]


_DISRUPTIONS: dict[str, type[Disruption]] = {
    c.kind: c for c in (CarrierOutage, LaneDelay, StockOut, Surge, AbnormalOrders)
}


# ---------------------------------------------------------------- the scenario

Mix = tuple[tuple[str, float], ...]


def _mix(value: Mapping[str, float] | Mix, name: str) -> Mix:
    """A normalised (name, probability) tuple; probabilities must be >= 0 and not all zero."""
    items = tuple(value.items()) if isinstance(value, Mapping) else tuple(tuple(p) for p in value)
    total = sum(float(p) for _, p in items)
    if not items or total <= 0 or any(float(p) < 0 for _, p in items):
        raise ScenarioError(f"scenario.{name}: needs non-negative weights with a positive sum")
    return tuple((str(k), float(p) / total) for k, p in items)


@dataclass(frozen=True)
class Scenario:
    """The recipe of one simulated run (see the module docstring for time conventions)."""

    seed: int = 7
    rate: float = 2_000.0  # orders/s; with the rhythm on, its mean over a simulated day
    duration_s: float = 60.0
    sku_count: int = 2_000
    zipf_s: float = 1.1
    lines: tuple[float, ...] = (0.62, 0.25, 0.13)  # P(1 line), P(2), P(3), ...
    qty: tuple[float, ...] = (0.80, 0.15, 0.05)  # P(qty 1), P(2), P(3), ...
    channel_mix: Mix = (("web", 0.45), ("marketplace", 0.35), ("live", 0.15), ("crossborder", 0.05))
    tier_mix: Mix = (("standard", 0.70), ("silver", 0.15), ("gold", 0.10), ("vip", 0.05))
    cancel_rate: float = 0.02
    address_change_rate: float = 0.01
    invalid_rate: float = 0.002
    invalid_mix: Mix = tuple((k, 1.0) for k in INVALID_KINDS)
    coords_share: float = 0.7
    # Simulated clock: drives the hour-of-day rhythm only (off by default: a flat `rate`).
    sim_start_ms: int = DEFAULT_SIM_START_MS
    time_scale: float = 1.0
    daily_rhythm: bool = False
    utc_offset_hours: float = -3.0  # local time for the rhythm and the 18:00 promise cut-off
    # Stock: each node can serve `stock_cover` of the whole network's demand for a sku over
    # `stock_horizon_s` on its own; stores carry the top `store_share` of the catalogue.
    stock_horizon_s: float = 60.0
    stock_cover: float = 0.5
    store_share: float = 0.3
    min_on_hand: int = 20
    restock_interval_s: float = 5.0
    restock_batch: int = 50
    heartbeat_interval_s: float = 5.0
    disruptions: tuple[Disruption, ...] = field(default_factory=tuple)

    _MIXES: ClassVar[tuple[str, ...]] = ("channel_mix", "tier_mix", "invalid_mix")

    def __post_init__(self) -> None:
        for name in self._MIXES:
            object.__setattr__(self, name, _mix(getattr(self, name), name))
        for name in ("lines", "qty"):
            probs = tuple(float(p) for p in getattr(self, name))
            if not probs or min(probs) < 0 or sum(probs) <= 0:
                raise ScenarioError(f"scenario.{name}: needs non-negative weights, positive sum")
            object.__setattr__(self, name, tuple(p / sum(probs) for p in probs))
        object.__setattr__(self, "disruptions", tuple(self.disruptions))
        for name in ("rate", "duration_s", "time_scale", "restock_interval_s",
                     "heartbeat_interval_s", "stock_horizon_s"):  # fmt: skip
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ScenarioError(f"scenario.{name}: must be a positive number; got {v!r}")
        for name in ("cancel_rate", "address_change_rate", "invalid_rate", "coords_share",
                     "stock_cover", "store_share"):  # fmt: skip
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ScenarioError(f"scenario.{name}: must be within 0..1; got {v!r}")
        if self.sku_count < 1:
            raise ScenarioError(f"scenario.sku_count: must be >= 1; got {self.sku_count!r}")
        channels = {c for c, _ in self.channel_mix}
        for i, d in enumerate(self.disruptions):
            if not isinstance(d, Disruption):
                raise ScenarioError(f"scenario.disruptions[{i}]: not a Disruption: {d!r}")
            end = getattr(d, "end_s", None)
            if end is not None and end <= d.start_s:  # type: ignore[attr-defined]
                raise ScenarioError(f"scenario.disruptions[{i}]: end_s must be after start_s")
            if isinstance(d, Surge) and (d.factor <= 0 or d.channel not in channels | {None}):
                raise ScenarioError(f"scenario.disruptions[{i}]: bad surge {d!r}")
            if isinstance(d, AbnormalOrders) and (d.pattern not in ABNORMAL_PATTERNS
                                                  or d.count < 1 or d.sku_rank < 1
                                                  or d.qty < 1 or d.gap_s < 0):
                raise ScenarioError(f"scenario.disruptions[{i}]: bad abnormal orders {d!r} "
                                    f"(pattern one of {list(ABNORMAL_PATTERNS)}, count >= 1)")
            if isinstance(d, StockOut) and d.sku_rank < 1:
                raise ScenarioError(f"scenario.disruptions[{i}].sku_rank: 1 is the top sku")
            if isinstance(d, StockOut) and isinstance(d.nodes, str) and d.nodes != "all":
                parts = d.nodes.split(":")
                if len(parts) != 3 or parts[0] != "nearest" or not parts[2].isdigit():
                    raise ScenarioError(f"scenario.disruptions[{i}].nodes: expected a tuple of "
                                        f"ids, 'all' or 'nearest:<REGION>:<k>'; got {d.nodes!r}")

    # ------------------------------------------------------------ presets

    @classmethod
    def demo(cls, **overrides: Any) -> Scenario:
        """The `make demo` day: 60 s averaging 2,000 orders/s, the run covering one whole day.

        The rate follows the day from local midnight (≈0.1x at 3-5h, ≈1.6x at 11h and 21h), so
        the demo shows a quiet night and two peaks. Scripted: correios stops delivering to RJ
        from t=20 s to t=40 s, the #1 sku runs out at the 3 warehouses nearest to SP at t=30 s,
        and a 2x live-stream surge runs t=45..50 s. A ``duration_s`` override still spans a day
        unless ``time_scale`` is given too.
        """
        overrides.setdefault("time_scale", 86_400 / overrides.get("duration_s", 60.0))
        base = cls(
            rate=2_000.0,
            duration_s=60.0,
            daily_rhythm=True,
            disruptions=(
                CarrierOutage("correios", "RJ", start_s=20.0, end_s=40.0),
                StockOut(sku_rank=1, nodes="nearest:SP:3", start_s=30.0),
                Surge(factor=2.0, channel="live", start_s=45.0, end_s=50.0),
            ),
        )
        return replace(base, **overrides)

    @classmethod
    def steady(cls, rate: float, duration_s: float, **overrides: Any) -> Scenario:
        """A flat rate with no rhythm and no disruptions (benchmarks, tests): says so by name."""
        return cls(rate=rate, duration_s=duration_s, daily_rhythm=False, **overrides)

    # ------------------------------------------------------------ derived views

    def rhythm_at(self, t_s: Any) -> Any:
        """Rate multiplier at offset(s) ``t_s`` (float or array): linear between hour midpoints
        of `HOURLY_RHYTHM` on the simulated local clock; 1.0 when the rhythm is off."""
        t = np.asarray(t_s, dtype=np.float64)
        if not self.daily_rhythm:
            out = np.ones_like(t)
        else:
            local = self.sim_start_ms + self.utc_offset_hours * _HOUR_MS
            local = local + t * 1000 * self.time_scale
            hour = (local % _DAY_MS) / _HOUR_MS - 0.5
            lo = np.floor(hour)
            frac, h = hour - lo, lo.astype(np.int64)
            out = _RHYTHM[h % 24] * (1 - frac) + _RHYTHM[(h + 1) % 24] * frac
        return float(out) if out.ndim == 0 else out

    def channel_factors(self, t: np.ndarray) -> np.ndarray:
        """f8[len(t), C]: each channel's surge multiplier at offsets ``t`` (channel_mix order)."""
        channels = [c for c, _ in self.channel_mix]
        f = np.ones((len(t), len(channels)))
        for s in self.disruptions:
            if isinstance(s, Surge):
                on = (t >= s.start_s) & (t < (math.inf if s.end_s is None else s.end_s))
                if s.channel is None:
                    f[on] *= s.factor
                else:
                    f[on, channels.index(s.channel)] *= s.factor
        return f

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        """Offered orders/s at offsets ``t``: rate x rhythm x the share-weighted surge factors."""
        lam = self.rate * self.rhythm_at(t)
        if any(isinstance(d, Surge) for d in self.disruptions):
            shares = np.array([p for _, p in self.channel_mix])
            lam = lam * (self.channel_factors(t) * shares).sum(axis=1)
        return lam

    # ------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``Scenario.from_dict(s.to_dict()) == s``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in self._MIXES:
                v = dict(v)
            elif f.name == "disruptions":
                v = [d.to_dict() for d in v]
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scenario:
        """Build from a dict (e.g. a JSON file); unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ScenarioError(f"scenario: unknown field(s) {unknown}")
        kwargs = dict(d)
        if "disruptions" in kwargs:
            kwargs["disruptions"] = tuple(Disruption.from_dict(x) for x in kwargs["disruptions"])
        for name in ("lines", "qty"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)


class Arrivals:
    """When each order of a scenario is due: order ``n`` at Λ⁻¹(n), where Λ(t) is the
    cumulative offered rate (`Scenario.rate_at`) integrated on a fine grid.

    Evenly spaced in Λ rather than Poisson, so the offered rate is exact in every window (a
    benchmark's input is then not noisier than what it measures) and the stream does not
    depend on how the publisher cuts its windows.
    """

    def __init__(self, scenario: Scenario) -> None:
        dur = scenario.duration_s
        steps = max(1, math.ceil(dur / max(0.001, dur / 200_000)))
        self._t = np.linspace(0.0, dur, steps + 1)
        lam = scenario.rate_at((self._t[:-1] + self._t[1:]) / 2) * np.diff(self._t)
        self._n = np.concatenate(([0.0], np.cumsum(lam)))
        self.duration_s = dur
        self.total = self.count_before(dur)

    def count_before(self, t: float) -> int:
        """How many orders are due strictly before offset ``t``."""
        t = min(max(t, 0.0), self.duration_s)
        return math.ceil(float(np.interp(t, self._t, self._n)) - 1e-6)

    def times(self, n0: int, n1: int) -> np.ndarray:
        """Due offsets (s) of orders ``n0 .. n1-1``."""
        return np.interp(np.arange(n0, n1, dtype=np.float64), self._n, self._t)
