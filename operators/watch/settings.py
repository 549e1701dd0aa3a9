"""Watchtower thresholds: one typed, immutable tree built from a JSON/YAML file over defaults.

Every number a detector compares against lives here, so operations tune detection without a code
change (`fulfil watch --thresholds watch.yaml`). Defaults are for production traffic in real time:
windows of minutes, baselines of an hour or so, stock horizons of hours. Durations are
milliseconds of *event time* (`*_ms`).

The file holds only what differs from the defaults, section by section::

    lateness_ms: 1000
    demand: {window_ms: 60000, surge_ratio: 1.8}
    stock: {ttso_ms: 3600000}

An unknown section or key is an error naming it (a typo must not silently keep a default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import orjson

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


class SettingsError(ValueError):
    """A thresholds file or value is malformed; the message names the setting."""


@dataclass(frozen=True, slots=True)
class LaneSettings:
    """Lane disruption: lane.status events trip at once; tracking feeds sliding windows."""

    delay_trip_hours: float = 6.0  # a `delayed` lane.status at or above this trips at once
    window_ms: int = HOUR  # sliding window of delivered/failed shipments per lane
    slide_ms: int = 10 * MINUTE
    min_events: int = 20  # shipments a window needs before its shares mean anything
    late_ratio: float = 1.5  # a delivery is late when transit > expected transit * this
    margin: float = 0.15  # a share must exceed the lane's baseline by this much ...
    min_late_share: float = 0.3  # ... and be at least this (late deliveries)
    min_failed_share: float = 0.2  # ... or this (failed pickups / attempts, exceptions)
    prior_late_share: float = 0.1  # baseline of a lane not seen long enough
    prior_failed_share: float = 0.05
    baseline_alpha: float = 0.2  # EWMA weight of a normal window in the baseline
    clear_windows: int = 2  # normal windows in a row that resolve
    idle_ttl_ms: int = DAY  # a lane with no window for this long is forgotten


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """Delivery-promise risk of open orders after lane changes."""

    page_min_orders: int = 10  # at or above: severity error (pages); below: warning
    sample_size: int = 20
    max_listed: int = 500  # affected_order_ids carried in the alert
    open_grace_ms: int = DAY  # an order is dropped this long after its promise passed


@dataclass(frozen=True, slots=True)
class StockSettings:
    """Stock-out ahead per node+sku."""

    window_ms: int = HOUR  # sliding window of reserved units (the depletion velocity)
    slide_ms: int = 5 * MINUTE
    ttso_ms: int = 2 * HOUR  # alert when time-to-stock-out is below this ...
    min_units_per_window: int = 5  # ... while at least this many units were reserved ...
    demand_recent_ms: int = 15 * MINUTE  # ... in a window that closed this recently
    resolve_factor: float = 1.5  # resolve once time-to-stock-out > ttso_ms * this
    idle_ttl_ms: int = DAY  # a node+sku without events for this long is forgotten
    sweep_ms: int = MINUTE  # how often a node's state looks for idle skus


@dataclass(frozen=True, slots=True)
class DemandSettings:
    """Demand surge/collapse per channel (and all channels) in tumbling windows."""

    window_ms: int = 5 * MINUTE
    warmup_windows: int = 6  # windows of history before a baseline is trusted
    alpha: float = 0.2  # EWMA weight of a normal window
    anomalous_alpha: float = 0.02  # weight of an anomalous one (a lasting shift is learnt slowly)
    surge_ratio: float = 1.6
    collapse_ratio: float = 0.4
    z: float = 4.0  # and |count - baseline| / sqrt(baseline) at least this
    min_baseline: float = 20.0  # orders per window below which a series is too thin to judge
    # Regions inside a channel are many series judged at once (27 x channels per window), so a
    # regional surge needs a thicker series and stronger evidence to keep false alarms rare.
    region_min_baseline: float = 50.0
    region_z: float = 6.0
    clear_windows: int = 2
    idle_ttl_ms: int = DAY


@dataclass(frozen=True, slots=True)
class StuckSettings:
    """Orders received but not routed, routed but not shipped."""

    unrouted_after_ms: int = MINUTE  # a processing SLA: not scaled with simulated time
    handling_grace_ms: int = HOUR  # beyond the node's handling_hours before "not shipped"
    min_orders: int = 1
    page_min_orders: int = 20
    sample_size: int = 20
    max_listed: int = 500
    order_ttl_ms: int = 7 * DAY  # after the promise: an order's state is dropped


@dataclass(frozen=True, slots=True)
class AbnormalSettings:
    """Duplicates, quantity outliers, bad addresses: one alert per pattern."""

    duplicate_window_ms: int = 10 * MINUTE
    qty_min: int = 20  # a line below this is never an outlier
    qty_factor: float = 10.0  # ... and must exceed the sku's mean by this factor
    qty_z: float = 6.0  # ... and its mean + z * sd
    qty_min_history: int = 30  # lines of the sku seen before its norm is trusted
    customer_factor: float = 5.0  # qty above the customer's largest line so far * this
    customer_min_orders: int = 3
    address_max_km: float = 150.0  # coordinates this far from the postal code's area
    norm_ttl_ms: int = 7 * DAY
    #: routers: small lines reach the shared sku norms at most this often (state/order_marks.py)
    norm_flush_ms: int = 2000
    pattern_window_ms: int = 10 * MINUTE  # flagged orders counted over this window
    min_orders: int = 3  # flagged orders in the window that open an incident
    page_min_orders: int = 50
    sample_size: int = 20
    max_listed: int = 500


@dataclass(frozen=True, slots=True)
class QualitySettings:
    """Dead-letter rate per source topic in tumbling windows."""

    window_ms: int = MINUTE
    max_rate: float = 0.01  # dead letters / events read
    page_rate: float = 0.1  # at or above: error (pages)
    min_dead: int = 20
    clear_windows: int = 2


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    """Alert lifecycle: how often an open incident may be updated, when it goes stale."""

    update_min_interval_ms: int = MINUTE  # between two updates of one incident (event time)
    update_change: float = 0.25  # relative change of the affected count worth an update
    stale_ms: int = DAY  # an incident with no verdict for this long resolves as stale
    # A condition must stay clear this long before the incident resolves: one that clears and
    # comes back within it stays one incident (no resolve/re-page flapping).
    resolve_hold_ms: int = MINUTE
    # Alerts about evidence older than this (wall clock at emission) are not sent: a restart
    # that replays the topics rebuilds incidents without paging the past again. Their ids are
    # deterministic, so a live update of a replayed incident continues the same revisions.
    replay_horizon_ms: int = 10 * MINUTE


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The whole tree; see the module docstring for the file format."""

    lateness_ms: int = 500  # event-time slack for out-of-order events (window close, timers)
    live_lag_ms: int = 2_000  # a partition read within this of its stamps is live (time moves)
    idle_ms: int = 2_000  # a partition silent this long no longer holds event time back
    shards: int = 32  # keyed-state shards of per-order and per-fingerprint state
    runbook_base_url: str = "docs/alerts.md"
    dead_letter_bad_input: bool = False  # see dataflows/watchtower.py
    lane: LaneSettings = field(default_factory=LaneSettings)
    risk: RiskSettings = field(default_factory=RiskSettings)
    stock: StockSettings = field(default_factory=StockSettings)
    demand: DemandSettings = field(default_factory=DemandSettings)
    stuck: StuckSettings = field(default_factory=StuckSettings)
    abnormal: AbnormalSettings = field(default_factory=AbnormalSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    incidents: IncidentSettings = field(default_factory=IncidentSettings)

    def runbook(self, alert_type: str) -> str:
        """The runbook link of one alert type (an anchor in the runbook document)."""
        return f"{self.runbook_base_url}#{alert_type}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(where: str, default: Any, value: Any) -> Any:
    """`value` as the type of `default`; ints accept integral floats, floats accept ints."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise SettingsError(f"{where} must be {kind.__name__}; got {value!r}")


def _merge(obj: Any, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise SettingsError(f"{where or 'thresholds'} must be a mapping; got {data!r}")
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise SettingsError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, name)
        else:
            changes[key] = _coerce(name, current, value)
            if isinstance(changes[key], int | float) and not isinstance(changes[key], bool) \
                    and changes[key] < 0:
                raise SettingsError(f"{name} must be >= 0; got {value!r}")
    return replace(obj, **changes)


def settings_from(data: Mapping[str, Any] | None = None, base: WatchSettings | None = None
                  ) -> WatchSettings:
    """Defaults (or `base`) overridden by a nested mapping, checked key by key."""
    out = _merge(base or WatchSettings(), data or {}, "")
    if out.shards < 1:
        raise SettingsError(f"shards must be >= 1; got {out.shards}")
    for section, name in (("lane", "slide_ms"), ("stock", "slide_ms"), ("demand", "window_ms"),
                          ("quality", "window_ms"), ("lane", "window_ms"), ("stock", "window_ms")):
        if getattr(getattr(out, section), name) < 1:
            raise SettingsError(f"{section}.{name} must be >= 1")
    return out


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A JSON or YAML file (by extension; .yaml/.yml need PyYAML) as a dict."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{p}: {exc.strerror or exc}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(raw) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{p}: not valid YAML ({exc})") from None
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SettingsError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{p}: the top level must be a mapping")
    return data


def load_settings(path: str | Path | None = None) -> WatchSettings:
    """Defaults, overridden by the file at `path` when given."""
    return settings_from(read_mapping(path) if path else None)


__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "AbnormalSettings",
    "DemandSettings",
    "IncidentSettings",
    "LaneSettings",
    "QualitySettings",
    "RiskSettings",
    "SettingsError",
    "StockSettings",
    "StuckSettings",
    "WatchSettings",
    "load_settings",
    "read_mapping",
    "settings_from",
]
