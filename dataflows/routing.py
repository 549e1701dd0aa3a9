"""The routing dataflow.

```
 fulfil.config ─► rules feed (a thread per process, hot reload) ─┐
                                                                 ▼
 fulfil.orders ──► route-orders ─────────────────────────────┐ (decisions, approvals, DLQ)
                    │  validate ─► rules ─► plan (numba) ─► reserve (Redis ledger)
 fulfil.inventory ─► apply-inventory ─► ledger ──────────────┤ (dead letters)
 fulfil.carrier-status ─► parse-carrier ─┬─► lane-health (keyed state) ─► lane board (Redis)
                                         ├─► node-closures (keyed state) ─► closure board (Redis)
                                         └─► tracking ─► ledger (picked up: consume stock)
                                                             ▼
                          kafka-out ─► fulfil.decisions, fulfil.approvals, fulfil.dead-letters
```

Run it with `fulfil run ...` or `python -m bytewax.run dataflows.routing:flow` (configuration
from `FULFIL_*` environment variables or `FULFIL_CONFIG=file.json`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows.closures import closure_steps, open_orders
from dataflows.config_feed import RulesFeed
from dataflows.connectors import KafkaSink, KafkaSource, OutMessage, RawMessage
from dataflows.router import Out, Router, dead_out, now_ms
from fulfil import heap, metrics
from fulfil.config import Config, load_config
from operators.closures import NodeClock, node_clock
from operators.lanes import LaneHealth, lane_key, update_lane
from operators.model_online import (
    LaneQuantiles,
    Outcome,
    lane_prior,
    make_updater,
    outcome_from_tracking,
)
from operators.network import Network, load_default
from operators.orders import OrderRecord
from operators.reroute import lane_carrier, nodes_on_origin, requests_for_lane, to_replan
from operators.risk import load_model
from operators.rules import empty_ruleset
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate
from state.lanes import LaneBoard, transit_board
from state.ledger import InventoryUpdate, Ledger
from state.orderbook import OrderBook
from state.redis_client import connect

SINK_PARTS = 16


@lru_cache(maxsize=8)
def _client(url: str) -> Any:
    """One Redis client (connection pool) per process and URL, shared by worker threads."""
    return connect(url)


def _network(config: Config) -> Network:
    return Network.load(config.network_path) if config.network_path else load_default()


class _PerWorker:
    """Builds a heavy helper lazily, once per worker thread (bytewax shares the callable)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> Any:
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._local.obj = self._factory()
        return obj


def _dead(config: Config, raw: RawMessage, step: str, exc: ValidationError, now: int) -> Out:
    return dead_out(config.topic("dead-letters"), raw, step, exc.code, exc.message, now,
                    exc.field, exc.rule)


class RouteOrders:
    """`flat_map_batch` mapper: order events -> decisions, approval requests, dead letters."""

    def __init__(self, config: Config, rules: RulesFeed | None = None) -> None:
        current = rules.current if rules is not None else empty_ruleset
        self._routers = _PerWorker(
            lambda: Router(config, _network(config), _client(config.redis_url), current)
        )

    def __call__(self, batch: list[RawMessage]) -> list[Out]:
        with metrics.BATCH_SECONDS.time():
            return self._routers.get().route(batch)


class ApplyInventory:
    """`flat_map_batch` mapper: inventory events -> ledger; emits only dead letters."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._ledgers = _PerWorker(lambda: Ledger(_client(config.redis_url), config.redis_prefix))

    def __call__(self, batch: list[RawMessage]) -> list[Out]:
        now = now_ms()
        out: list[Out] = []
        updates: list[InventoryUpdate] = []
        for raw in batch:
            try:
                ev = decode_and_validate("inventory_event", raw.value or b"")
            except ValidationError as exc:
                out.append(_dead(self._config, raw, "apply-inventory", exc, now))
                continue
            snapshot = ev["type"] == "inventory.snapshot"
            updates.append(
                InventoryUpdate(ev["node_id"], ev["sku"], int(ev["version"]),
                                "snapshot" if snapshot else "delta",
                                int(ev["on_hand"] if snapshot else ev["delta"]))
            )
        metrics.EVENTS_IN.labels(topic="inventory").inc(len(batch))
        if updates:
            outcomes = Counter(self._ledgers.get().apply_inventory(updates))
            for status, n in outcomes.items():
                metrics.INVENTORY_APPLIED.labels(outcome=status).inc(n)
        return out


def pickup_reservations(picked: dict[str, list[str]], records: dict[str, bytes]
                        ) -> dict[str, list[str]]:
    """{node: [reservation ids]} a pick-up consumes: the id the order's record holds at that
    node (re-routes reserve under versioned ids); the order id itself for an order the book no
    longer knows (the ledger answers "absent" if nothing is held under it)."""
    out: dict[str, list[str]] = {}
    for node, order_ids in picked.items():
        for oid in order_ids:
            rid = oid
            if oid in records:
                rec = OrderRecord.loads(records[oid])
                if node in rec.reservations:
                    rid = rec.resv_id
                elif rec.previous and node in rec.previous["reservations"]:
                    rid = rec.previous["resv_id"]
            out.setdefault(node, []).append(rid)
    return out


class ParseCarrier:
    """`flat_map_batch` mapper: carrier events -> ("lane" | "closure" | "delivered", event) |
    ("dead", Out); pick-ups consume their reservations here."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._ledgers = _PerWorker(lambda: Ledger(_client(config.redis_url), config.redis_prefix))

    def __call__(self, batch: list[RawMessage]) -> list[tuple[str, Any]]:
        now = now_ms()
        out: list[tuple[str, Any]] = []
        picked: dict[str, list[str]] = {}
        for raw in batch:
            try:
                ev = decode_and_validate("carrier_event", raw.value or b"")
            except ValidationError as exc:
                out.append(("dead", _dead(self._config, raw, "parse-carrier", exc, now)))
                continue
            if ev["type"] == "lane.status":
                out.append(("lane", ev))
            elif ev["type"] == "node.closure":
                out.append(("closure", ev))
            elif ev["status"] == "picked_up" and ev.get("node_id"):
                picked.setdefault(ev["node_id"], []).append(ev["order_id"])
            elif ev["status"] == "delivered":
                out.append(("delivered", ev))
        metrics.EVENTS_IN.labels(topic="carrier-status").inc(len(batch))
        if picked:
            ledger = self._ledgers.get()
            book = OrderBook(ledger, self._config.redis_prefix)
            records = book.get_many([o for ids in picked.values() for o in ids])
            ledger.ship(pickup_reservations(picked, records))
        return out


class RerouteRequests:
    """`flat_map_batch` over lane-health changes: for a lane that turned delayed or out (now or
    forecast), ask to re-plan the open orders routed over it whose parcel meets the disruption
    at its pick-up on the node's clock (`operators.reroute.requests_for_lane`; a parcel handed
    over before a delay starts is left alone). The requests go to the orders topic keyed by
    order id, so each is handled in order with the order's other events, by whichever worker
    owns the order."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._ledgers = _PerWorker(lambda: Ledger(_client(config.redis_url), config.redis_prefix))
        self._orders_topic = config.topic("orders")
        self._clock: NodeClock | None = None

    def __call__(self, batch: list[tuple[str, LaneHealth]]) -> list[Out]:
        now = now_ms()
        bad = to_replan((h for _, h in batch), now)
        if not bad:
            return []
        network = _network(self._config)
        clock = self._clock = self._clock or node_clock(network)
        book = OrderBook(self._ledgers.get(), self._config.redis_prefix)
        out: list[Out] = []
        for health in bad:
            records = open_orders(book, nodes_on_origin(health, network), lane_carrier(health))
            asks = requests_for_lane(health, records, network, now, clock=clock)
            for event in asks:
                oid = event["order_id"]
                out.append((oid, OutMessage(self._orders_topic, oid.encode(), orjson.dumps(event))))
            metrics.REROUTES.labels(outcome="requested").inc(len(asks))
        return out


class DeliveryOutcome:
    """`filter_map`: a delivered tracking event -> the model's Outcome, or None (counted) when
    it lacks what the model needs (older producers do not send the lane fields)."""

    def __init__(self, config: Config) -> None:
        network = _network(config)
        self._node_region = {n.id: n.region for n in network.nodes}

    def __call__(self, item: tuple[str, dict]) -> Outcome | None:
        outcome = outcome_from_tracking(item[1], self._node_region)
        if isinstance(outcome, str):
            metrics.DELIVERIES_LEARNED.labels(outcome="skipped").inc()
            return None
        metrics.DELIVERIES_LEARNED.labels(outcome="learned").inc()
        return outcome


def _transit_updater(config: Config) -> Callable:
    network = _network(config)
    arrays = load_model(network, config.delivery_model_path)
    return make_updater(prior=lambda key: lane_prior(arrays, key))


class TransitBoardSink(DynamicSink[LaneQuantiles]):
    """Publishes changed lane transit quantiles to the board every router reads."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BoardPartition:
        cfg = self._config
        return _BoardPartition(transit_board(_client(cfg.redis_url), cfg.redis_prefix),
                               metrics.TRANSIT_UPDATES)


class _BoardPartition(StatelessSinkPartition[Any]):
    def __init__(self, board: LaneBoard, counter: Any = metrics.LANE_UPDATES) -> None:
        self._board = board
        self._counter = counter

    def write_batch(self, items: list[Any]) -> None:
        published = self._board.publish(items)
        if self._counter is not None:
            self._counter.inc(published)


class LaneBoardSink(DynamicSink[LaneHealth]):
    """Publishes lane-health changes to the Redis lane board every router reads."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BoardPartition:
        cfg = self._config
        return _BoardPartition(LaneBoard(_client(cfg.redis_url), cfg.redis_prefix))


def build_flow(config: Config | None = None, stop: threading.Event | None = None) -> Dataflow:
    """The routing dataflow for `config` (defaults: environment / FULFIL_CONFIG).

    `stop`, when set, ends the sources so the flow drains and returns (embedding and tests).
    """
    cfg = config or load_config()
    heap.configure(cfg.gc_gen0_threshold)  # fewer, cheaper collections (fulfil/heap.py)
    kafka = cfg.kafka_common()

    def source(topic: str) -> KafkaSource:
        return KafkaSource(kafka, [cfg.topic(topic)], slots=cfg.source_slots,
                           start_from=cfg.start_from,
                           batch_size=cfg.batch_size, fetch_wait_max_ms=cfg.fetch_wait_max_ms,
                           fetch_min_bytes=cfg.fetch_min_bytes,
                           group_id=f"fulfil-{topic}", stop=stop)

    flow = Dataflow("fulfil-routing")
    orders = op.input("orders-in", flow, source("orders"))
    rules = RulesFeed(cfg, _network(cfg), stop)  # business rules, hot-reloaded (config topic)
    route = heap.after_warmup(RouteOrders(cfg, rules), cfg.gc_freeze_after_batches)
    routed = op.flat_map_batch("route-orders", orders, route)

    inventory = op.input("inventory-in", flow, source("inventory"))
    inventory_dead = op.flat_map_batch("apply-inventory", inventory, ApplyInventory(cfg))

    carrier = op.input("carrier-in", flow, source("carrier-status"))
    parsed = op.flat_map_batch("parse-carrier", carrier, ParseCarrier(cfg))
    split = op.branch("split-carrier", parsed, lambda item: item[0] == "lane")
    lanes = op.key_on("key-lane", op.map("lane-event", split.trues, lambda item: item[1]), lane_key)
    health = op.stateful_map("lane-health", lanes, update_lane)  # (lane_key, LaneHealth | None)
    changes = op.filter_map("lane-changes", health, lambda kv: kv[1])
    op.output("lane-board-out", changes, LaneBoardSink(cfg))
    reroutes = op.flat_map_batch("reroute-requests", op.key_on("key-change", changes,
                                 lambda h: h.key), RerouteRequests(cfg))
    rest = op.branch("split-delivered", split.falses, lambda item: item[0] == "delivered")
    closing = op.branch("split-closures", rest.falses, lambda item: item[0] == "closure")
    carrier_dead = op.map("carrier-dead", closing.falses, lambda item: item[1])
    # Node closures (dataflows/closures.py): keyed state per node -> closure board + re-routes.
    closure_reroutes = closure_steps(cfg, op.map("closure-event", closing.trues, lambda i: i[1]),
                                     lambda: _client(cfg.redis_url), lambda: _network(cfg))
    # The delivery-time model learns from deliveries as they arrive (operators/model_online.py):
    # per lane + service keyed state; changed quantiles go to the transit board every router reads.
    outcomes = op.filter_map("delivery-outcome", rest.trues, DeliveryOutcome(cfg))
    transit = op.stateful_map("lane-transit", op.key_on("key-transit", outcomes,
                                                        lambda o: o.key), _transit_updater(cfg))
    op.output("transit-board-out", op.filter_map("transit-changes", transit, lambda kv: kv[1]),
              TransitBoardSink(cfg))

    out = op.merge("all-out", routed, inventory_dead, carrier_dead, reroutes, closure_reroutes)
    op.output("kafka-out", out, KafkaSink(kafka, SINK_PARTS, linger_ms=cfg.producer_linger_ms))
    return flow


def __getattr__(name: str) -> Dataflow:
    """`python -m bytewax.run dataflows.routing:flow` builds the flow on first access only."""
    if name == "flow":
        return build_flow()
    raise AttributeError(name)
