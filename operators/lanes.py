"""Lane health: from carrier-status events to the arrays the scoring kernel reads.

A carrier announces trouble at whatever granularity it knows: a whole carrier, one service, one
destination region, or one origin->destination lane. `LaneKey` keeps that granularity (`*` for
"all"); `update_lane` is the keyed-state step (one state per LaneKey, latest event by event time
wins, so replays and out-of-order delivery are harmless; except that a routine `normal` without a
window never erases a disruption declared with a window that has not ended — a forecast or a
strike — so a carrier's status heartbeat cannot cancel tomorrow's outage); `health_arrays`
expands the current records onto the network's [origin, dest, service] grid for a given instant,
dropping records whose `valid_until` has passed. The most severe record covering a lane wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class LaneHealth:
    """Current state of one lane key (as kept in keyed state and published to the lane board)."""

    key: str  # "carrier|service|origin|dest", '*' = all
    status: str  # normal | delayed | outage
    delay_hours: float
    capacity_factor: float
    reason: str
    updated_at: int  # event time (ms) of the event that set this state
    valid_until: int | None
    valid_from: int | None = None  # a forecast's start; None = in force now

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "delay_hours": self.delay_hours,
            "capacity_factor": self.capacity_factor,
            "reason": self.reason,
            "updated_at": self.updated_at,
            "valid_until": self.valid_until,
            "valid_from": self.valid_from,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LaneHealth:
        return cls(
            key=str(d["key"]),
            status=str(d["status"]),
            delay_hours=float(d["delay_hours"]),
            capacity_factor=float(d["capacity_factor"]),
            reason=str(d.get("reason", "")),
            updated_at=int(d["updated_at"]),
            valid_until=None if d.get("valid_until") is None else int(d["valid_until"]),
            valid_from=None if d.get("valid_from") is None else int(d["valid_from"]),
        )


def lane_key(event: Mapping[str, Any]) -> str:
    """The keyed-state key of a `lane.status` event."""
    return "|".join(
        (
            str(event["carrier"]),
            str(event.get("service") or WILDCARD),
            str(event.get("origin_region") or WILDCARD),
            str(event.get("dest_region") or WILDCARD),
        )
    )


def update_lane(
    state: LaneHealth | None, event: Mapping[str, Any]
) -> tuple[LaneHealth | None, LaneHealth | None]:
    """Keyed-state step for one lane key: returns (new state, record to publish or None).

    An event older than the state (by event time) changes nothing and publishes nothing.
    """
    occurred = int(event["occurred_at"])
    if state is not None and occurred < state.updated_at:
        return state, None
    status = str(event["status"])
    if state is not None and _heartbeat(status, event) and _declared_ahead(state, occurred):
        # A carrier's routine "normal" (no window) says nothing about a disruption it declared
        # with a window that is still ahead or running (a forecast, a strike): it stays. To
        # lift one early, send a `normal` with `valid_from` (normal from then on).
        return state, None
    new = LaneHealth(
        key=lane_key(event),
        status=status,
        delay_hours=float(event.get("delay_hours") or 0.0) if status != "normal" else 0.0,
        capacity_factor=float(event.get("capacity_factor", 1.0)),
        reason=str(event.get("reason", "")),
        updated_at=occurred,
        valid_until=event.get("valid_until"),
        valid_from=event.get("valid_from"),
    )
    if state is not None and new == state:
        return state, None
    return new, new


def _heartbeat(status: str, event: Mapping[str, Any]) -> bool:
    return status == "normal" and event.get("valid_from") is None \
        and event.get("valid_until") is None


def _declared_ahead(state: LaneHealth, at_ms: int) -> bool:
    """A disruption declared with a window that has not ended by `at_ms`."""
    if state.status == "normal":
        return False
    if state.valid_from is not None and state.valid_from > at_ms:
        return True
    return state.valid_until is not None and state.valid_until > at_ms


def _axis(value: str, index: Mapping[str, int], size: int) -> list[int] | None:
    if value == WILDCARD:
        return list(range(size))
    i = index.get(value)
    return None if i is None else [i]


FORECAST_HORIZON_MS = 48 * 3_600_000


def in_force(rec: LaneHealth, now_ms: int, horizon_ms: int = FORECAST_HORIZON_MS) -> bool:
    """Does `rec` weigh on a parcel shipped now? Yes while it lasts, and from the moment a
    forecast of it is known if it starts within `horizon_ms` (a parcel shipped now is still
    in transit then): routing acts before the disruption, not when it hits."""
    if rec.status == "normal":
        return False
    if rec.valid_until is not None and rec.valid_until <= now_ms:
        return False
    return rec.valid_from is None or rec.valid_from <= now_ms + horizon_ms


def health_arrays(
    records: Iterable[LaneHealth],
    regions: Mapping[str, int],
    services: Mapping[str, int],
    now_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(delay_hours f8[R,R,S], blocked bool[R,R,S]) for the records in force at `now_ms`
    (including forecasts starting within the horizon, see `in_force`).

    `services` maps service ids ("carrier/service") to their index. Records naming an unknown
    carrier, service or region are ignored (a carrier may cover places this network does not).
    """
    n_r, n_s = len(regions), len(services)
    delay = np.zeros((n_r, n_r, n_s), dtype=np.float64)
    blocked = np.zeros((n_r, n_r, n_s), dtype=np.bool_)
    by_carrier: dict[str, dict[str, int]] = {}
    for sid, idx in services.items():
        carrier, _, service = sid.partition("/")
        by_carrier.setdefault(carrier, {})[service] = idx
    for rec in records:
        if not in_force(rec, now_ms):
            continue
        carrier, service, origin, dest = rec.key.split("|")
        svc = by_carrier.get(carrier)
        if svc is None:
            continue
        if service == WILDCARD:
            s_idx = list(svc.values())
        else:
            s_idx = [svc[service]] if service in svc else []
        o_idx = _axis(origin, regions, n_r)
        d_idx = _axis(dest, regions, n_r)
        if not s_idx or o_idx is None or d_idx is None:
            continue
        grid = np.ix_(o_idx, d_idx, s_idx)
        if rec.status == "outage" or rec.capacity_factor <= 0.0:
            blocked[grid] = True
        delay[grid] = np.maximum(delay[grid], rec.delay_hours)
    return delay, blocked
