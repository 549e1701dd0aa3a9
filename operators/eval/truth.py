"""Ground truth: when a shipment really arrives, drawn from its lane's true distribution.

Why not the engine's own estimate: the planner promises with the lane's *mean* transit, so judging
on-time against that estimate only checks the planner against itself. Real parcels scatter around
the mean with a long right tail, and disruptions hold them up. Here:

- **Transit** on lane (origin region, destination region, service) is lognormal with the
  network's ``lane_transit_mean`` as its mean and ``lane_transit_p90`` as its 90th percentile
  (both in the network file). With ``r = ln(p90 / mean)``, the lognormal's sigma solves
  ``sigma**2 / 2 - z90 * sigma + r = 0`` (smaller root); when ``r > z90**2 / 2`` (p90 above 2.27x
  the mean, a few short express lanes to the North) no lognormal has both, and sigma is capped at
  ``z90``: the mean is kept, the tail is the longest a lognormal with that mean allows.
- **The network's figures are estimates**: with ``lane_bias`` > 0 every lane's true transit is
  its lognormal times a lane factor ``exp(lane_bias * z - lane_bias**2 / 2)`` (z standard normal,
  seeded per lane): right on average over lanes, off on each one, as a network built from
  distances is. Without it the truth would be exactly the distribution the planner's own
  delivery-risk prior assumes (``operators/delivery_align.py`` fits the same lognormal), a
  planner judged against its own model.
- **Disruptions** are the carrier's own lane.status events of the stream (the scenario's scripted
  ones): a shipment handed over while a ``delayed`` record covers its lane arrives
  ``delay_hours`` later; a shipment on the road (or handed over) while an ``outage`` covers its
  lane stops until the outage ends and then needs the rest of its transit. A record still open
  at the end of the stream ends there.
- **Hand-over** is the node's ready time (``ready_ms``: cut-off, opening hour, handling hours) at
  the moment the order was planned, as in the planner.
- **Identical across policies**: the uniform draw of a shipment comes from a hash of (seed,
  order, node, service, destination region), so the same shipment arrives at the same instant
  under every policy, and a different shipment gets its own independent draw.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from operators.candidates import ready_ms
from operators.lanes import WILDCARD, lane_key
from operators.network import Network

__all__ = ["Disruption", "Truth", "disruptions_from_events", "lognormal_params"]

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
Z90 = NormalDist().inv_cdf(0.9)
_NORMAL = NormalDist()


def lognormal_params(mean: np.ndarray, p90: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of lognormals with the given means and 90th percentiles (see module doc)."""
    mean = np.asarray(mean, dtype=np.float64)
    r = np.log(np.asarray(p90, dtype=np.float64) / mean)
    disc = np.maximum(Z90 * Z90 - 2.0 * r, 0.0)
    sigma = np.clip(Z90 - np.sqrt(disc), 0.0, Z90)
    mu = np.log(mean) - sigma * sigma / 2.0
    return mu, sigma


@dataclass(frozen=True, slots=True)
class Disruption:
    """A lane.status record in force from ``start_ms`` to ``end_ms`` (None: axis is '*')."""

    carrier: str
    service: str | None
    origin: str | None
    dest: str | None
    start_ms: int
    end_ms: int
    delay_hours: float
    outage: bool

    def covers(self, carrier: str, service: str, origin: str, dest: str) -> bool:
        return (self.carrier == carrier and self.service in (None, service)
                and self.origin in (None, origin) and self.dest in (None, dest))


def disruptions_from_events(events: Iterable[Mapping[str, Any]]) -> list[Disruption]:
    """Windows of every non-normal lane.status record of a (time-ordered) stream.

    A record starts when it arrives, or at its ``valid_from`` when it is a forecast, and ends at
    its ``valid_until`` or at the next event on the same lane key, whichever comes first (the
    lane board's rules, ``operators.lanes``), else at the stream's last event.
    """
    open_: dict[str, tuple[Mapping[str, Any], int]] = {}
    out: list[Disruption] = []

    def close(ev: Mapping[str, Any], start: int, at: int) -> None:
        until = ev.get("valid_until")
        end = at if until is None else min(at, int(until))
        if end > start:
            def axis(v: Any) -> str | None:
                return None if v in (None, WILDCARD) else str(v)
            out.append(Disruption(str(ev["carrier"]), axis(ev.get("service")),
                                  axis(ev.get("origin_region")), axis(ev.get("dest_region")),
                                  start, end, float(ev.get("delay_hours") or 0.0),
                                  ev["status"] == "outage" or ev.get("capacity_factor") == 0))

    last = 0
    for ev in events:
        last = max(last, int(ev.get("occurred_at", 0)))
        if ev.get("type") != "lane.status":
            continue
        key, t = lane_key(ev), int(ev["occurred_at"])
        prev = open_.pop(key, None)
        if prev is not None:
            close(prev[0], prev[1], t)
        if ev["status"] != "normal":
            open_[key] = (ev, max(t, int(ev.get("valid_from") or t)))
    for ev, start in open_.values():
        close(ev, start, last)
    return out


class Truth:
    """Actual delivery instants for shipments, seeded and policy-independent."""

    def __init__(self, network: Network, disruptions: Iterable[Disruption], seed: int,
                 lane_bias: float = 0.0) -> None:
        if not (math.isfinite(lane_bias) and lane_bias >= 0):
            raise ValueError(f"Truth: lane_bias must be a finite number >= 0; got {lane_bias!r}")
        self.network = network
        self.seed = int(seed)
        self.lane_bias = float(lane_bias)
        self.disruptions = tuple(disruptions)
        self.mu, self.sigma = lognormal_params(network.lane_transit_mean, network.lane_transit_p90)
        if lane_bias > 0:
            z = np.array([_NORMAL.inv_cdf(self._hash(f"lane|{o}|{d}|{s}"))
                          for o, d, s in np.ndindex(*self.mu.shape)]).reshape(self.mu.shape)
            self.mu = self.mu + lane_bias * z - lane_bias * lane_bias / 2.0
        self._svc = [(s.carrier, s.service) for s in network.services]

    def learned_network(self) -> Network:
        """The network as perfectly learned delivery outcomes would describe it: every lane's
        true mean and p90 (the network's moved by the lane factor), disruptions and single
        parcels' luck aside. The ceiling of learning lanes from delivered orders (issue 3)."""
        mu0, _ = lognormal_params(self.network.lane_transit_mean, self.network.lane_transit_p90)
        factor = np.exp(self.mu - mu0)
        net = copy.copy(self.network)
        for name in ("lane_transit_mean", "lane_transit_p90"):
            a = getattr(self.network, name) * factor
            a.flags.writeable = False
            setattr(net, name, a)
        net.version = f"{self.network.version}+learned"
        return net

    def _hash(self, key: str) -> float:
        data = f"{self.seed}|{key}".encode()
        h = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
        return (h + 0.5) / 2.0**64

    def uniform(self, order_id: str, node: int, service: int, dest_region: int) -> float:
        """The shipment's draw in (0, 1): a hash, so every policy gets the same one."""
        return self._hash(f"{order_id}|{self.network.nodes[node].id}|"
                          f"{self.network.services[service].id}|{dest_region}")

    def transit_days(self, origin: int, dest: int, service: int, u: float) -> float:
        """The lane's lognormal quantile at ``u`` (NaN for a lane the service does not cover)."""
        mu, sigma = self.mu[origin, dest, service], self.sigma[origin, dest, service]
        return math.exp(mu + sigma * _NORMAL.inv_cdf(u))

    def handover_ms(self, node: int, planned_ms: int) -> int:
        net = self.network
        return round(ready_ms(int(planned_ms), float(net.node_utc_offset[node]),
                              float(net.node_cutoff_hour[node]),
                              float(net.node_handling_hours[node])))

    def delivered_ms(self, order_id: str, node: int, service: int, dest_region: int,
                     planned_ms: int) -> int:
        """When the shipment of ``order_id`` from ``node`` by ``service`` really arrives."""
        start = self.handover_ms(node, planned_ms)
        u = self.uniform(order_id, node, service, dest_region)
        return round(self._arrival(node, service, dest_region, start, u))

    def miss_probability(self, node: int, service: int, dest_region: int, planned_ms: int,
                         promise_ms: int) -> float:
        """P(the shipment really arrives after ``promise_ms``) over the lane's true transit:
        what a planner that knew every lane perfectly, but no parcel's luck, would expect.

        Arrival grows with the parcel's draw u, so the miss probability is 1 - the largest u
        that still arrives in time: closed form without outages, bisection with them.
        """
        origin = int(self.network.node_region[node])
        mu, sigma = self.mu[origin, dest_region, service], self.sigma[origin, dest_region, service]
        if not math.isfinite(mu):
            return 1.0
        start = self.handover_ms(node, planned_ms)
        if not any(x.outage for x in self._hits(origin, dest_region, service)):
            slack = promise_ms - self._arrival(node, service, dest_region, start, None)
            if slack <= 0:
                return 1.0
            days = slack / MS_PER_DAY
            if sigma <= 0:
                return float(math.exp(mu) > days)
            return 1.0 - _NORMAL.cdf((math.log(days) - mu) / sigma)
        lo, hi = 0.0, 1.0  # arrival(lo) on time, arrival(hi) late (bounds of the draw)
        if self._arrival(node, service, dest_region, start, 1e-12) > promise_ms:
            return 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if self._arrival(node, service, dest_region, start, mid) > promise_ms:
                hi = mid
            else:
                lo = mid
        return 1.0 - lo

    def _hits(self, origin: int, dest_region: int, service: int) -> list[Disruption]:
        if not self.disruptions:
            return []
        carrier, svc = self._svc[service]
        o, d = self.network.regions[origin], self.network.regions[dest_region]
        return [x for x in self.disruptions if x.covers(carrier, svc, o, d)]

    def _arrival(self, node: int, service: int, dest_region: int, start: int,
                 u: float | None) -> float:
        """Arrival in ms of a parcel handed over at ``start`` whose draw is ``u`` (None: no
        transit at all, only the scripted delays)."""
        origin = int(self.network.node_region[node])
        days = 0.0 if u is None else self.transit_days(origin, dest_region, service, u)
        end = start + days * MS_PER_DAY
        hit = self._hits(origin, dest_region, service)
        for x in hit:
            if not x.outage and x.start_ms <= start < x.end_ms:
                end += x.delay_hours * MS_PER_HOUR
        for x in sorted((x for x in hit if x.outage), key=lambda x: x.start_ms):
            if x.start_ms < end and x.end_ms > start:  # stopped from then until it ends
                end += x.end_ms - max(start, x.start_ms)
        return end
