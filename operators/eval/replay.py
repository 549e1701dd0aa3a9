"""Offline, deterministic replay of an event stream through one routing policy.

Why this equals what the engine does (``dataflows/router.py``), step by step:

- **Batches**: the engine plans what one Kafka fetch brings; the replay cuts the stream into
  windows of ``batch_ms`` of event time (at most ``batch_size`` orders each, the engine's
  ``batch_size``) and plans each at the window's end (``now``), i.e. within ``batch_ms`` of
  arrival, where the engine decides within a fraction of a second.
- **Order of effects** inside a window: inventory, carrier and pick-up events first (their
  flows run beside routing), then the order events, in waves in which no order repeats (the
  router's ``waves``); per wave cancellations and address changes release the order's
  reservations first, then everything to (re)plan is planned together.
- **Planning**: ``Planner.prepare`` then the policy's ``plan`` on ATP and load read from the
  ledger mirror (``LedgerMirror``: the ledger's Lua rules), with lane health built by
  ``operators.lanes`` from the same lane.status events, exactly as the router does.
- **Reservation and re-plans**: the plans are reserved; orders the batch allocation could not fit
  (``exhausted-in-batch``) are re-planned on fresh stock, most urgent first, for up to three
  rounds, then reported ``no-stock`` (the router's ``MAX_RACE_ROUNDS``). With one reader of the
  ledger no race can be lost, which is what the engine sees with one worker; with several,
  reservations that lose a race are re-planned against fresh stock, so the end state differs
  only when stock runs out at the same instant.
- **Checked**: ``tests/test_eval/test_engine_equivalence.py`` routes a batch with the production
  ``Router`` on a real redis-server and replays it here: every decision is identical.
- **Not replayed**: business rules (no rules file is in force in an evaluation), approvals,
  merged delivery (``operators/consolidation.py``), predictive re-routing of open orders
  (``order.reroute_requested`` events are counted with ``unknown_order_events``), and dead
  letters (invalid events are counted by the caller that read the stream).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from operators.candidates import LaneArrays
from operators.eval.ledger import LedgerMirror, day_of
from operators.eval.policies import Policy
from operators.lanes import LaneHealth, health_arrays, lane_key, update_lane
from operators.orders import OrderData, order_from_created, with_destination
from operators.planner import EXHAUSTED, Plan, Unroutable

__all__ = ["MAX_ROUNDS", "OrderState", "ReplayResult", "Replayer", "replay", "windows"]

MAX_ROUNDS = 3  # == dataflows.router.MAX_RACE_ROUNDS
# Without rules nothing is held, so approvals and rejections are refused like the router's
# invalid-state; these two release the order's stock and change it.
_RELEASING = ("order.cancelled", "order.address_changed")


@dataclass(slots=True)
class OrderState:
    """An order's latest decision under one policy."""

    order: OrderData
    version: int
    plan: Plan | None
    reason: str  # "" when routed, else the unroutable reason
    planned_ms: int
    cancelled: bool = False


@dataclass
class ReplayResult:
    """Every order's final state, plus what the replay set aside."""

    policy: str
    orders: dict[str, OrderState] = field(default_factory=dict)
    unknown_order_events: int = 0
    batches: int = 0
    first_ms: int = 0
    last_ms: int = 0


def windows(events: Sequence[Mapping[str, Any]], batch_ms: int
            ) -> Iterator[tuple[int, list[Mapping[str, Any]]]]:
    """(window end ms, events) for consecutive ``batch_ms`` windows of a time-ordered stream;
    empty windows are skipped."""
    if not events:
        return
    t0 = int(events[0]["occurred_at"])
    cur: list[Mapping[str, Any]] = []
    w_cur = 0
    for ev in events:
        w = (int(ev["occurred_at"]) - t0) // batch_ms
        if w != w_cur and cur:
            yield t0 + (w_cur + 1) * batch_ms, cur
            cur = []
        w_cur = w
        cur.append(ev)
    if cur:
        yield t0 + (w_cur + 1) * batch_ms, cur


def _waves(items: list[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive runs in which no order id repeats (the router's ``waves``)."""
    wave: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for ev in items:
        oid = ev["order_id"]
        if oid in seen:
            yield wave
            wave, seen = [], set()
        wave.append(ev)
        seen.add(oid)
    if wave:
        yield wave


class Replayer:
    """One policy's replay state: ledger mirror, lane records, every order's latest decision.

    ``replay`` drives it window by window; the hindsight optimum reuses its side-event handling
    to see the same stock and lane health."""

    def __init__(self, policy: Policy, batch_size: int) -> None:
        self.policy = policy
        self.planner = policy.planner
        net = self.planner.network
        self.network = net
        self.ledger = LedgerMirror([n.id for n in net.nodes])
        self.batch_size = batch_size
        self.lane_state: dict[str, LaneHealth] = {}
        self._lane_dirty = True
        self._lane_minute = -1
        self._lanes: LaneArrays | None = None
        self.result = ReplayResult(policy.name)

    # -- side streams --------------------------------------------------------------------------

    def side_event(self, ev: Mapping[str, Any]) -> None:
        kind = ev["type"]
        if kind in ("inventory.snapshot", "inventory.adjusted"):
            snap = kind == "inventory.snapshot"
            self.ledger.apply_inventory(str(ev["node_id"]), str(ev["sku"]), int(ev["version"]),
                                        snap, int(ev["on_hand"] if snap else ev["delta"]))
        elif kind == "lane.status":
            key = lane_key(ev)
            new, changed = update_lane(self.lane_state.get(key), ev)
            if new is not None:
                self.lane_state[key] = new
            self._lane_dirty = self._lane_dirty or changed is not None
        elif kind == "shipment.tracking" and ev.get("status") == "picked_up":
            self.ledger.ship(str(ev["order_id"]), str(ev["node_id"]))

    def lanes(self, now: int) -> LaneArrays:
        """Lane health now; rebuilt on a change or each minute (validity windows expire)."""
        minute = now // 60_000
        if self._lanes is None or self._lane_dirty or minute != self._lane_minute:
            net = self.network
            self._lanes = LaneArrays(*health_arrays(self.lane_state.values(), net.region_index,
                                                    net.service_index, now))
            self._lane_dirty, self._lane_minute = False, minute
        return self._lanes

    # -- orders --------------------------------------------------------------------------------

    def wave(self, wave: list[Mapping[str, Any]], now: int) -> None:
        states = self.result.orders
        pending: list[tuple[OrderData, int]] = []
        for ev in wave:
            oid, kind = str(ev["order_id"]), ev["type"]
            st = states.get(oid)
            if kind == "order.created":
                if st is None:  # a second created is a replay: the engine re-emits, no change
                    pending.append((order_from_created(ev), 1))
                continue
            if st is None or st.cancelled or kind not in _RELEASING:
                self.result.unknown_order_events += 1
                continue
            self.ledger.release(oid)
            if kind == "order.cancelled":
                st.cancelled, st.version = True, st.version + 1
            else:
                pending.append((with_destination(st.order, ev["destination"]), st.version + 1))
        for i in range(0, len(pending), self.batch_size):
            self.plan(pending[i:i + self.batch_size], now)

    def plan(self, pending: list[tuple[OrderData, int]], now: int) -> None:
        day = day_of(now)
        lanes = self.lanes(now)
        for round_no in range(MAX_ROUNDS):
            prep = self.planner.prepare([o for o, _ in pending])
            atp, load = self.ledger.availability(prep.skus, day)
            plans = self.policy.plan(prep, atp, load, lanes, now)
            self.result.batches += 1
            retry: list[tuple[OrderData, int]] = []
            last = round_no + 1 == MAX_ROUNDS
            for (order, version), plan in zip(pending, plans, strict=True):
                if isinstance(plan, Unroutable) and plan.reason == EXHAUSTED:
                    if not last:
                        retry.append((order, version))
                        continue
                    plan = Unroutable("no-stock")
                if isinstance(plan, Plan):
                    parts = {sh.node: [(order.lines[i].sku, order.lines[i].qty)
                                       for i in sh.lines] for sh in plan.shipments}
                    if not self.ledger.reserve(order.order_id, parts, day):
                        if not last:
                            retry.append((order, version))
                            continue
                        plan = Unroutable("lost-races")
                routed = isinstance(plan, Plan)
                self.result.orders[order.order_id] = OrderState(
                    order, version, plan if routed else None,
                    "" if routed else plan.reason, now)  # type: ignore[union-attr]
            if not retry:
                return
            pending = sorted(retry, key=lambda p: -p[0].priority)


def replay(events: Sequence[Mapping[str, Any]], policy: Policy, *, batch_ms: int = 1000,
           batch_size: int = 1000) -> ReplayResult:
    """Replay a time-ordered, validated stream through ``policy`` (see the module docstring)."""
    if batch_ms < 1 or batch_size < 1:
        raise ValueError(f"replay: batch_ms and batch_size must be >= 1; got {batch_ms}, "
                         f"{batch_size}")
    r = Replayer(policy, batch_size)
    if events:
        r.result.first_ms = int(events[0]["occurred_at"])
        r.result.last_ms = int(events[-1]["occurred_at"])
    for now, evs in windows(events, batch_ms):
        orders = []
        for ev in evs:
            if str(ev["type"]).startswith("order."):
                orders.append(ev)
            else:
                r.side_event(ev)
        for wave in _waves(orders):
            r.wave(wave, now)
    return r.result
