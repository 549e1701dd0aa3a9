"""Alert lifecycle: from a stream of verdicts per dedup key to trigger, updates and resolve.

Rules (the same for every detector):

- the first active verdict opens an incident: one `trigger`, revision 1 — the only one that pages;
- while it is open, active verdicts update it (status `trigger`, revision + 1) only when something
  an operator cares about changed: the severity, or the affected-order count by at least
  `update_change` (relative) and no sooner than `update_min_interval_ms` after the last one;
- an inactive verdict resolves it (`resolve`) once the condition has stayed clear for
  `resolve_hold_ms` (an active verdict within the hold keeps the same incident: no flapping);
  then it is forgotten, and a later active verdict is a new incident (new `first_seen`, ids);
- an open incident that hears nothing for `stale_ms` resolves as stale, so a detector that lost
  its state (a restart) cannot leave a page open forever.

`alert_id` is derived from event-time data only (`dedup_key`, `first_seen`, `revision`), so a
replay of the same input produces the same ids and the bridge's consumers can deduplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from operators.watch.settings import WatchSettings
from operators.watch.verdicts import Verdict
from schemas.enums import AlertStatus

SOURCE = "fulfil-watchtower"


@dataclass(slots=True)
class Incident:
    """An open incident: what was last said about it and when."""

    dedup_key: str
    type: str
    first_seen: int
    last_seen: int
    revision: int
    severity: str
    affected_count: int
    last_emit_at: int  # event time of the last revision emitted
    heard_at: int  # event time of the last verdict received
    entity: dict[str, str | None]
    clear: Verdict | None = None  # the verdict that said it cleared, while resolve is held


def alert_id(dedup_key: str, first_seen: int, revision: int) -> str:
    """The id of one revision of one incident (stable across replays)."""
    return f"{dedup_key}:{first_seen}:r{revision}"


def build_alert(inc: Incident, v: Verdict, status: str, settings: WatchSettings,
                emitted_at: int) -> dict[str, Any]:
    """The `alert` record (schema `alert`) for one revision."""
    entity = {k: (None if val is None else str(val)) for k, val in (v.entity or inc.entity).items()}
    entity.setdefault("kind", "unknown")
    entity.setdefault("id", inc.dedup_key)
    alert: dict[str, Any] = {
        "alert_id": alert_id(inc.dedup_key, inc.first_seen, inc.revision),
        "type": inc.type,
        "severity": inc.severity,
        "status": status,
        "revision": inc.revision,
        "dedup_key": inc.dedup_key,
        "entity": entity,
        "summary": (v.summary or inc.dedup_key)[:1024],
        "details": dict(v.details),
        "affected_order_count": max(0, int(v.affected_count)),
        "sample_order_ids": list(v.sample_ids[:100]),
        "first_seen": inc.first_seen,
        "last_seen": inc.last_seen,
        "emitted_at": emitted_at,
        "runbook_url": settings.runbook(inc.type),
        "source": SOURCE,
    }
    if v.listed_ids:
        alert["affected_order_ids"] = list(v.listed_ids[:5000])
    if v.evidence_at is not None:
        alert["evidence_at"] = int(v.evidence_at)
    return alert


def _material(inc: Incident, v: Verdict, at: int, settings: WatchSettings) -> bool:
    """Is this active verdict (seen at event time `at`) worth an update of the open incident?"""
    if v.severity != inc.severity:
        return True
    cfg = settings.incidents
    if cfg.update_min_interval_ms and at - inc.last_emit_at < cfg.update_min_interval_ms:
        return False
    before, now = inc.affected_count, v.affected_count
    if before == now:
        return False
    return abs(now - before) >= cfg.update_change * max(1, before)


def apply(inc: Incident | None, v: Verdict, settings: WatchSettings, emitted_at: int
          ) -> tuple[Incident | None, list[dict[str, Any]]]:
    """Next state of one dedup key's incident and the alerts to emit (0 or 1)."""
    if inc is None:
        if not v.active:
            return None, []
        inc = Incident(v.dedup_key, v.type, v.at, v.at, 1, v.severity, v.affected_count,
                       v.at, v.at, dict(v.entity))
        return inc, [build_alert(inc, v, AlertStatus.TRIGGER, settings, emitted_at)]
    # Verdicts of shards or windows need not arrive in event-time order: the incident's own
    # time only moves forward.
    at = max(inc.heard_at, v.at)
    inc.heard_at = inc.last_seen = at
    if not v.active:
        if settings.incidents.resolve_hold_ms <= 0:
            inc.revision += 1
            return None, [build_alert(inc, v, AlertStatus.RESOLVE, settings, emitted_at)]
        if inc.clear is None:
            inc.clear = v  # resolved when it stays clear (see `expire`)
        return inc, []
    inc.clear = None
    if not _material(inc, v, at, settings):
        return inc, []
    inc.revision += 1
    inc.severity, inc.affected_count, inc.last_emit_at = v.severity, v.affected_count, at
    return inc, [build_alert(inc, v, AlertStatus.TRIGGER, settings, emitted_at)]


def deadline(inc: Incident, settings: WatchSettings) -> int:
    """Event time of the incident's next resolve: held clear long enough, or stale."""
    stale = inc.heard_at + settings.incidents.stale_ms
    if inc.clear is not None:
        return min(stale, inc.clear.at + settings.incidents.resolve_hold_ms)
    return stale


def expire(inc: Incident, watermark: int, settings: WatchSettings, emitted_at: int
           ) -> tuple[Incident | None, list[dict[str, Any]]]:
    """Resolve an incident clear for `resolve_hold_ms`, or stale (nothing heard for
    `stale_ms`); otherwise leave it."""
    if watermark < deadline(inc, settings):
        return inc, []
    if inc.clear is not None:
        inc.revision += 1
        return None, [build_alert(inc, inc.clear, AlertStatus.RESOLVE, settings, emitted_at)]
    inc.revision += 1
    inc.last_seen = max(inc.last_seen, watermark)
    stale = Verdict(inc.dedup_key, inc.type, False, watermark, inc.severity,
                    summary=f"resolved (no evidence for {settings.incidents.stale_ms // 1000} s):"
                            f" {inc.dedup_key}",
                    details={"resolved_by": "stale"})
    return None, [build_alert(inc, stale, AlertStatus.RESOLVE, settings, emitted_at)]


def metric_status(alert: dict[str, Any]) -> str:
    """`fulfil_alerts_total` status label: trigger (revision 1), update or resolve."""
    if alert["status"] == AlertStatus.RESOLVE:
        return "resolve"
    return "trigger" if alert["revision"] == 1 else "update"
