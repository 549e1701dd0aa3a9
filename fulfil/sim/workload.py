"""Seeded, Kafka-free generators of the simulator's events.

`Workload.events_at(t0, t1)` returns every event due in the window ``[t0, t1)`` (offsets in
seconds from the start of the paced stream) as ``SimEvent(topic, key, value, tag)``. ``value`` is a
*template*: the event's JSON without its closing brace, ending in ``"occurred_at":``. The
publisher calls `stamp(value, now_ms)` just before producing, so ``occurred_at`` is the wall clock
at publish time (latency is measured from it) while everything costly (drawing, dict building,
orjson) happens here. Every value, broken ones included, is finished the same way.

Determinism: order ``n`` is due when the cumulative offered rate reaches ``n`` and its content
comes from a block RNG seeded by ``(seed, n // BLOCK)``, so a seed fixes the whole stream however
the windows are cut. Stateful parts (inventory versions, follow-up cancels) require contiguous
windows, which `events_at` enforces.

Follow-ups (``order.address_changed`` 0.5-10 s, ``order.cancelled`` 1-20 s after their order)
that would fall after the end of the run are not sent, so short runs carry fewer of them than the
configured rates; every one refers to an order sent earlier in the stream.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, NamedTuple

import numpy as np
import orjson

from fulfil.sim.catalogue import Catalogue, initial_inventory, resolve_nodes, stock_plan
from fulfil.sim.destinations import Destinations
from fulfil.sim.events import (
    OCCURRED_AT_TAIL,
    SimEvent,
    _broken,
    invalid_tag,
    stamp,
    template,
)
from fulfil.sim.scenario import (
    AbnormalOrders,
    Arrivals,
    CarrierOutage,
    LaneDelay,
    Scenario,
    StockOut,
    Surge,
)
from operators.network import Network
from schemas.enums import CarrierEventType, InventoryEventType, LaneStatus, OrderEventType
from schemas.topics import TopicName, key_for

__all__ = [
    "OCCURRED_AT_TAIL",
    "SimEvent",
    "Workload",
    "initial_inventory",
    "invalid_tag",
    "stamp",
]

BLOCK = 2048  # orders drawn per RNG block
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_SLA_DAYS = {"standard": 5, "silver": 4, "gold": 3, "vip": 2}
_PRIORITY = {"standard": 0, "silver": 0, "gold": 1, "vip": 2}
_CROSSBORDER_EXTRA_DAYS = 7
_PROMISE_HOUR = 18  # promises are "by 18:00 local"
_CREATED, _CANCELLED, _ADDRESS = (
    OrderEventType.CREATED.value, OrderEventType.CANCELLED.value,
    OrderEventType.ADDRESS_CHANGED.value,
)  # fmt: skip
_SNAPSHOT, _ADJUSTED = InventoryEventType.SNAPSHOT.value, InventoryEventType.ADJUSTED.value
_LANE = CarrierEventType.LANE_STATUS.value



def promise_ms(event_ms: Any, days: Any, utc_offset_hours: float) -> Any:
    """``event_ms + days``, rounded up to the next 18:00 local (a courier's end of day).

    Works on ints and on int64 arrays alike (the workload computes a whole window at once).
    """
    off = int(utc_offset_hours * _HOUR_MS)
    local = event_ms + days * _DAY_MS + off
    cutoff = local - local % _DAY_MS + _PROMISE_HOUR * _HOUR_MS
    cutoff = cutoff + (cutoff < local) * _DAY_MS
    return cutoff - off


# ---------------------------------------------------------------- the workload


class Workload:
    """The event stream of one scenario run, generated window by window.

    ``start_ms`` anchors offsets to the wall clock for timestamps inside the events
    (promised_by, valid_until) and for `ground_truth`; the publisher sets it (`anchor`) to the
    instant its paced stream starts. The default (the scenario's sim start) keeps tests
    deterministic.
    """

    def __init__(
        self,
        network: Network,
        catalogue: Catalogue,
        scenario: Scenario,
        *,
        start_ms: int | None = None,
    ) -> None:
        self.network, self.catalogue, self.scenario = network, catalogue, scenario
        self.start_ms = scenario.sim_start_ms if start_ms is None else int(start_ms)
        self._seed = f"{scenario.seed:x}"
        sc = scenario
        self._channels = [c for c, _ in sc.channel_mix]
        self._channel_p = np.array([p for _, p in sc.channel_mix])
        self._tiers = [t for t, _ in sc.tier_mix]
        self._cdfs = {
            name: _cdf(np.array(probs))
            for name, probs in (
                ("tier", [p for _, p in sc.tier_mix]), ("lines", sc.lines), ("qty", sc.qty),
                ("invalid", [p for _, p in sc.invalid_mix]), ("region", network.region_demand),
            )
        }  # fmt: skip
        self._invalid_kinds = [k for k, _ in sc.invalid_mix]
        self._channel_cdf = _cdf(self._channel_p)
        chs = self._channels
        self._crossborder = chs.index("crossborder") if "crossborder" in chs else -1
        self._sla_days = np.array([_SLA_DAYS.get(t, 5) for t in self._tiers])
        self._priority = np.array([_PRIORITY.get(t, 0) for t in self._tiers])
        self._sku_cdf = catalogue.cdf
        self._skus = catalogue.skus
        self._weights = catalogue.weight_g.tolist()
        self._price_np = np.asarray(catalogue.price)
        # Line dicts are shared by every order that has the same (position, sku, qty).
        self._line_cache = [
            [[_line(j, sku, q, w) for q in range(len(sc.qty) + 1)]
             for sku, w in zip(self._skus, self._weights, strict=True)]
            for j in range(len(sc.lines))
        ]  # fmt: skip
        self._single_line = [[[d] for d in per_q] for per_q in self._line_cache[0]]
        self._dests = Destinations(network, self._cdfs["region"], sc.coords_share)
        self._surges = any(isinstance(d, Surge) for d in sc.disruptions)
        self.arrivals = Arrivals(scenario)
        self._plan = stock_plan(network, catalogue, scenario)
        self._versions: dict[tuple[int, int], int] = dict.fromkeys(self._plan, 1)
        self._out: set[tuple[int, int]] = set()
        self._carriers = sorted({s.carrier for s in network.services})
        self._schedule = self._build_schedule()
        self._next_scheduled = 0
        self._follow: list[tuple[float, int, int, Any]] = []  # (t, n, kind, payload) heap
        self._blocks: dict[int, _Block] = {}
        self._cursor = 0.0
        self._n_next = 0
        self._ids = {"i": 0, "l": 0}

    # ------------------------------------------------------------ arrivals

    @property
    def total_orders(self) -> int:
        """Orders (valid and invalid) the whole run offers."""
        return self.arrivals.total

    def expected_orders(self, t0: float, t1: float) -> int:
        """Orders (valid and invalid) due in ``[t0, t1)``: the target a publisher must offer."""
        return self.arrivals.count_before(t1) - self.arrivals.count_before(t0)

    # ------------------------------------------------------------ random draws per block

    def _block(self, b: int) -> _Block:
        """Pre-drawn (and pre-built) content of orders ``b*BLOCK .. (b+1)*BLOCK-1``.

        Everything that can be vectorized is: the per-order Python loop in `_orders` only
        assembles dicts from these columns.
        """
        got = self._blocks.get(b)
        if got is not None:
            return got
        if len(self._blocks) > 4:
            self._blocks.clear()
        sc, cd, n = self.scenario, self._cdfs, BLOCK
        rng = np.random.default_rng([sc.seed, 1, b])
        lmax, n_sku = len(sc.lines), len(self._skus)
        skus = np.minimum(np.searchsorted(self._sku_cdf, rng.random((n, lmax)), "right"), n_sku - 1)
        for j in range(1, lmax):  # no sku twice in one order: step to the next one
            for _ in range(j):
                dup = (skus[:, [j]] == skus[:, :j]).any(axis=1)
                skus[dup, j] = (skus[dup, j] + 1) % n_sku
        qty = 1 + np.searchsorted(cd["qty"], rng.random((n, lmax)), side="right")
        u = rng.random((n, 9))
        n_lines = 1 + np.searchsorted(cd["lines"], u[:, 2], side="right")
        used = np.arange(lmax) < n_lines[:, None]
        amount = np.round((self._price_np[skus] * qty * used).sum(axis=1), 2)
        cache, single = self._line_cache, self._single_line  # [pos][sku][qty] -> shared dicts
        lines = [
            single[ks[0]][qs[0]] if nl == 1 else
            [cache[j][k][q] for j, (k, q) in enumerate(zip(ks[:nl], qs[:nl], strict=True))]
            for ks, qs, nl in zip(skus.tolist(), qty.tolist(), n_lines.tolist(), strict=True)
        ]  # fmt: skip
        change = np.where(u[:, 7] < sc.address_change_rate, 0.5 + 9.5 * u[:, 8], -1.0)
        # Arrival times, channel mix at those times and promises: vectorized for the block.
        ts = self.arrivals.times(b * n, (b + 1) * n)
        if self._surges:
            p = sc.channel_factors(ts) * self._channel_p
            cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        else:
            cdf = self._channel_cdf[None, :]
        ch = np.minimum((u[:, [0]] >= cdf).sum(axis=1), len(self._channels) - 1)
        tier = np.searchsorted(cd["tier"], u[:, 1], side="right")
        days = self._sla_days[tier] + np.where(ch == self._crossborder, _CROSSBORDER_EXTRA_DAYS, 0)
        t_ms = self.start_ms + (ts * 1000).astype(np.int64)
        dest = self._dests.draw(rng, n)
        dest2 = self._dests.draw(rng, n)  # the changed-to address, when there is one
        moved = np.nonzero(change >= 0)[0]
        blk = _Block(
            t=ts.tolist(),
            channel=[self._channels[c] for c in ch.tolist()],
            tier=[self._tiers[t] for t in tier.tolist()],
            priority=self._priority[tier].tolist(),
            promised=promise_ms(t_ms, days, sc.utc_offset_hours).tolist(),
            lines=lines,
            amount=amount.tolist(),
            customer=[f"c-{c}" for c in rng.integers(0, 10_000_000, n).tolist()],
            invalid=np.where(
                u[:, 3] < sc.invalid_rate, np.searchsorted(cd["invalid"], u[:, 4], "right"), -1
            ).tolist(),
            cancel=np.where(u[:, 5] < sc.cancel_rate, 1.0 + 19.0 * u[:, 6], -1.0).tolist(),
            change=change.tolist(),
            dest=self._dests.to_dicts(*dest),
            dest2=dict(
                zip(moved.tolist(), self._dests.to_dicts(*(c[moved] for c in dest2)), strict=True)
            ),
        )
        self._blocks[b] = blk
        return blk


    # ------------------------------------------------------------ orders

    def _orders(self, n0: int, n1: int, out: list[tuple[float, SimEvent]]) -> None:
        """Append orders ``n0 .. n1-1`` (and schedule their follow-ups)."""
        while n0 < n1:
            b = n0 // BLOCK
            end = min(n1, (b + 1) * BLOCK)
            self._orders_in_block(self._block(b), n0, end, out)
            n0 = end

    def _orders_in_block(self, blk: _Block, n0: int, n1: int,
                         out: list[tuple[float, SimEvent]]) -> None:  # fmt: skip
        seed, follow, topic, r0 = self._seed, self._follow, TopicName.ORDERS, n0 % BLOCK
        for r in range(r0, r0 + n1 - n0):
            n, t = n0 + r - r0, blk.t[r]
            oid = f"{seed}-{n:09d}"  # also the message key (registry: orders by order_id)
            ev = {
                "type": _CREATED, "event_id": f"{oid}/c", "order_id": oid,
                "channel": blk.channel[r],
                "customer": {"id": blk.customer[r], "tier": blk.tier[r]},
                "priority": blk.priority[r], "promised_by": blk.promised[r],
                "destination": blk.dest[r], "lines": blk.lines[r],
                "value": {"amount": blk.amount[r], "currency": "BRL"},
            }  # fmt: skip
            bad = blk.invalid[r]
            if bad >= 0:
                kind = self._invalid_kinds[bad]
                out.append((t, SimEvent(topic, oid, _broken(ev, kind), invalid_tag(kind))))
                continue
            out.append((t, SimEvent(topic, oid, orjson.dumps(ev)[:-1] + OCCURRED_AT_TAIL,
                                    _CREATED)))  # fmt: skip
            change, cancel = blk.change[r], blk.cancel[r]
            if change >= 0:
                heapq.heappush(follow, (t + change, n, 0, blk.dest2[r]))
            if cancel >= 0:
                heapq.heappush(follow, (t + max(cancel, change + 0.5), n, 1, None))

    def _follow_ups(self, t1: float, out: list[tuple[float, SimEvent]]) -> None:
        follow, seed = self._follow, self._seed
        while follow and follow[0][0] < t1:
            t, n, kind, payload = heapq.heappop(follow)
            oid = f"{seed}-{n:09d}"
            if kind == 0:
                ev = {"type": _ADDRESS, "event_id": f"{oid}/a", "order_id": oid,
                      "destination": payload}  # fmt: skip
            else:
                ev = {"type": _CANCELLED, "event_id": f"{oid}/x", "order_id": oid,
                      "reason": "customer-request"}  # fmt: skip
            topic = TopicName.ORDERS
            out.append((t, SimEvent(topic, key_for(topic, ev), template(ev), ev["type"])))

    # ------------------------------------------------------------ inventory and lanes

    def _build_schedule(self) -> list[tuple[float, int, str, Any]]:
        """Timed non-order events: heartbeats, restocks and disruption starts/ends."""
        sc, dur = self.scenario, self.scenario.duration_s
        items: list[tuple[float, int, str, Any]] = []
        for k in range(math.ceil(dur / sc.heartbeat_interval_s)):
            items.append((k * sc.heartbeat_interval_s, 2, "heartbeat", None))
        for k in range(1, math.ceil(dur / sc.restock_interval_s)):
            items.append((k * sc.restock_interval_s, 3, "restock", k))
        for d in sc.disruptions:
            if isinstance(d, Surge):
                continue
            if isinstance(d, AbnormalOrders):
                for k, t in enumerate(d.times()):
                    if d.pattern == "duplicate":  # the original, then its duplicate
                        items.append((max(0.0, t - d.gap_s), 4, "abnormal", (d, k, False)))
                    items.append((t, 4, "abnormal", (d, k, True)))
                continue
            items.append((d.start_s, 1, "start", d))  # type: ignore[attr-defined]
            if d.end_s is not None:  # type: ignore[attr-defined]
                items.append((d.end_s, 0, "end", d))  # type: ignore[attr-defined]
        items = [it for it in items if it[0] < dur]
        items.sort(key=lambda it: (it[0], it[1]))
        return items

    def _event_id(self, kind: str) -> str:
        self._ids[kind] += 1
        return f"{self._seed}-{kind}{self._ids[kind]}"

    def _inventory(self, t: float, kind: str, j: int, s: int,
                   **fields: Any) -> tuple[float, SimEvent]:  # fmt: skip
        """An inventory event for node j, sku s with the pair's next version."""
        self._versions[(j, s)] += 1
        node, sku = self.network.nodes[j].id, self.catalogue.skus[s]
        ev = {"type": kind, "event_id": self._event_id("i"), "node_id": node, "sku": sku,
              "version": self._versions[(j, s)], **fields}  # fmt: skip
        topic = TopicName.INVENTORY
        return t, SimEvent(topic, key_for(topic, ev), template(ev), kind)

    def _lane(self, t: float, carrier: str, status: str, **fields: Any) -> tuple[float, SimEvent]:
        ev = {"type": _LANE, "event_id": self._event_id("l"), "carrier": carrier,
              "status": status, **fields}  # fmt: skip
        topic = TopicName.CARRIER_STATUS
        return t, SimEvent(topic, key_for(topic, ev), template(ev), _LANE)

    def _scheduled(self, t1: float, out: list[tuple[float, SimEvent]]) -> None:
        sched, sc = self._schedule, self.scenario
        while self._next_scheduled < len(sched) and sched[self._next_scheduled][0] < t1:
            t, _, what, arg = sched[self._next_scheduled]
            self._next_scheduled += 1
            t_ms = self.start_ms + int(t * 1000)
            if what == "heartbeat":
                until = t_ms + int(3 * sc.heartbeat_interval_s * 1000)
                for c in self._carriers:
                    out.append(self._lane(t, c, LaneStatus.NORMAL.value, delay_hours=0,
                                          capacity_factor=1.0, reason="heartbeat",
                                          valid_until=until))  # fmt: skip
            elif what == "restock":
                self._restock(t, arg, out)
            elif what == "abnormal":
                out.append(self._abnormal(t, t_ms, *arg))
            elif isinstance(arg, StockOut):
                s = min(arg.sku_rank, len(self.catalogue)) - 1
                for j in resolve_nodes(self.network, arg.nodes):
                    if (j, s) not in self._plan:
                        continue
                    if what == "start":
                        self._out.add((j, s))
                    else:
                        self._out.discard((j, s))
                    qty = 0 if what == "start" else self._plan[(j, s)]
                    out.append(self._inventory(t, _SNAPSHOT, j, s, on_hand=qty))
            else:
                out.append(self._lane_disruption(t, t_ms, what, arg))

    def _lane_disruption(self, t: float, t_ms: int, what: str,
                         d: CarrierOutage | LaneDelay) -> tuple[float, SimEvent]:  # fmt: skip
        """The lane.status of a scripted outage/delay at its start, or "normal" at its end."""
        if what == "end":
            status, factor, delay, reason = LaneStatus.NORMAL, 1.0, 0.0, "scripted-recovery"
        elif isinstance(d, CarrierOutage):
            status, factor, delay, reason = LaneStatus.OUTAGE, 0.0, 0.0, "scripted-outage"
        else:
            status, factor, delay, reason = LaneStatus.DELAYED, 1.0, d.delay_hours, "scripted-delay"
        extra = {} if what == "end" or d.end_s is None else {
            "valid_until": self.start_ms + int(d.end_s * 1000)}  # fmt: skip
        return self._lane(t, d.carrier, status.value, dest_region=d.dest_region, delay_hours=delay,
                          capacity_factor=factor, reason=reason, **extra)  # fmt: skip

    def _abnormal(self, t: float, t_ms: int, d: AbnormalOrders, k: int,
                  flagged: bool) -> tuple[float, SimEvent]:  # fmt: skip
        """The k-th order of a scripted `AbnormalOrders` (for a duplicate: the original when
        not `flagged`); both halves of a duplicate draw the same customer, items and address."""
        i = self.scenario.disruptions.index(d)
        rng = np.random.default_rng([self.scenario.seed, 3, i, k])
        dest = self._dests.to_dicts(*self._dests.draw(rng, 1))[0]
        s = min(d.sku_rank, len(self._skus)) - 1 if d.pattern == "quantity" else int(
            rng.integers(0, min(50, len(self._skus))))
        qty = d.qty if d.pattern == "quantity" else 1
        if d.pattern == "address" and dest.get("postal_code"):
            where = self.network.locate({"postal_code": dest["postal_code"]})
            regions = self.network.regions
            r = where[2] if where is not None else 0
            dest = {**dest, "region": regions[(r + 1 + int(rng.integers(0, len(regions) - 1)))
                                              % len(regions)]}
        second = d.pattern == "duplicate" and flagged
        oid = f"{self._seed}-abn{i}-{k}{'b' if second else ''}"
        channel = self._channels[(1 if second else 0) % len(self._channels)]
        ev = {"type": _CREATED, "event_id": f"{oid}/c", "order_id": oid, "channel": channel,
              "customer": {"id": f"c-abn{i}-{k}", "tier": "standard"}, "priority": 0,
              "promised_by": int(promise_ms(t_ms, 5, self.scenario.utc_offset_hours)),
              "destination": dest, "lines": [_line(0, self._skus[s], qty, self._weights[s])],
              "value": {"amount": round(float(self._price_np[s]) * qty, 2), "currency": "BRL"}}
        topic = TopicName.ORDERS
        return t, SimEvent(topic, oid, template(ev), _CREATED)

    def _restock(self, t: float, k: int, out: list[tuple[float, SimEvent]]) -> None:
        """Receipts for popular-weighted node x sku pairs (never for a pair that is stocked out)."""
        rng = np.random.default_rng([self.scenario.seed, 2, k])
        n = self.scenario.restock_batch
        skus = np.minimum(np.searchsorted(self._sku_cdf, rng.random(n), side="right"),
                          len(self._skus) - 1).tolist()  # fmt: skip
        nodes = rng.integers(0, len(self.network.nodes), n).tolist()
        seen: set[tuple[int, int]] = set()
        for j, s in zip(nodes, skus, strict=True):
            pair = (j, s)
            if pair not in self._plan or pair in self._out or pair in seen:
                continue
            seen.add(pair)
            delta = max(1, math.ceil(self._plan[pair] * 0.25))
            out.append(self._inventory(t, _ADJUSTED, j, s, delta=delta, reason="receipt"))

    # ------------------------------------------------------------ public

    def anchor(self, start_ms: int) -> None:
        """Pin offset 0 to the wall clock ``start_ms``; only before the first `events_at`
        (the publisher builds the workload first, then anchors it at its first tick)."""
        if self._cursor > 0 or self._blocks:
            raise RuntimeError("Workload.anchor: events were already generated")
        self.start_ms = int(start_ms)

    def events_at(self, t0: float, t1: float) -> list[SimEvent]:
        """Every event due in ``[t0, t1)``, in due order; windows must be contiguous."""
        if abs(t0 - self._cursor) > 1e-9:
            raise ValueError(f"events_at: windows must be contiguous; expected t0={self._cursor}, "
                             f"got {t0}")  # fmt: skip
        t1 = min(max(t1, t0), self.scenario.duration_s)
        self._cursor = t1
        out: list[tuple[float, SimEvent]] = []
        n1 = self.arrivals.count_before(t1)
        self._orders(self._n_next, n1, out)
        self._n_next = max(self._n_next, n1)
        self._follow_ups(t1, out)
        self._scheduled(t1, out)
        out.sort(key=_first)
        return [e for _, e in out]

    @property
    def done(self) -> bool:
        """True once the whole duration has been generated."""
        return self._cursor >= self.scenario.duration_s

    def ground_truth(self) -> list[dict[str, Any]]:
        """The scripted disruptions with wall-clock windows (ms) and resolved nodes/skus."""
        out = []
        for d in self.scenario.disruptions:
            row = d.to_dict()
            start = self.start_ms + int(d.start_s * 1000)  # type: ignore[attr-defined]
            end = d.end_s  # type: ignore[attr-defined]
            row["start_ms"] = start
            row["end_ms"] = None if end is None else self.start_ms + int(end * 1000)
            if isinstance(d, StockOut):
                s = min(d.sku_rank, len(self.catalogue)) - 1
                row["sku"] = self.catalogue.skus[s]
                nodes = resolve_nodes(self.network, d.nodes)
                row["node_ids"] = [self.network.nodes[j].id for j in nodes if (j, s) in self._plan]
            if isinstance(d, AbnormalOrders):  # the orders that should be flagged
                i, b = self.scenario.disruptions.index(d), "b" if d.pattern == "duplicate" else ""
                row["order_ids"] = [f"{self._seed}-abn{i}-{k}{b}" for k in range(d.count)]
            out.append(row)
        return out


def _first(item: tuple[float, SimEvent]) -> float:
    return item[0]


def _cdf(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(np.asarray(p, dtype=np.float64) / np.sum(p))
    c[-1] = 1.0
    return c


class _Block(NamedTuple):
    """Pre-drawn content of BLOCK consecutive orders (row r = order b*BLOCK + r)."""

    t: list[float]  # due offset (s)
    channel: list[str]  # drawn from the mix in force at t (surges change it)
    tier: list[str]
    priority: list[int]
    promised: list[int]  # promised_by (wall ms)
    lines: list[list[dict[str, Any]]]
    amount: list[float]
    customer: list[str]
    invalid: list[int]  # index into invalid_mix, -1 = valid
    cancel: list[float]  # cancel delay in s, -1 = none
    change: list[float]  # address-change delay in s, -1 = none
    dest: list[dict[str, Any]]
    dest2: dict[int, dict[str, Any]]  # row -> changed-to destination


def _line(j: int, sku: str, qty: int, weight_g: int) -> dict[str, Any]:
    return {"line_id": str(j + 1), "sku": sku, "qty": qty, "weight_g": weight_g}
