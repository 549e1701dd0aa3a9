"""The watchtower's memory for abnormal-order checks, and one alert per pattern.

`AbnormalShard` is one shard of the history `operators.watch.abnormal` needs: the last order per
fingerprint (kept `duplicate_window_ms`), and quantity norms per sku and per customer (kept
`norm_ttl_ms` after their last line). Facts reach the shard of their fingerprint, sku or
customer, so each piece of history lives in exactly one place; expiry runs on event-time timers.

`PatternState` counts the flagged orders of one pattern (duplicate, quantity, address) over the
last `pattern_window_ms` in coarse time buckets (bounded however many orders are flagged), opens
an incident from `min_orders`, keeps a few ids for the alert, and resolves once a whole window
passes with no flagged order.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from operators.watch.abnormal import (
    QUANTITY,
    Flag,
    QtyNorm,
    SeenOrder,
    customer_problem,
    duplicate_of,
    quantity_problem,
)
from operators.watch.settings import AbnormalSettings
from operators.watch.verdicts import Verdict
from schemas.enums import AlertSeverity, AlertType

BUCKETS_PER_WINDOW = 20


class DupCheck(NamedTuple):
    ts: int
    fingerprint: str
    order_id: str
    channel: str


class QtyCheck(NamedTuple):
    """A line quantity to judge against (and add to) the norm of a sku or a customer."""

    ts: int
    order_id: str
    kind: str  # "sku" | "customer"
    name: str
    qty: int


class AbnormalShard:
    """Fingerprints and quantity norms of one shard, with event-time expiry."""

    def __init__(self) -> None:
        self.seen: dict[str, SeenOrder] = {}
        self.norms: dict[tuple[str, str], QtyNorm] = {}
        self._timers: list[tuple[int, str, str, str]] = []

    @property
    def empty(self) -> bool:
        return not self.seen and not self.norms

    def size(self) -> int:
        return len(self.seen) + len(self.norms)

    def next_deadline(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def on_fact(self, f: DupCheck | QtyCheck, cfg: AbnormalSettings) -> list[Flag]:
        if isinstance(f, DupCheck):
            prev = self.seen.get(f.fingerprint)
            if prev is None or f.ts >= prev.ts:
                self.seen[f.fingerprint] = SeenOrder(f.order_id, f.channel, f.ts)
                heapq.heappush(self._timers,
                               (f.ts + cfg.duplicate_window_ms, "seen", f.fingerprint, ""))
                why = duplicate_of(prev, f.order_id, f.channel, f.ts, cfg)
                return [Flag("duplicate", f.order_id, f.ts, why)] if why else []
            # read out of event-time order (another partition): the duplicate is the later one
            why = duplicate_of(SeenOrder(f.order_id, f.channel, f.ts), prev.order_id,
                               prev.channel, prev.ts, cfg)
            return [Flag("duplicate", prev.order_id, prev.ts, why)] if why else []
        key = (f.kind, f.name)
        norm = self.norms.get(key)
        if f.kind == "sku":
            why = quantity_problem(f.name, f.qty, norm, cfg)
        else:
            why = customer_problem(f.qty, norm, cfg)
        if norm is None:
            norm = self.norms[key] = QtyNorm()
        if not (why and f.kind == "sku"):  # an outlier never joins its sku's norm (see
            # state/lua/order_marks.lua: a burst of one huge line would otherwise hide itself)
            norm.update(f.qty, f.ts)
        heapq.heappush(self._timers, (f.ts + cfg.norm_ttl_ms, "norm", f.kind, f.name))
        return [Flag(QUANTITY, f.order_id, f.ts, why)] if why else []

    def on_timer(self, watermark: int, cfg: AbnormalSettings) -> None:
        while self._timers and self._timers[0][0] <= watermark:
            _, kind, a, b = heapq.heappop(self._timers)
            if kind == "seen":
                seen = self.seen.get(a)
                if seen is not None and seen.ts + cfg.duplicate_window_ms <= watermark:
                    del self.seen[a]
            else:
                norm = self.norms.get((a, b))
                if norm is not None and norm.last + cfg.norm_ttl_ms <= watermark:
                    del self.norms[(a, b)]


@dataclass(slots=True)
class PatternState:
    """Flagged orders of one pattern over the last window, and its open incident."""

    pattern: str
    buckets: dict[int, int] = field(default_factory=dict)  # bucket start -> flagged orders
    recent: deque[Flag] = field(default_factory=deque)
    active: bool = False
    first_flag: int | None = None

    def count(self, now: int, cfg: AbnormalSettings) -> int:
        return sum(n for start, n in self.buckets.items()
                   if start + _bucket(cfg) > now - cfg.pattern_window_ms)

    def add(self, flag: Flag, cfg: AbnormalSettings) -> list[Verdict]:
        if any(f.order_id == flag.order_id for f in self.recent):
            return []  # the same order flagged twice for this pattern (sku and customer norms)
        start = flag.ts - flag.ts % _bucket(cfg)
        self.buckets[start] = self.buckets.get(start, 0) + 1
        self.recent.append(flag)
        while len(self.recent) > cfg.max_listed:
            self.recent.popleft()
        self._trim(flag.ts, cfg)
        n = self.count(flag.ts, cfg)
        if not self.active and n < cfg.min_orders:
            return []
        if not self.active:
            self.active, self.first_flag = True, min(f.ts for f in self.recent)
        return [self._verdict(True, flag.ts, n, cfg)]

    def expire(self, watermark: int, cfg: AbnormalSettings) -> list[Verdict]:
        self._trim(watermark, cfg)
        if self.active and not self.buckets:
            self.active = False
            return [self._verdict(False, watermark, 0, cfg)]
        return []

    def deadline(self, cfg: AbnormalSettings) -> int | None:
        """When the oldest bucket leaves the window."""
        if not self.buckets:
            return None
        return min(self.buckets) + _bucket(cfg) + cfg.pattern_window_ms

    @property
    def empty(self) -> bool:
        return not self.buckets and not self.active

    def _trim(self, now: int, cfg: AbnormalSettings) -> None:
        horizon = now - cfg.pattern_window_ms
        for start in [s for s in self.buckets if s + _bucket(cfg) <= horizon]:
            del self.buckets[start]
        while self.recent and self.recent[0].ts <= horizon:
            self.recent.popleft()

    def _verdict(self, active: bool, at: int, n: int, cfg: AbnormalSettings) -> Verdict:
        ids = tuple(f.order_id for f in self.recent)
        what = {"duplicate": "likely duplicate orders", "quantity": "orders with quantities "
                "far outside the norm", "address": "orders with undeliverable or inconsistent "
                "addresses"}.get(self.pattern, f"{self.pattern} orders")
        minutes = cfg.pattern_window_ms / 60_000
        summary = (f"{n} {what} in the last {minutes:g} min" if active
                   else f"no more {what} (none in the last {minutes:g} min)")
        examples = [{"order_id": f.order_id, "reason": f.reason} for f in list(self.recent)[-5:]]
        return Verdict(
            f"{AlertType.ABNORMAL_ORDERS}/{self.pattern}", AlertType.ABNORMAL_ORDERS, active, at,
            AlertSeverity.ERROR if n >= cfg.page_min_orders else AlertSeverity.WARNING,
            {"kind": "pattern", "id": self.pattern}, summary,
            {"pattern": self.pattern, "window_ms": cfg.pattern_window_ms, "examples": examples},
            evidence_at=at, affected_count=n, sample_ids=ids[-cfg.sample_size:],
            listed_ids=ids[-cfg.max_listed:])


def _bucket(cfg: AbnormalSettings) -> int:
    return max(1, cfg.pattern_window_ms // BUCKETS_PER_WINDOW)
