"""The routing step: a batch of order events in, decisions and dead letters out.

This is where pure planning (`operators.planner`) meets durable state (`state.*`). Per batch:

1. decode + validate every event; failures become dead letters;
2. split into *waves* in which each order appears once (events of one order stay in order);
3. per wave: read the orders' records (one round trip), release what cancels free, apply the
   business rules, read availability for the wave's skus (one round trip), plan all new routings
   in one kernel call, write the planned records *before* reserving (so a crash can never leave
   a reservation nobody knows about), reserve (one Lua call per node), release what re-routes
   replaced once their new plan is held, and re-plan the orders that lost a race against fresh
   availability (a few rounds at most);
4. emit one decision per event (re-emitting the recorded decision for replays, byte for byte).

Idempotency rests on two things: reservations are idempotent by reservation id per node, and
the order book holds the plan before it is reserved. See docs/DESIGN.md, state/orderbook.py and
docs/predictive.md; the re-planning policies (rules, moves, joins) are in router_moves.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from dataflows.connectors import KafkaConnectorError, OutMessage, RawMessage
from dataflows.router_flags import OrderFlagger
from dataflows.router_moves import Pending, PlanMoves, requests_for, state_problem
from dataflows.router_requests import CUSTOMER_ASKS, Ask, CustomerRequests
from fulfil import metrics
from fulfil.config import Config
from operators.candidates import LaneArrays
from operators.consolidation import SEPARATE, ship_to, ships_alone
from operators.deadletters import dead_letter
from operators.decisions import (
    cancelled_decision,
    routed_decision,
    unroutable_decision,
)
from operators.lanes import health_arrays
from operators.model_online import apply_update
from operators.network import Network
from operators.orders import (
    OrderData,
    OrderRecord,
    group_lines,
    order_from_created,
    reservation_id,
    with_destination,
)
from operators.planner import EXHAUSTED, Plan, Planner, Unroutable
from operators.rules import RuleSet, empty_ruleset
from schemas.enums import DecisionStatus, OrderEventType
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate
from state.availability import AvailabilityCache
from state.lanes import LaneBoard, transit_board
from state.ledger import Ledger, ReserveRequest, ReserveResult
from state.orderbook import OrderBook

MAX_RACE_ROUNDS = 3
STATE_SAMPLE_MS = 5_000  # state-size gauges are refreshed at most this often
log = logging.getLogger("fulfil.router")
#: Failures of the infrastructure, not of an event: these stop the worker (it resumes from its
#: snapshot) instead of turning events into dead letters.
_INFRA_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                 redis.exceptions.BusyLoadingError, KafkaConnectorError)
_ROUTED = metrics.DECISIONS.labels(status="routed")
_UNROUTABLE = metrics.DECISIONS.labels(status="unroutable")
Out = tuple[str, OutMessage]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


def dead_out(dlq_topic: str, raw: RawMessage, step: str, code: str, message: str, now: int,
             field: str = "", rule: str = "") -> Out:
    """A dead-letter sink item for `raw` (keyed by its source topic), counted in the metrics."""
    metrics.DEAD_LETTERS.labels(topic=raw.topic, code=code).inc()
    value = dead_letter(
        topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
        payload=raw.value, step=step, code=code, message=message, at_ms=now,
        field=field, rule=rule,
    )
    return raw.topic, OutMessage(dlq_topic, raw.topic.encode(), value)


def waves(items: Sequence[tuple[RawMessage, dict]]) -> Iterator[list[tuple[RawMessage, dict]]]:
    """Consecutive runs in which no order id repeats, so a wave can be handled in bulk."""
    wave: list[tuple[RawMessage, dict]] = []
    seen: set[str] = set()
    for item in items:
        oid = item[1]["order_id"]
        if oid in seen:
            yield wave
            wave, seen = [], set()
        wave.append(item)
        seen.add(oid)
    if wave:
        yield wave


class Router(PlanMoves, CustomerRequests):
    """Routes batches of order events; one instance per bytewax worker thread."""

    def __init__(self, config: Config, network: Network, client: Any,
                 rules: Callable[[], RuleSet] = empty_ruleset) -> None:
        """`rules` returns the business rules in force (read once per wave; hot-reloaded)."""
        self.config = config
        self._rules = rules
        self.network = network
        self.ledger = Ledger(client, prefix=config.redis_prefix, observe=metrics.observe_redis)
        self.book = OrderBook(self.ledger, config.redis_prefix, config.decision_ttl_days * 86400)
        self.lanes = LaneBoard(client, config.redis_prefix, config.lane_refresh_ms)
        self.transit = transit_board(client, config.redis_prefix, config.lane_refresh_ms)
        self.planner = Planner(network, config)
        self.node_ids = [n.id for n in network.nodes]
        self.stock = AvailabilityCache(self.ledger, self.node_ids, config.availability_ttl_ms)
        self.decisions_topic = config.topic("decisions")
        self.dlq_topic = config.topic("dead-letters")
        self.approvals_topic = config.topic("approvals")
        self.flagger = OrderFlagger(config, network, self.ledger)  # abnormal-order flags
        self._rule_hits: dict[str, Any] = {}  # rule id -> its counter (labels() is slow)
        self._sampled_at = 0
        #: Per-decision metrics gathered over a batch, recorded once at its end (a counter
        #: increment or a histogram observation per decision took ~6% of the step): latencies
        #: in ms, then routed and unroutable counts.
        self._latencies: list[int] = []
        self._counts = [0, 0]
        self._lane_version = -1
        self._lane_minute = -1
        self._lane_arrays: LaneArrays | None = None
        self._base_model = self.planner.model
        self._transit_version = 0
        self._init_requests(client)  # merge/split requests, node closures (router_requests.py)

    # -- outputs -------------------------------------------------------------------------------

    def _dead(self, raw: RawMessage, step: str, code: str, message: str, now: int,
              field_: str = "", rule: str = "") -> Out:
        return dead_out(self.dlq_topic, raw, step, code, message, now, field_, rule)

    # -- entry point ---------------------------------------------------------------------------

    def route(self, batch: list[RawMessage]) -> list[Out]:
        now = now_ms()
        out: list[Out] = []
        parsed: list[tuple[RawMessage, dict]] = []
        for raw in batch:
            try:
                event = decode_and_validate("order_event", raw.value or b"")
            except ValidationError as exc:
                out.append(self._dead(raw, "validate-orders", exc.code, exc.message, now,
                                      exc.field, exc.rule))
                continue
            parsed.append((raw, event))
        metrics.EVENTS_IN.labels(topic="orders").inc(len(batch))
        for wave in waves(parsed):
            out.extend(self._route_isolated(wave, now))
        self._record_metrics()
        if now - self._sampled_at >= STATE_SAMPLE_MS:
            self._sampled_at = now
            metrics.STATE_ENTRIES.labels(state="availability-cache-skus").set(len(self.stock))
            metrics.STATE_ENTRIES.labels(state="lane-board-lanes").set(len(self.lanes.current()))
        return out

    def _record_metrics(self) -> None:
        if self._latencies:
            metrics.EVENT_TO_DECISION.observe_many(np.asarray(self._latencies) / 1000.0)
            self._latencies.clear()
        routed, unroutable = self._counts
        if routed:
            _ROUTED.inc(routed)
        if unroutable:
            _UNROUTABLE.inc(unroutable)
        self._counts = [0, 0]

    def _route_isolated(self, wave: list[tuple[RawMessage, dict]], now: int) -> list[Out]:
        """Route a wave; if it fails for a reason that is not the infrastructure's, retry its
        events one by one and set aside only the one that fails (code `internal`).

        A poison event must not stop the stream, and a bug must not drop its neighbours. Redis
        or Kafka being unreachable is different: that raises, the worker stops, and it resumes
        from its last snapshot (everything it did is idempotent).
        """
        try:
            return self._route_wave(wave, now)
        except _INFRA_ERRORS:
            raise
        except Exception as exc:
            if len(wave) > 1:
                return [o for item in wave for o in self._route_isolated([item], now)]
            raw, ev = wave[0]
            log.exception("order event %s of %s failed; set aside", ev.get("event_id"),
                          ev.get("order_id"), extra={"order_id": ev.get("order_id"),
                                                     "event_id": ev.get("event_id"),
                                                     "step": "route-orders"})
            return [self._dead(raw, "route-orders", "internal",
                               f"{type(exc).__name__}: {exc}"[:500], now)]

    # -- one wave ------------------------------------------------------------------------------

    def _route_wave(self, wave: list[tuple[RawMessage, dict]], now: int) -> list[Out]:
        out: list[Out] = []
        day = utc_day(now)
        created = {ev["order_id"]: order_from_created(ev) for _, ev in wave
                   if ev["type"] == OrderEventType.CREATED}
        mark_cmds, flag = self.flagger.commands(
            {ev["order_id"]: (ev, created[ev["order_id"]]) for _, ev in wave
             if ev["type"] == OrderEventType.CREATED})
        raw_records, marks = self._read(list(dict.fromkeys(ev["order_id"] for _, ev in wave)),
                                        created.values(), day, mark_cmds)
        if flag is not None:  # abnormal-order flags, before the rules see the orders
            created.update(flag(marks))
        pending: list[Pending] = []
        replays: list[tuple[RawMessage, dict, OrderRecord]] = []
        releases: dict[str, list[str]] = {}
        cancels: list[tuple[RawMessage, dict, OrderRecord]] = []
        asks: list[Ask] = []  # customer merge/split requests
        for raw, ev in wave:
            oid = ev["order_id"]
            rec = OrderRecord.loads(raw_records[oid]) if oid in raw_records else None
            kind = ev["type"]
            replayed = rec is not None and rec.event_id == ev["event_id"]
            if rec is not None and (replayed or kind == OrderEventType.CREATED):
                replays.append((raw, ev, rec))
            elif kind == OrderEventType.CREATED:
                pending.append(Pending(raw, ev, created[oid], 1))
            elif kind == OrderEventType.REROUTE_REQUESTED:
                if rec is None or rec.status != DecisionStatus.ROUTED or not rec.reservations:
                    metrics.REROUTES.labels(outcome="not-open").inc()  # shipped, gone, held
                else:
                    join = ev.get("join")
                    pending.append(Pending(
                        raw, ev, rec.order, rec.version + 1,
                        ["consolidated"] if join else ["rerouted", ev["reason"]],
                        previous={"resv_id": rec.resv_id, "reservations": rec.reservations},
                        keep=rec, join=join))
            elif kind in CUSTOMER_ASKS:
                asks.append((raw, ev, rec))
            elif (problem := state_problem(kind, rec)) is not None:
                out.append(self._dead(raw, "route-orders", problem[0],
                                      f"{kind} for {oid!r}: {problem[1]}", now, "order_id"))
            else:
                assert rec is not None  # _state_problem rules out a missing record
                if kind in (OrderEventType.CANCELLED, OrderEventType.REJECTED):
                    for node, rids in rec.held().items():
                        releases.setdefault(node, []).extend(rids)
                    self._invalidate(rec)
                    cancels.append((raw, ev, rec))
                elif kind == OrderEventType.APPROVED:
                    pending.append(Pending(raw, ev, rec.order, rec.version + 1, ["approved"],
                                            approved=True))
                else:  # an address change: re-route, moving the reservation (never both/neither)
                    order = with_destination(rec.order, ev["destination"])
                    previous = ({"resv_id": rec.resv_id, "reservations": rec.reservations}
                                if rec.reservations else None)
                    pending.append(Pending(raw, ev, order, rec.version + 1, ["address-changed"],
                                            previous=previous))
        pending.extend(self._replay(replays, day, out))
        if releases:
            self.ledger.release(releases, day)
        out.extend(self._cancel(cancels, now))
        if asks:
            pending.extend(self._customer_requests(asks, now, out))
        if pending:
            out.extend(self._plan_and_reserve(pending, now, day))
        return out

    def _read(self, order_ids: list[str], orders: Iterable[OrderData], day: str,
              extra: list[tuple[Any, ...]]) -> tuple[dict[str, bytes], list[Any]]:
        """One round trip: the orders' records, the stock the cache lacks for new orders, and
        `extra` commands (the abnormal-order marks); returns the records and `extra`'s replies."""
        get_cmds, parse_get = self.book.get_commands(order_ids)
        skus = list(dict.fromkeys(ln.sku for o in orders for ln in o.lines))
        stale = self.stock.needed(skus, day)
        av_cmds, parse_av = ([], None) if stale is None else self.ledger.availability_commands(
            self.node_ids, stale, day)
        replies = self.ledger.execute(get_cmds + av_cmds + extra)
        n_get, n_av = len(get_cmds), len(av_cmds)
        if parse_av is not None and stale is not None:
            self.stock.store(stale, *parse_av(replies[n_get:n_get + n_av]))
        return parse_get(replies[:n_get]), replies[n_get + n_av:]

    def _replay(self, replays: list[tuple[RawMessage, dict, OrderRecord]], day: str,
                out: list[Out]) -> list[Pending]:
        """Re-apply recorded plans (idempotent) and re-emit their decisions unchanged."""
        if not replays:
            return []
        requests = [req for _, _, rec in replays if rec.status == DecisionStatus.ROUTED
                    for req in requests_for(rec.resv_id, rec.reservations, rec.previous)]
        results = self.ledger.reserve(requests, day) if requests else []
        short = {r.order_id for r in results if r.status == "short"}
        if short:
            self._compensate(results, short, day)
        self._release_previous([rec for _, _, rec in replays if rec.previous
                                and rec.resv_id not in short], day)
        again: list[Pending] = []
        for raw, ev, rec in replays:
            oid = rec.order.order_id
            if rec.resv_id in short and rec.event_id == ev["event_id"]:
                # Recorded but never reserved (crash in between) and the stock is gone: route anew.
                again.append(Pending(raw, ev, rec.order, rec.version, ["replayed"],
                                      previous=rec.previous))
            else:
                metrics.REPLAYS.inc()
                out.append(self._decision(oid, rec.decision))
                if rec.status == DecisionStatus.HELD:  # the request may not have been sent
                    out.append(self._approval(rec.order, rec.decision))
        return again

    def _cancel(self, cancels: list[tuple[RawMessage, dict, OrderRecord]], now: int) -> list[Out]:
        out: list[Out] = []
        records: dict[str, bytes] = {}
        for raw, ev, rec in cancels:
            version = rec.version + 1
            payload = cancelled_decision(rec.order, version, ev, raw.received_ms, now,
                                         self.network.version)
            records[rec.order.order_id] = OrderRecord(
                ev["event_id"], version, DecisionStatus.CANCELLED, payload, rec.order, {}
            ).dumps()
            metrics.DECISIONS.labels(status="cancelled").inc()
            out.append(self._decision(rec.order.order_id, payload))
        self.book.put_many(records)
        return out

    def _learned_transit(self) -> None:
        """Apply the online lane updates (delivered shipments, keyed state, transit board) to
        this router's copy of the delivery-time model: seconds after a lane slows down, its
        candidates carry the new miss probability."""
        records = self.transit.current()
        if self.transit.version == self._transit_version:
            return
        self._transit_version = self.transit.version
        base = self._base_model
        qd, late = base.quantile_days.copy(), base.late_logit.copy()
        for rec in records:
            apply_update(qd, late, rec, self.network.region_index, self.network.service_index)
        self.planner.model = base._replace(quantile_days=qd, late_logit=late)

    def _lane_health(self, now: int) -> LaneArrays:
        self._learned_transit()
        records = self.lanes.current()
        minute = now // 60_000  # validity windows expire with time, not only with new records
        if self._lane_arrays is None or self.lanes.version != self._lane_version or (
            minute != self._lane_minute
        ):
            self._lane_arrays = LaneArrays(*health_arrays(
                records, self.network.region_index, self.network.service_index, now
            ))
            self._lane_version, self._lane_minute = self.lanes.version, minute
        return self._lane_arrays


    def _plan_and_reserve(self, pending: list[Pending], now: int, day: str) -> list[Out]:
        # still open -> safe enough where it is (re-routes only) -> the business rules
        pending = self._judge_kept(self._still_open(pending), now)
        pending, out = self._apply_rules(pending, now)
        if not pending:
            return out
        for p in pending:
            if p.join is not None:
                p.outcome = self._join_constraint(p.outcome, p.join)
        closed_only = self._avoid_closed_nodes(pending, now)  # node closures (now or forecast)
        lanes = self._lane_health(now)
        for round_no in range(MAX_RACE_ROUNDS):
            prep = self.planner.prepare([p.order for p in pending], [p.outcome for p in pending])
            # Round 0 uses the cache (`_read` refreshed it for this wave); re-plans after a lost
            # race read fresh.
            atp, load = self.stock.get(prep.skus, day, fresh=round_no > 0, refresh=False)
            self._credit_own_holds(pending, prep.skus, atp)

            plans = self._closure_reasons(pending, self.planner.plan(prep, atp, load, lanes, now),
                                          closed_only)
            decided: dict[str, tuple[Pending, Plan | Unroutable, bytes]] = {}  # by resv id
            records: dict[str, bytes] = {}
            requests: list[ReserveRequest] = []
            exhausted: list[Pending] = []
            for p, plan in zip(pending, plans, strict=True):
                if isinstance(plan, Unroutable) and plan.reason == EXHAUSTED:
                    if round_no + 1 < MAX_RACE_ROUNDS:
                        exhausted.append(p)  # earlier orders of the batch took the stock
                        continue
                    plan = Unroutable("no-stock")
                if p.keep is not None and (isinstance(plan, Unroutable)
                                           or self._same_route(plan, p.keep)
                                           or (p.join is not None
                                               and not self._joining_pays(p, plan))):
                    # Nothing better to move to: the order keeps its plan, no new version.
                    out.extend(self._refused(p, plan, now))  # a customer's merge: say why
                    metrics.REROUTES.labels(outcome="no-alternative" if isinstance(
                        plan, Unroutable) else "unchanged").inc()
                    continue
                payload, rec = self._record(p, plan, now)
                decided[rec.resv_id] = (p, plan, payload)
                records[p.order.order_id] = rec.dumps()
                requests.extend(requests_for(rec.resv_id, rec.reservations, p.previous))
            results = self._write_then_reserve(records, requests, day) if records else []
            for req, res in zip(requests, results, strict=True):
                if res.status == "reserved":
                    self.stock.reserved(req.node_id, req.lines)
                elif res.status == "short" and res.short_sku is not None:
                    self.stock.invalidate((res.short_sku,))
            lost = {r.order_id for r in results if r.status == "short"}
            if lost:
                self._compensate(results, lost, day)
            retry: list[Pending] = exhausted
            final: list[Pending] = []
            for rid, (p, plan, payload) in decided.items():
                if rid in lost and round_no + 1 < MAX_RACE_ROUNDS:
                    metrics.RACES_LOST.inc()
                    retry.append(p)
                    continue
                if rid in lost and p.keep is not None:
                    # The new plan could not be held in full: keep the old one (never neither).
                    self.book.put_many({p.order.order_id: p.keep.dumps()})
                    metrics.REROUTES.labels(outcome="lost").inc()
                    out.extend(self._refused(p, Unroutable("lost-races"), now))
                    continue
                if rid in lost:
                    plan = Unroutable("lost-races")
                    payload, rec = self._record(p, plan, now)
                    self.book.put_many({p.order.order_id: rec.dumps()})
                if p.keep is not None:
                    metrics.REROUTES.labels(outcome="moved").inc()
                final.append(p)
                out.extend(self._emit(p, plan, payload, now))
            # A re-route's decision is final (routed, or unroutable at the new address): what
            # the previous version held goes now, never before the new plan was held.
            self._release_previous([p for p in final if p.previous], day)
            if not retry:
                break
            pending = sorted(retry, key=lambda p: -p.priority)
        return out

    def _write_then_reserve(self, records: dict[str, bytes], requests: list[ReserveRequest],
                            day: str) -> list[ReserveResult]:
        """Write the planned records, then reserve: the order matters (module docstring).

        On one Redis server both go in one pipeline — the server runs a connection's commands in
        order, so a reservation never exists without its record even if this process dies
        mid-send. On a cluster the shards run independently, so the writes go first, alone.
        """
        put_cmds = self.book.put_commands(records)
        res_cmds, parse = self.ledger.reserve_commands(requests, day)
        if self.ledger.clustered:
            self.ledger.execute(put_cmds)
            return parse(self.ledger.execute(res_cmds))
        return parse(self.ledger.execute(put_cmds + res_cmds)[len(put_cmds):])

    def _record(self, p: Pending, plan: Plan | Unroutable, now: int) -> tuple[bytes, OrderRecord]:
        ev = p.event
        rid = reservation_id(p.order.order_id, p.version)
        if isinstance(plan, Unroutable):
            payload = unroutable_decision(p.order, p.version, ev, plan.reason, p.raw.received_ms,
                                          now, self.network.version, p.rules_info, p.priority)
            return payload, OrderRecord(ev["event_id"], p.version, DecisionStatus.UNROUTABLE,
                                        payload, p.order, {}, rid, p.previous)
        extra: dict[str, Any] = {}
        key = ship_to(p.order.attrs.get("customer_id"), p.order.destination)
        if key is not None:
            extra["ship_to"] = key
            if p.join is not None:
                extra["consolidation_group"] = f"{key}:{p.join['order_id']}"
        reasons = [*p.reasons, SEPARATE] if ships_alone(p.order.attrs) else p.reasons
        payload = routed_decision(p.order, p.version, ev, plan, self.network, reasons,
                                  p.raw.received_ms, now, p.rules_info, p.priority, extra)
        reservations: dict[str, list[list[Any]]] = {}
        for shipment in plan.shipments:
            node = self.node_ids[shipment.node]
            lines = [(p.order.lines[i].sku, p.order.lines[i].qty) for i in shipment.lines]
            reservations[node] = [list(x) for x in group_lines(lines)]
        return payload, OrderRecord(ev["event_id"], p.version, DecisionStatus.ROUTED, payload,
                                    p.order, reservations, rid, p.previous)

    def _emit(self, p: Pending, plan: Plan | Unroutable, payload: bytes, now: int) -> list[Out]:
        oid = p.order.order_id
        out = [self._decision(oid, payload)]
        if isinstance(plan, Unroutable):
            self._counts[1] += 1
            out.append(self._dead(p.raw, "route-orders", "unroutable",
                                  f"order {oid!r} cannot be routed: {plan.reason}", now))
        else:
            self._counts[0] += 1
        self._latencies.append(max(0, now - p.event["occurred_at"]))
        return out


