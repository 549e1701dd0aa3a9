"""Data quality: the dead-letter rate of each source topic, per tumbling window.

Every message read from a source topic counts as one event of that topic; every dead letter whose
source is that topic and whose code says the *input* was bad (`decode`, `schema`,
`unknown-order`, `invalid-state`) counts as one dead. `unroutable` is not a data problem (stock or
network is) and is not counted. A window trips when it holds at least `min_dead` dead letters and
they are at least `max_rate` of its events; it pages (error) from `page_rate`. Resolves after
`clear_windows` windows below the threshold, or when the topic goes quiet for as long.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.watch.settings import QualitySettings
from operators.watch.verdicts import Verdict
from schemas.enums import AlertSeverity, AlertType

#: Dead-letter codes that mean the input itself was bad.
BAD_INPUT_CODES = frozenset({"decode", "schema", "unknown-order", "invalid-state"})


@dataclass(slots=True)
class QualityAgg:
    """Fold accumulator of one window: events read and dead letters of one topic."""

    events: int = 0
    dead: int = 0

    def add(self, item: tuple[int, int, int]) -> QualityAgg:
        _, events, dead = item
        self.events += events
        self.dead += dead
        return self

    def merge(self, other: QualityAgg) -> QualityAgg:
        return QualityAgg(self.events + other.events, self.dead + other.dead)


@dataclass(slots=True)
class QualityState:
    topic: str
    active: bool = False
    clean: int = 0
    last_end: int = 0


def on_window(st: QualityState, agg: QualityAgg, window_end: int, cfg: QualitySettings
              ) -> list[Verdict]:
    st.last_end = max(st.last_end, window_end)
    rate = agg.dead / max(agg.events, agg.dead, 1)
    details = {"window_end": window_end, "events": agg.events, "dead_letters": agg.dead,
               "rate": round(rate, 4), "max_rate": cfg.max_rate}
    if agg.dead >= cfg.min_dead and rate >= cfg.max_rate:
        st.active, st.clean = True, 0
        severity = AlertSeverity.ERROR if rate >= cfg.page_rate else AlertSeverity.WARNING
        summary = (f"{st.topic}: {agg.dead} of {agg.events} events dead-lettered "
                   f"({rate:.1%}, threshold {cfg.max_rate:.1%})")
        return [_verdict(st, True, window_end, severity, summary, details)]
    return _clean(st, window_end, details, cfg)


def _clean(st: QualityState, at: int, details: dict[str, object], cfg: QualitySettings
           ) -> list[Verdict]:
    if not st.active:
        return []
    st.clean += 1
    if st.clean < cfg.clear_windows:
        return []
    st.active, st.clean = False, 0
    return [_verdict(st, False, at, AlertSeverity.WARNING,
                     f"{st.topic}: dead-letter rate back under {cfg.max_rate:.1%}", details)]


def deadline(st: QualityState, cfg: QualitySettings) -> int | None:
    return st.last_end + cfg.clear_windows * cfg.window_ms + cfg.window_ms // 2 \
        if st.active else None


def on_silence(st: QualityState, watermark: int, cfg: QualitySettings) -> list[Verdict]:
    """No window for `clear_windows` windows: no bad input either, so resolve."""
    due = deadline(st, cfg)
    if due is None or watermark < due:
        return []
    st.clean = cfg.clear_windows - 1
    return _clean(st, watermark, {"window_end": watermark, "events": 0, "dead_letters": 0}, cfg)


def _verdict(st: QualityState, active: bool, at: int, severity: str, summary: str,
             details: dict[str, object]) -> Verdict:
    return Verdict(f"{AlertType.DATA_QUALITY}/{st.topic}", AlertType.DATA_QUALITY, active, at,
                   severity, {"kind": "topic", "id": st.topic, "topic": st.topic}, summary,
                   details, evidence_at=at)
