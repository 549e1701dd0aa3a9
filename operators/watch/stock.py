"""Stock-out ahead: per node+sku, time to stock-out from stock level and depletion velocity.

The level mirrors the ledger from the streams: `on_hand` from inventory snapshots/adjustments
(versioned like the ledger: an older version changes nothing), `reserved` from the order hub's
deltas (reserve on routing, release on re-route/cancel, consume on pickup). The velocity is the
units reserved in the last closed sliding window (bytewax, event time) divided by its length.

    time to stock-out = (on_hand - reserved) / velocity

An incident opens when it falls under `ttso_ms` *while demand continues* (the last window
reserved at least `min_units_per_window` and closed within `demand_recent_ms`), and resolves when
it is back above `ttso_ms * resolve_factor` (a restock). Severity: error when nothing is left,
warning before. A node's skus live in one keyed state (key: node id); a sku with no event for
`idle_ttl_ms` and no open incident is forgotten, so the state is bounded by the active catalogue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from operators.watch.facts import InventoryIn, StockDelta
from operators.watch.settings import StockSettings
from operators.watch.verdicts import Verdict
from schemas.enums import AlertSeverity, AlertType


@dataclass(slots=True)
class SkuStock:
    on_hand: int | None = None
    version: int = -1
    reserved: int = 0
    units: int = 0  # reserved in the last closed window
    window_end: int | None = None
    last_event: int = 0
    active: bool = False


@dataclass(slots=True)
class NodeStock:
    """Every tracked sku of one node."""

    node: str
    skus: dict[str, SkuStock] = field(default_factory=dict)
    next_sweep: int = 0

    @property
    def empty(self) -> bool:
        return not self.skus

    def on_inventory(self, f: InventoryIn, cfg: StockSettings) -> list[Verdict]:
        s = self.skus.setdefault(f.sku, SkuStock())
        s.last_event = max(s.last_event, f.ts)
        if f.version <= s.version:
            return []
        s.version = f.version
        if f.snapshot:
            s.on_hand = f.value
        elif s.on_hand is not None:
            s.on_hand = max(0, s.on_hand + f.value)
        return self._judge(f.sku, s, f.ts, cfg, f.ts)

    def on_delta(self, d: StockDelta, cfg: StockSettings) -> list[Verdict]:
        s = self.skus.setdefault(d.sku, SkuStock())
        s.last_event = max(s.last_event, d.ts)
        s.reserved = max(0, s.reserved + d.reserved)
        if s.on_hand is not None:
            s.on_hand = max(0, s.on_hand + d.on_hand)
        return self._judge(d.sku, s, d.ts, cfg, d.ts) if s.active or d.reserved > 0 else []

    def on_window(self, window_end: int, units: dict[str, int], cfg: StockSettings
                  ) -> list[Verdict]:
        """A closed velocity window: units reserved per sku over the last `window_ms`."""
        out: list[Verdict] = []
        for sku, s in self.skus.items():
            if s.window_end is not None and window_end <= s.window_end:
                continue
            s.units, s.window_end = units.get(sku, 0), window_end
            if s.active or s.units:
                out.extend(self._judge(sku, s, window_end, cfg, None))
        return out

    def sweep(self, watermark: int, cfg: StockSettings) -> list[Verdict]:
        """Forget idle skus; resolve incidents whose demand stopped `idle_ttl_ms` ago."""
        out: list[Verdict] = []
        for sku in list(self.skus):
            s = self.skus[sku]
            if watermark - s.last_event < cfg.idle_ttl_ms:
                continue
            if s.active:
                s.active = False
                out.append(self._verdict(sku, s, False, watermark, math.inf, None,
                                         "no events for idle_ttl_ms: forgotten", cfg))
            del self.skus[sku]
        self.next_sweep = watermark + cfg.sweep_ms
        return out

    # ------------------------------------------------------------------ judging

    def _judge(self, sku: str, s: SkuStock, at: int, cfg: StockSettings,
               evidence: int | None) -> list[Verdict]:
        if s.on_hand is None:
            return []  # level unknown until the next snapshot
        available = s.on_hand - s.reserved
        velocity = s.units / cfg.window_ms  # units per ms
        ttso = 0.0 if available <= 0 else available / velocity if velocity > 0 else math.inf
        demand = (s.units >= cfg.min_units_per_window and s.window_end is not None
                  and at - s.window_end <= cfg.demand_recent_ms)
        if not s.active:
            if demand and ttso < cfg.ttso_ms:
                s.active = True
                return [self._verdict(sku, s, True, at, ttso, evidence or at, None, cfg)]
            return []
        if ttso > cfg.ttso_ms * cfg.resolve_factor:
            s.active = False
            return [self._verdict(sku, s, False, at, ttso, evidence, "stock recovered", cfg)]
        return [self._verdict(sku, s, True, at, ttso, evidence, None, cfg)]

    def _verdict(self, sku: str, s: SkuStock, active: bool, at: int, ttso: float,
                 evidence: int | None, why: str | None, cfg: StockSettings) -> Verdict:
        available = (s.on_hand or 0) - s.reserved
        per_hour = s.units * 3_600_000 / cfg.window_ms
        if not active:
            summary = f"{sku} at {self.node}: {why}"
        elif available <= 0:
            summary = f"{sku} at {self.node}: out of stock while demand continues " \
                      f"({s.units} reserved in the last window)"
        else:
            summary = f"{sku} at {self.node}: {available} left, out in ~{ttso / 60_000:.0f} min"
        return Verdict(
            f"{AlertType.STOCK_OUT_AHEAD}/{self.node}|{sku}", AlertType.STOCK_OUT_AHEAD, active,
            at, AlertSeverity.ERROR if available <= 0 else AlertSeverity.WARNING,
            {"kind": "node-sku", "id": f"{self.node}|{sku}", "node_id": self.node, "sku": sku},
            summary,
            {"on_hand": s.on_hand, "reserved": s.reserved, "available": available,
             "units_last_window": s.units, "units_per_hour": round(per_hour, 1),
             "time_to_stock_out_s": None if math.isinf(ttso) else round(ttso / 1000, 1)},
            evidence_at=evidence)
