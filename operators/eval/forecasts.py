"""Scripted forecast disruptions: carrier announcements ahead of time, and what really happens.

Why a module of its own rather than the simulator's ``CarrierOutage``/``LaneDelay``: those are
announced the moment they start, so there is nothing to act on *before* a parcel is hit. A
``Forecast`` is announced ``announce_h`` hours into the period as ``lane.status`` events with
``valid_from`` (up to 48 h ahead, the carrier-status contract) and ``valid_until``, one per lane
key it covers (carrier x destination region, optionally one origin region or service). What
really happens can differ from the forecast (``actual_delay_hours``: a storm that turns out
milder); the ground truth (``operators.eval.truth.Truth``) gets the *actual* windows in full,
also the part after the period's last event (``disruptions_from_events`` would end them
there, but parcels handed over the next day still meet them).

A ``NodeClosure`` is the third kind the issue names: a node that stops handing parcels to
carriers (a ``node.closure`` with ``valid_from``/``valid_until``). What really happens is the
announced window: a parcel whose hand-over falls in it waits at the node until it reopens, then
leaves at the node's next pick-up slot (``ClosureTruth``, the node's clock as
``operators.closures.NodeClock`` reads it) and takes its lane's true transit.

Pure: events in, events out; the replay (``operators/eval/reroute_replay.py``) reads them like
any recorded stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from operators.eval.truth import Disruption, Truth
from operators.lanes import FORECAST_HORIZON_MS
from operators.network import Network

__all__ = ["CLOSURE_FORECASTS", "DEFAULT_FORECASTS", "FORECAST_SETS", "STRIKE_FORECASTS",
           "ClosureTruth", "Forecast", "NodeClosure", "closure_windows", "forecast_from_dict",
           "forecast_set", "truth_disruptions", "truth_for", "with_forecasts"]

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class Forecast:
    """One announced disruption; hours count from the period's start (local midnight)."""

    name: str
    reason: str  # weather | capacity-cut | outage ... (free text, as on the wire)
    carriers: tuple[str, ...]
    status: str  # delayed | outage
    announce_h: float
    start_h: float
    end_h: float
    delay_hours: float = 0.0
    capacity_factor: float = 1.0
    dest_regions: tuple[str | None, ...] = (None,)  # None: every destination
    origin_region: str | None = None
    service: str | None = None
    actual_delay_hours: float | None = None  # what really happens; None: as forecast

    def __post_init__(self) -> None:
        if self.status not in ("delayed", "outage"):
            raise ValueError(f"forecast {self.name!r}: status must be delayed or outage; got "
                             f"{self.status!r}")
        _check_window(self.name, self.announce_h, self.start_h, self.end_h)
        if not self.carriers or not self.dest_regions:
            raise ValueError(f"forecast {self.name!r}: needs carriers and dest_regions")

    @property
    def lead_h(self) -> float:
        return self.start_h - self.announce_h

    def lane_events(self, t0_ms: int) -> list[dict[str, Any]]:
        """The announcement: one ``lane.status`` per carrier x destination, at ``announce_h``."""
        at = t0_ms + round(self.announce_h * MS_PER_HOUR)
        out = []
        for carrier in self.carriers:
            for dest in self.dest_regions:
                ev: dict[str, Any] = {
                    "type": "lane.status", "carrier": carrier, "status": self.status,
                    "event_id": f"forecast-{self.name}-{carrier}-{dest or 'all'}",
                    "delay_hours": self.delay_hours if self.status == "delayed" else 0.0,
                    "capacity_factor": 0.0 if self.status == "outage" else self.capacity_factor,
                    "reason": self.reason, "occurred_at": at,
                    "valid_from": t0_ms + round(self.start_h * MS_PER_HOUR),
                    "valid_until": t0_ms + round(self.end_h * MS_PER_HOUR),
                }  # fmt: skip
                for field_, value in (("service", self.service), ("dest_region", dest),
                                      ("origin_region", self.origin_region)):
                    if value is not None:
                        ev[field_] = value
                out.append(ev)
        return out

    def events(self, t0_ms: int) -> list[dict[str, Any]]:
        """The announcement as stream events (``lane_events``)."""
        return self.lane_events(t0_ms)

    def actual(self, t0_ms: int) -> list[Disruption]:
        """What really happens on every lane key of the forecast (the ground truth's windows)."""
        delay = self.delay_hours if self.actual_delay_hours is None else self.actual_delay_hours
        start = t0_ms + round(self.start_h * MS_PER_HOUR)
        end = t0_ms + round(self.end_h * MS_PER_HOUR)
        return [Disruption(c, self.service, self.origin_region, d, start, end,
                           0.0 if self.status == "outage" else float(delay),
                           self.status == "outage")
                for c in self.carriers for d in self.dest_regions]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["carriers"], d["dest_regions"] = list(self.carriers), list(self.dest_regions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Forecast:
        body = dict(d)
        body["carriers"] = tuple(body["carriers"])
        body["dest_regions"] = tuple(body.get("dest_regions") or (None,))
        return cls(**body)

    def describe(self) -> str:
        where = ",".join(d or "*" for d in self.dest_regions)
        if self.origin_region:
            where = f"{self.origin_region}->{where}"
        what = ("outage" if self.status == "outage" else
                f"+{self.delay_hours:g} h" + (f" (capacity {self.capacity_factor:.0%})"
                                                if self.capacity_factor < 1 else ""))
        actual = ("" if self.actual_delay_hours is None
                  else f"; really +{self.actual_delay_hours:g} h")
        return (f"{self.name}: {'/'.join(self.carriers)} {where} {what}, "
                f"{_hhmm(self.start_h)}-{_hhmm(self.end_h)}, announced {_hhmm(self.announce_h)} "
                f"({self.lead_h:g} h ahead){actual}")


def _check_window(name: str, announce_h: float, start_h: float, end_h: float) -> None:
    if not 0 <= announce_h <= start_h < end_h:
        raise ValueError(f"forecast {name!r}: needs 0 <= announce_h <= start_h < end_h")
    if (start_h - announce_h) * MS_PER_HOUR > FORECAST_HORIZON_MS:
        raise ValueError(f"forecast {name!r}: announced more than 48 h ahead")


@dataclass(frozen=True, slots=True)
class NodeClosure:
    """One announced node closure; hours count from the period's start (local midnight).

    Announced ``announce_h`` hours in as a ``node.closure`` (``valid_from``/``valid_until``, the
    carrier-status contract); it really happens as announced (``ClosureTruth``)."""

    name: str
    node_id: str
    reason: str  # flood | municipal-order | strike ... (free text, as on the wire)
    announce_h: float
    start_h: float
    end_h: float

    def __post_init__(self) -> None:
        _check_window(self.name, self.announce_h, self.start_h, self.end_h)
        if not self.node_id:
            raise ValueError(f"forecast {self.name!r}: needs node_id")

    @property
    def lead_h(self) -> float:
        return self.start_h - self.announce_h

    def events(self, t0_ms: int) -> list[dict[str, Any]]:
        """The announcement: one ``node.closure`` at ``announce_h``."""
        return [{"type": "node.closure", "event_id": f"forecast-{self.name}-{self.node_id}",
                 "node_id": self.node_id, "status": "closed", "reason": self.reason,
                 "occurred_at": t0_ms + round(self.announce_h * MS_PER_HOUR),
                 "valid_from": t0_ms + round(self.start_h * MS_PER_HOUR),
                 "valid_until": t0_ms + round(self.end_h * MS_PER_HOUR)}]

    def window(self, t0_ms: int) -> tuple[str, int, int]:
        """(node id, start ms, end ms): when the node really hands nothing over."""
        return (self.node_id, t0_ms + round(self.start_h * MS_PER_HOUR),
                t0_ms + round(self.end_h * MS_PER_HOUR))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "node.closure", **asdict(self)}

    def describe(self) -> str:
        return (f"{self.name}: node {self.node_id} closed ({self.reason}), "
                f"{_hhmm(self.start_h)}-{_hhmm(self.end_h)}, announced {_hhmm(self.announce_h)} "
                f"({self.lead_h:g} h ahead)")


AnyForecast = Forecast | NodeClosure


def forecast_from_dict(d: Mapping[str, Any]) -> AnyForecast:
    """A forecast from its ``to_dict`` form: a node closure (``kind: node.closure`` or a
    ``node_id``) or a lane forecast."""
    if d.get("kind") == "node.closure" or "node_id" in d:
        return NodeClosure(**{k: v for k, v in d.items() if k != "kind"})
    return Forecast.from_dict(d)


class ClosureTruth(Truth):
    """``Truth`` with node closures: a parcel whose hand-over (the node's ready time) falls in
    a closure of its node stays there until the node reopens and leaves at the node's next
    pick-up slot after that (``ready_ms(valid_until)``, as ``NodeClock.pickup`` reads it), then
    takes its lane's true transit (and meets the lane disruptions of that later hand-over).
    Everything else is ``Truth``'s: the same draws, so a parcel moved away is judged on its new
    lane like any other."""

    def __init__(self, network: Network, disruptions: Iterable[Disruption], seed: int,
                 lane_bias: float = 0.0, closures: Iterable[tuple[str, int, int]] = ()) -> None:
        super().__init__(network, disruptions, seed, lane_bias)
        self.closures: dict[int, list[tuple[int, int]]] = {}
        for node, start, end in closures:
            k = network.node_index.get(node)
            if k is None:
                raise ValueError(f"ClosureTruth: node {node!r} is not in the network")
            self.closures.setdefault(k, []).append((int(start), int(end)))
        for windows_ in self.closures.values():
            windows_.sort()

    def handover_ms(self, node: int, planned_ms: int) -> int:
        at = super().handover_ms(node, planned_ms)
        for start, end in self.closures.get(node, ()):
            if start <= at < end:  # closed when the carrier comes: next slot after reopening
                at = super().handover_ms(node, end)
        return at

    def held(self, node: int, planned_ms: int) -> bool:
        """Does a closure hold this parcel at its node (a later hand-over than its plan's)?"""
        return self.handover_ms(node, planned_ms) != super().handover_ms(node, planned_ms)


def closure_windows(forecasts: Iterable[AnyForecast], t0_ms: int) -> list[tuple[str, int, int]]:
    """The actual windows of the node closures among ``forecasts`` (for ``ClosureTruth``)."""
    return [f.window(t0_ms) for f in forecasts if isinstance(f, NodeClosure)]


def truth_for(network: Network, forecasts: Iterable[AnyForecast], t0_ms: int, seed: int,
              lane_bias: float = 0.0) -> Truth:
    """The ground truth of a forecast set: its lane disruptions, and its node closures (a
    plain ``Truth`` when it has none)."""
    forecasts = list(forecasts)
    closed = closure_windows(forecasts, t0_ms)
    lanes = truth_disruptions(forecasts, t0_ms)
    if not closed:
        return Truth(network, lanes, seed, lane_bias)
    return ClosureTruth(network, lanes, seed, lane_bias, closed)


def _hhmm(h: float) -> str:
    day, rest = divmod(round(h * 60), 24 * 60)
    return f"{'+' + str(day) + 'd ' if day else ''}{rest // 60:02d}:{rest % 60:02d}"


def with_forecasts(events: Sequence[Mapping[str, Any]], forecasts: Iterable[AnyForecast],
                   t0_ms: int) -> list[Mapping[str, Any]]:
    """The stream with the forecasts' announcements merged in, time-ordered (an announcement
    goes after the events of the same instant: stable sort)."""
    extra = [ev for f in forecasts for ev in f.events(t0_ms)]
    return sorted([*events, *extra], key=lambda e: int(e["occurred_at"]))


def truth_disruptions(forecasts: Iterable[AnyForecast], t0_ms: int) -> list[Disruption]:
    """The actual lane disruptions of every lane forecast, for ``Truth``."""
    return [x for f in forecasts if isinstance(f, Forecast) for x in f.actual(t0_ms)]


#: The shipped scenario (docs/predictive.md, "Evidence"): a Monday on the Olist network, four
#: announcements of the kinds carriers send, on the lanes the planner actually uses (jadlog and
#: loggi carry ~90% of its parcels), one of them overstated. Local time (UTC-3); each node hands
#: parcels over 6 h after an order before its 15:00 cut-off, else at 15:00 the next day.
DEFAULT_FORECASTS: tuple[Forecast, ...] = (
    Forecast("rain-RJ", "weather", ("correios", "jadlog", "loggi"), "delayed",
             announce_h=6, start_h=20, end_h=44, delay_hours=24, dest_regions=("RJ",)),
    Forecast("jadlog-SP-hub", "capacity-cut", ("jadlog",), "delayed", announce_h=10,
             start_h=18, end_h=42, delay_hours=24, capacity_factor=0.5, origin_region="SP"),
    Forecast("loggi-MG", "outage", ("loggi",), "outage", announce_h=14, start_h=22, end_h=34,
             dest_regions=("MG",)),
    Forecast("cold-front-South", "weather", ("loggi",), "delayed", announce_h=16, start_h=24,
             end_h=48, delay_hours=24, dest_regions=("PR", "SC", "RS"), actual_delay_hours=4),
)

#: The disruption-heavy scenario (docs/predictive.md, "Evidence"): a 48-hour nationwide strike
#: of jadlog, the planner's main carrier, on the same Monday. Brazilian law (Lei 7.783/1989,
#: art. 3) requires a strike to be notified 48 h ahead, and Correios and transport unions
#: announce theirs days ahead, usually as a 48 h "greve de advertência". So: announced Monday
#: 20:00, from Wednesday 20:00 to Friday 20:00, as an outage of every jadlog lane (a parcel in
#: its network stops until the strike ends). Not tuned: the time is the end of a working day
#: (after every node's cut-off), the notice the legal minimum, the length the usual one.
#: Orders routed after 20:00 avoid jadlog in both runs; those waiting at a node for Tuesday's
#: pick-up are open and exposed; those already picked up are on the road in both runs.
#: One lane key per destination state, not one `jadlog|*|*|*` record: the carrier's own
#: 10-minute heartbeat ("normal", key `jadlog|*|*|*`) would replace a forecast on that key in
#: lane state (latest event wins, `operators/lanes.py: update_lane`), and routing would forget
#: the strike ten minutes after it was announced (docs/predictive.md, *Not done yet*).
BRAZIL_STATES = ("AC", "AL", "AM", "AP", "BA", "CE", "DF", "ES", "GO", "MA", "MG", "MS", "MT",
                 "PA", "PB", "PE", "PI", "PR", "RJ", "RN", "RO", "RR", "RS", "SC", "SE", "SP",
                 "TO")
STRIKE_FORECASTS: tuple[Forecast, ...] = (
    Forecast("jadlog-strike", "strike", ("jadlog",), "outage", announce_h=20, start_h=68,
             end_h=116, dest_regions=BRAZIL_STATES),
)

#: The node-closure scenario (docs/predictive.md, "Evidence"): the network's busiest node, N01
#: Sao Paulo DC (34,000 parcels/day of the 40 nodes' 92,700), closes to carrier collection for
#: 48 h under a heavy-rain warning for the Sao Paulo metropolitan region (flooding along the
#: Tiete, staff and trucks unable to move). Civil defence in Sao Paulo (Defesa Civil, after
#: INMET's orange/red warnings) alerts the day before the rain is due and sets up its crisis
#: cabinet then; the DC's operator decides that evening: announced Monday 20:00 (the end of a
#: working day, after every node's cut-off, as the strike), closed Tuesday 00:00 to Thursday
#: 00:00 (two calendar days). Not tuned: node, lead and length were fixed before any run.
#: Orders routed after 20:00 avoid N01 in both runs; orders waiting there for Tuesday's pick-up
#: (released after Monday's 15:00 cut-off) are open and exposed; without re-routing they wait
#: until Thursday's first slot.
CLOSURE_FORECASTS: tuple[NodeClosure, ...] = (
    NodeClosure("flood-SP-DC", "N01", "flood", announce_h=20, start_h=24, end_h=72),
)

#: Named forecast sets (`benchmarks/reroute_eval.py --forecasts NAME`).
FORECAST_SETS: dict[str, tuple[AnyForecast, ...]] = {
    "ordinary": DEFAULT_FORECASTS, "strike": STRIKE_FORECASTS, "closure": CLOSURE_FORECASTS,
    "ordinary+closure": (*DEFAULT_FORECASTS, *CLOSURE_FORECASTS)}


def forecast_set(name: str) -> tuple[AnyForecast, ...]:
    """A named set, with a clear error naming the known ones."""
    try:
        return FORECAST_SETS[name]
    except KeyError:
        raise ValueError(f"unknown forecast set {name!r}; known: "
                         f"{', '.join(sorted(FORECAST_SETS))} (or a JSON file)") from None
