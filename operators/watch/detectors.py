"""One class per keyed step of the watchtower, over the pure detector modules.

Each implements the small protocol `dataflows.watch_steps.DetectorLogic` runs: `on_item(value,
now)`, `on_timer(watermark)`, `deadline()`, `empty()`, `size()` — all in event time, so each is
tested here without bytewax by feeding items and moving a number forward. Outputs are either
`Verdict`s / `Partial`s (for the incidents step) or routed tuples `(route, key, value)`.
"""

from __future__ import annotations

import time
from typing import Any

from operators.watch import demand, quality
from operators.watch.facts import InventoryIn, LaneRec, NetInfo, StockDelta, WindowResult
from operators.watch.hub import OrderHub
from operators.watch.incidents import Incident, apply, deadline, expire
from operators.watch.lanes import (
    LaneStatus,
    TransitAgg,
    lane_status,
    lane_status_deadline,
    lane_status_expire,
    lane_transit,
    lane_transit_deadline,
    lane_transit_expire,
)
from operators.watch.patterns import AbnormalShard, PatternState
from operators.watch.settings import WatchSettings
from operators.watch.stock import NodeStock
from operators.watch.verdicts import Partial, PartialSet, Verdict


class HubDetector:
    """Key: hub shard. Outputs routed tuples (stock, velocity, transit, partial)."""

    def __init__(self, key: str, settings: WatchSettings, net: NetInfo) -> None:
        self.hub = OrderHub(key, settings, net)

    def on_item(self, value: Any, now: int) -> list[Any]:
        return self.hub.on_fact(value, now)

    def on_timer(self, watermark: int) -> list[Any]:
        return self.hub.on_timer(watermark)

    def deadline(self) -> int | None:
        return self.hub.next_deadline()

    def empty(self) -> bool:
        return self.hub.empty

    def size(self) -> int:
        return self.hub.size() + len(self.hub.records)


class LaneStatusDetector:
    """Key: lane record key. Trips on outage/long delay at once."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.cfg = settings.lane
        self.state: LaneStatus | None = None

    def on_item(self, value: LaneRec, now: int) -> list[Any]:
        self.state, out = lane_status(self.state, value, self.cfg)
        return out

    def on_timer(self, watermark: int) -> list[Any]:
        if self.state is None:
            return []
        self.state, out = lane_status_expire(self.state, watermark)
        return out

    def deadline(self) -> int | None:
        return None if self.state is None else lane_status_deadline(self.state)

    def empty(self) -> bool:
        return self.state is None

    def size(self) -> int:
        return 0 if self.state is None else 1


class LaneTransitDetector:
    """Key: concrete lane carrier|origin|dest. Items: closed windows of `TransitAgg`."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.lane, self.cfg = key, settings.lane
        self.state = None

    def on_item(self, value: WindowResult, now: int) -> list[Any]:
        agg = value.value if isinstance(value.value, TransitAgg) else TransitAgg()
        self.state, out = lane_transit(self.state, self.lane, agg, value.end, self.cfg)
        return out

    def on_timer(self, watermark: int) -> list[Any]:
        if self.state is None:
            return []
        self.state, out = lane_transit_expire(self.state, self.lane, watermark, self.cfg)
        return out

    def deadline(self) -> int | None:
        return None if self.state is None else lane_transit_deadline(self.state, self.cfg)

    def empty(self) -> bool:
        return self.state is None

    def size(self) -> int:
        return 0 if self.state is None else 1


class StockDetector:
    """Key: node id. Items: inventory facts, stock deltas, closed velocity windows."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.cfg = settings.stock
        self.node = NodeStock(key)

    def on_item(self, value: Any, now: int) -> list[Any]:
        if not self.node.next_sweep:
            self.node.next_sweep = now + self.cfg.sweep_ms
        if isinstance(value, InventoryIn):
            return self.node.on_inventory(value, self.cfg)
        if isinstance(value, StockDelta):
            return self.node.on_delta(value, self.cfg)
        if isinstance(value, WindowResult) and isinstance(value.value, dict):
            return self.node.on_window(value.end, value.value, self.cfg)
        return []

    def on_timer(self, watermark: int) -> list[Any]:
        return self.node.sweep(watermark, self.cfg)

    def deadline(self) -> int | None:
        return self.node.next_sweep if self.node.skus else None

    def empty(self) -> bool:
        return self.node.empty

    def size(self) -> int:
        return len(self.node.skus)


class DemandDetector:
    """Key: channel, or '*' for all channels. Items: closed windows of region counts."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.cfg = settings.demand
        self.state = demand.DemandState(key)
        self._idle = False

    def on_item(self, value: WindowResult, now: int) -> list[Any]:
        self._idle = False
        return demand.on_window(self.state, value.end, dict(value.value), self.cfg)

    def on_timer(self, watermark: int) -> list[Any]:
        out = demand.on_silence(self.state, watermark, self.cfg)
        self._idle = demand.idle(self.state, watermark, self.cfg)
        return out

    def deadline(self) -> int | None:
        return demand.silence_deadline(self.state, self.cfg)

    def empty(self) -> bool:
        return self._idle

    def size(self) -> int:
        return 1 + len(self.state.regions)


class QualityDetector:
    """Key: source topic (registry name). Items: closed windows of `QualityAgg`."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.cfg = settings.quality
        self.state = quality.QualityState(key)

    def on_item(self, value: WindowResult, now: int) -> list[Any]:
        return quality.on_window(self.state, value.value, value.end, self.cfg)

    def on_timer(self, watermark: int) -> list[Any]:
        return quality.on_silence(self.state, watermark, self.cfg)

    def deadline(self) -> int | None:
        return quality.deadline(self.state, self.cfg)

    def empty(self) -> bool:
        return not self.state.active

    def size(self) -> int:
        return 1


class AbnormalHistoryDetector:
    """Key: history shard. Items: `DupCheck` / `QtyCheck`. Outputs ("pattern", name, Flag)."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.cfg = settings.abnormal
        self.shard = AbnormalShard()

    def on_item(self, value: Any, now: int) -> list[Any]:
        return [("pattern", f.pattern, f) for f in self.shard.on_fact(value, self.cfg)]

    def on_timer(self, watermark: int) -> list[Any]:
        self.shard.on_timer(watermark, self.cfg)
        return []

    def deadline(self) -> int | None:
        return self.shard.next_deadline()

    def empty(self) -> bool:
        return self.shard.empty

    def size(self) -> int:
        return self.shard.size()


class PatternDetector:
    """Key: pattern name. Items: `Flag`s. One incident per pattern."""

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.cfg = settings.abnormal
        self.state = PatternState(key)

    def on_item(self, value: Any, now: int) -> list[Any]:
        return self.state.add(value, self.cfg)

    def on_timer(self, watermark: int) -> list[Any]:
        return self.state.expire(watermark, self.cfg)

    def deadline(self) -> int | None:
        return self.state.deadline(self.cfg)

    def empty(self) -> bool:
        return self.state.empty

    def size(self) -> int:
        return len(self.state.recent)


class IncidentDetector:
    """Key: dedup key. Items: `Verdict`s, or shards' `Partial`s merged first. Outputs alerts.

    An incident made of shards' partials opens only once event time has moved past the first
    partial (by the lateness allowance): the other shards' partials of the same change arrive
    in other batches, and the page should name all the affected orders, not the first shard's.
    """

    def __init__(self, key: str, settings: WatchSettings) -> None:
        self.settings = settings
        self.incident: Incident | None = None
        self.partials = PartialSet()
        self.opening_at: int | None = None  # event time the pending opening is judged at

    def on_item(self, value: Verdict | Partial, now: int) -> list[Any]:
        return self.on_batch([value], now)

    def on_batch(self, values: list[Verdict | Partial], now: int) -> list[Any]:
        """Verdicts in order; the partials of a batch are merged into one verdict first."""
        alerts: list[Any] = []
        merged: Verdict | None = None
        for value in values:
            if isinstance(value, Partial):
                merged = self.partials.update(value)
                continue
            self.incident, out = apply(self.incident, value, self.settings, _wall_ms())
            alerts.extend(out)
        if merged is not None:
            if self.incident is None and merged.active:
                if self.opening_at is None:
                    self.opening_at = now
            else:
                self.incident, out = apply(self.incident, merged, self.settings, _wall_ms())
                alerts.extend(out)
        return self._fresh(alerts)

    def _fresh(self, alerts: list[dict[str, Any]]) -> list[Any]:
        """Alerts to send; one about evidence older than the replay horizon becomes
        ("replayed", type) instead (counted, not sent: see `IncidentSettings`)."""
        horizon = self.settings.incidents.replay_horizon_ms
        return [a if a["emitted_at"] - a["last_seen"] <= horizon else ("replayed", a["type"])
                for a in alerts]

    def on_timer(self, watermark: int) -> list[Any]:
        alerts: list[Any] = []
        if self.opening_at is not None and watermark >= self.opening_at:
            self.opening_at = None
            merged = self.partials.current()
            if merged is not None:
                self.incident, alerts = apply(self.incident, merged, self.settings, _wall_ms())
        if self.incident is not None:
            self.incident, out = expire(self.incident, watermark, self.settings, _wall_ms())
            alerts.extend(out)
        return self._fresh(alerts)

    def deadline(self) -> int | None:
        dues = [d for d in (self.opening_at, None if self.incident is None
                            else deadline(self.incident, self.settings)) if d is not None]
        return min(dues) if dues else None

    def empty(self) -> bool:
        return self.incident is None and self.partials.empty and self.opening_at is None

    def size(self) -> int:
        return (self.incident is not None) + len(self.partials.parts)


def _wall_ms() -> int:
    """`emitted_at` of alerts: the one wall-clock reading in the detectors (not in their ids)."""
    return time.time_ns() // 1_000_000
