"""Lane disruption: carrier announcements trip at once; tracking outcomes are judged in windows.

Two kinds of evidence, two keyed states:

- `LaneStatus`, per lane record key (carrier|service|origin|dest, '*' = all, the granularity the
  carrier announced): an `outage` trips immediately (critical), a `delayed` record at or above
  `delay_trip_hours` trips immediately (error); `normal`, or `valid_until` passing, resolves.
- `LaneTransit`, per concrete lane (carrier|origin|dest): each closed sliding window of shipment
  outcomes (`TransitAgg`: delivered, late, failed) is compared with the lane's own baseline (an
  EWMA of its normal windows, starting from a prior), so a lane that is always slow does not page
  and a fast lane that slows down does.

Pure: callers pass event times; verdicts go to `operators.watch.incidents`.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.watch.facts import LaneRec, TransitObs, lane_entity
from operators.watch.settings import LaneSettings
from operators.watch.verdicts import Verdict
from schemas.enums import AlertSeverity, AlertType


def _status_key(key: str) -> str:
    return f"{AlertType.LANE_DISRUPTION}/{key}"


@dataclass(slots=True)
class LaneStatus:
    """The latest record of one lane key, and whether it currently trips."""

    rec: LaneRec
    active: bool = False


def _trips(rec: LaneRec, cfg: LaneSettings) -> bool:
    return rec.status == "outage" or (
        rec.status == "delayed" and rec.delay_hours >= cfg.delay_trip_hours)


def _where(origin: str, dest: str) -> str:
    if origin == "*":
        return "all lanes" if dest == "*" else f"lanes to {dest}"
    return f"lanes from {origin}" if dest == "*" else f"lanes {origin}->{dest}"


def _status_verdict(rec: LaneRec, active: bool, at: int) -> Verdict:
    scope = rec.key.split("|")
    where = _where(scope[2], scope[3])
    if rec.status == "outage":
        what, severity = "outage", AlertSeverity.CRITICAL
    else:
        what, severity = f"delayed {rec.delay_hours:g} h", AlertSeverity.ERROR
    svc = "" if scope[1] == "*" else f"/{scope[1]}"
    summary = f"{rec.carrier}{svc}: {what} on {where}"
    if rec.reason:
        summary += f" ({rec.reason})"
    if not active:
        summary = f"{rec.carrier}{svc}: {where} back to normal"
    return Verdict(_status_key(rec.key), AlertType.LANE_DISRUPTION, active, at, severity,
                   lane_entity(rec.key), summary,
                   {"status": rec.status, "delay_hours": rec.delay_hours, "reason": rec.reason,
                    "valid_until": rec.valid_until, "source": "lane.status"},
                   evidence_at=rec.ts)


def lane_status(state: LaneStatus | None, rec: LaneRec, cfg: LaneSettings
                ) -> tuple[LaneStatus | None, list[Verdict]]:
    """One lane.status record for this key: (new state, verdicts). Older records are ignored.

    A forecast (`valid_from` ahead of the event) is held, and trips when it starts
    (`lane_status_expire`): the page is about the lane being down, not about the forecast.
    """
    if state is not None and rec.ts < state.rec.ts:
        return state, []
    trips = _trips(rec, cfg)
    was = state is not None and state.active
    if not trips or rec.starts_after(rec.ts):
        resolved = [_status_verdict(rec, False, rec.ts)] if was else []
        return (LaneStatus(rec, False) if trips else None), resolved
    changed = state is None or state.rec[6:] != rec[6:]  # status, delay, reason, validity
    new = LaneStatus(rec, True)
    return new, [_status_verdict(rec, True, rec.ts)] if changed or not was else []


def lane_status_deadline(state: LaneStatus) -> int | None:
    return state.rec.valid_from if not state.active else state.rec.valid_until


def lane_status_expire(state: LaneStatus, watermark: int
                       ) -> tuple[LaneStatus | None, list[Verdict]]:
    """A forecast starts (trips), or `valid_until` passes (the announcement no longer holds)."""
    rec = state.rec
    if not state.active:
        if rec.valid_from is None or watermark < rec.valid_from:
            return state, []
        if rec.valid_until is not None and rec.valid_until <= watermark:
            return None, []  # over before we could tell
        started = rec._replace(ts=rec.valid_from)
        return LaneStatus(started, True), [_status_verdict(started, True, rec.valid_from)]
    until = rec.valid_until
    if until is None or watermark < until:
        return state, []
    return None, [_status_verdict(rec, False, until)]


# ---------------------------------------------------------------------- transit windows


@dataclass(slots=True)
class TransitAgg:
    """What one sliding window saw on a lane (the fold accumulator)."""

    delivered: int = 0
    late: int = 0
    failed: int = 0

    def add(self, obs: TransitObs) -> TransitAgg:
        if obs.failed:
            self.failed += 1
        else:
            self.delivered += 1
            self.late += int(obs.late)
        return self

    def merge(self, other: TransitAgg) -> TransitAgg:
        return TransitAgg(self.delivered + other.delivered, self.late + other.late,
                          self.failed + other.failed)


@dataclass(slots=True)
class LaneTransit:
    """Baseline and incident bookkeeping of one concrete lane."""

    late_share: float
    failed_share: float
    windows: int = 0
    active: bool = False
    clean: int = 0
    last_end: int = 0


def lane_transit(state: LaneTransit | None, lane: str, agg: TransitAgg, window_end: int,
                 cfg: LaneSettings) -> tuple[LaneTransit, list[Verdict]]:
    """Judge one closed window of a lane against its baseline; update the baseline."""
    st = state or LaneTransit(cfg.prior_late_share, cfg.prior_failed_share)
    st.last_end = max(st.last_end, window_end)
    total = agg.delivered + agg.failed
    if total < cfg.min_events:
        return st, _transit_clean(st, lane, window_end, cfg)
    late = agg.late / agg.delivered if agg.delivered else 0.0
    failed = agg.failed / total
    bad_late = late >= cfg.min_late_share and late > st.late_share + cfg.margin
    bad_failed = failed >= cfg.min_failed_share and failed > st.failed_share + cfg.margin
    details = {"window_end": window_end, "delivered": agg.delivered, "late": agg.late,
               "failed": agg.failed, "late_share": round(late, 3),
               "failed_share": round(failed, 3), "baseline_late_share": round(st.late_share, 3),
               "baseline_failed_share": round(st.failed_share, 3), "source": "tracking"}
    if not (bad_late or bad_failed):
        st.windows += 1
        st.late_share += cfg.baseline_alpha * (late - st.late_share)
        st.failed_share += cfg.baseline_alpha * (failed - st.failed_share)
        return st, _transit_clean(st, lane, window_end, cfg)
    st.active, st.clean = True, 0
    what = []
    if bad_late:
        what.append(f"{late:.0%} of deliveries late (baseline {st.late_share:.0%})")
    if bad_failed:
        what.append(f"{failed:.0%} failed pickups/attempts (baseline {st.failed_share:.0%})")
    carrier, origin, dest = lane.split("|")
    summary = f"{carrier} {origin}->{dest}: " + ", ".join(what)
    severity = AlertSeverity.ERROR if bad_failed or late >= 2 * cfg.min_late_share \
        else AlertSeverity.WARNING
    return st, [Verdict(f"{AlertType.LANE_DISRUPTION}/{lane}/transit", AlertType.LANE_DISRUPTION,
                        True, window_end, severity, lane_entity(lane), summary, details,
                        evidence_at=window_end)]


def _transit_clean(st: LaneTransit, lane: str, at: int, cfg: LaneSettings) -> list[Verdict]:
    if not st.active:
        return []
    st.clean += 1
    if st.clean < cfg.clear_windows:
        return []
    st.active, st.clean = False, 0
    carrier, origin, dest = lane.split("|")
    return [Verdict(f"{AlertType.LANE_DISRUPTION}/{lane}/transit", AlertType.LANE_DISRUPTION,
                    False, at, AlertSeverity.WARNING, lane_entity(lane),
                    f"{carrier} {origin}->{dest}: deliveries back to the lane's baseline",
                    {"source": "tracking"})]


def lane_transit_deadline(st: LaneTransit, cfg: LaneSettings) -> int:
    """While active: when silence counts as clean windows; otherwise: when to forget the lane."""
    if st.active:
        return st.last_end + cfg.clear_windows * cfg.slide_ms
    return st.last_end + cfg.idle_ttl_ms


def lane_transit_expire(st: LaneTransit, lane: str, watermark: int, cfg: LaneSettings
                        ) -> tuple[LaneTransit | None, list[Verdict]]:
    """No windows for a while: an active lane resolves (no bad evidence), an idle one is dropped."""
    if watermark < lane_transit_deadline(st, cfg):
        return st, []
    if st.active:
        st.clean = cfg.clear_windows - 1
        verdicts = _transit_clean(st, lane, watermark, cfg)
        st.last_end = watermark
        return st, verdicts
    return None, []
