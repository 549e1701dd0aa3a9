"""Publish a scenario to Kafka at an accurate offered rate.

`publish` first sends the initial inventory (as fast as the broker takes it) and waits until it
is delivered, so the engine never routes against an empty ledger; then it runs the paced stream:
every `TICK_S` it produces exactly the events that fell due since the last tick, stamping
``occurred_at`` with the wall clock just before each produce (latency is measured from it).

When a tick runs late (GC, a busy core), the next ones catch up, but never by more than
`MAX_CATCHUP_TICKS` ticks' worth of events at once: a late simulator offers a short ramp, not a
burst that would look like an engine latency spike.

Producers batch (``linger.ms=5``) because the embedded broker's fetch cost grows with the number
of record batches (see ../shared/PERFORMANCE-NOTES.md). Only failed deliveries are reported back
(``delivery.report.only.error``) so the success path costs nothing; failures are counted and raised
as `PublishError` at the end, never dropped silently. A caller that needs to know when each event
*reached Kafka* passes ``on_ack``: every delivery is then reported, with the message's timestamp
(the stream's events carry their ``occurred_at`` as the Kafka timestamp) and the wall clock at the
report. The report is read at the next tick's poll, so it trails the broker's acknowledgement by
up to a tick (10 ms): a delay measured from it is at most that much short.

Errors::

    RuntimeError
     └── PublishError    some events were not delivered (count and first broker error inside)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
from confluent_kafka import KafkaException, Producer

from fulfil.sim.catalogue import Catalogue, initial_inventory, load_catalogue
from fulfil.sim.scenario import Scenario
from fulfil.sim.workload import OCCURRED_AT_TAIL, Workload, stamp
from operators.network import Network, load_default
from schemas.enums import InventoryEventType, OrderEventType
from schemas.topics import DEFAULT_PREFIX, TopicName, key_for, topic

__all__ = [
    "MAX_CATCHUP_TICKS",
    "TICK_S",
    "PublishError",
    "PublishStats",
    "producer_settings",
    "publish",
    "publish_events",
]

log = logging.getLogger(__name__)

TICK_S = 0.010
MAX_CATCHUP_TICKS = 5
_VALID_ORDER_TAGS = frozenset(t.value for t in OrderEventType)
_NO_CONFIG: Mapping[str, Any] = MappingProxyType({})


class PublishError(RuntimeError):
    """Some events were not delivered; raised after everything else was flushed."""

    def __init__(self, message: str, stats: PublishStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass
class PublishStats:
    """What was offered to the broker. Updated live (``on_tick`` receives it) and final on return.

    ``per_topic`` uses short registry names ("orders", ...); ``per_tag`` counts event types and
    ``invalid:<kind>`` tags, so a test or the demo can check the dead-letter topic against
    ``invalid``. The initial inventory is counted in both maps and in ``initial_inventory``.
    """

    per_topic: dict[str, int] = field(default_factory=dict)
    per_tag: dict[str, int] = field(default_factory=dict)
    initial_inventory: int = 0
    target_rate: float = 0.0  # orders/s the scenario offers over the paced stream
    elapsed_s: float = 0.0  # paced stream: first tick to last produce
    start_ms: int = 0  # wall clock at offset 0 of the paced stream
    late_ticks: int = 0  # ticks that had to catch up
    max_lag_ms: float = 0.0  # worst delay of a window's end behind the wall clock
    delivery_errors: int = 0
    first_error: str | None = None
    stopped: bool = False  # the stop event ended the run early
    ground_truth: list[dict[str, Any]] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        """Invalid order events sent (each should end up on the dead-letter topic)."""
        return sum(n for tag, n in self.per_tag.items() if tag.startswith("invalid:"))

    @property
    def orders(self) -> int:
        """Order arrivals offered: valid ``order.created`` plus invalid ones."""
        return self.per_tag.get(OrderEventType.CREATED.value, 0) + self.invalid

    @property
    def valid_order_events(self) -> int:
        """Valid events on the orders topic (created, address changes, cancels)."""
        return sum(self.per_tag.get(t, 0) for t in _VALID_ORDER_TAGS)

    @property
    def achieved_rate(self) -> float:
        """Orders per second actually offered during the paced stream."""
        return self.orders / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def total(self) -> int:
        return sum(self.per_topic.values())

    def __str__(self) -> str:
        return (f"{self.total:,} events {dict(self.per_topic)}; {self.orders:,} orders at "
                f"{self.achieved_rate:,.0f}/s (target {self.target_rate:,.0f}/s), "
                f"{self.invalid:,} invalid, {self.delivery_errors} delivery errors")  # fmt: skip


def producer_settings(
    bootstrap: str, producer_config: Mapping[str, Any] = _NO_CONFIG
) -> dict[str, Any]:
    """librdkafka settings: batching, durable acks, lz4, error-only reports; caller's win."""
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "acks": "all",
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": 30_000,
        "delivery.report.only.error": True,
        **dict(producer_config),
    }
    if float(settings["linger.ms"]) < 5:
        log.warning("linger.ms=%s < 5: the embedded broker stalls on many small batches",
                    settings["linger.ms"])  # fmt: skip
    return settings


class _Sender:
    """A producer that counts per topic and tag and records failed deliveries."""

    def __init__(self, bootstrap: str, prefix: str, producer_config: Mapping[str, Any],
                 stats: PublishStats, on_ack: Callable[[int, int], None] | None = None
                 ) -> None:  # fmt: skip
        self.stats = stats
        self.names = {t: topic(t).full_name(prefix) for t in TopicName}
        self._on_ack = on_ack
        settings = producer_settings(bootstrap, producer_config)
        settings["on_delivery"] = self._on_delivery
        if on_ack is not None:
            settings["delivery.report.only.error"] = False
        try:
            self.producer = Producer(settings)
        except KafkaException as exc:
            if settings.get("compression.type") != "lz4" or "compression" not in str(exc):
                raise
            log.warning("lz4 not available in this librdkafka (%s): sending uncompressed", exc)
            settings["compression.type"] = "none"
            self.producer = Producer(settings)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            if self._on_ack is not None:
                self._on_ack(msg.timestamp()[1], _now_ms())
            return
        self.stats.delivery_errors += 1
        if self.stats.first_error is None:
            self.stats.first_error = f"{msg.topic()} key={msg.key()!r}: {err}"

    def produce(self, name: str, key: str, value: bytes, timestamp: int = 0) -> None:
        """Produce one message, waiting for queue space rather than failing when it is full;
        ``timestamp`` (ms) is the message's Kafka timestamp (0: the client's clock)."""
        while True:
            try:
                self.producer.produce(name, value, key, timestamp=timestamp)
                return
            except BufferError:
                self.producer.poll(0.01)

    def count(self, topic_name: str, tag: str, n: int = 1) -> None:
        pt, tg = self.stats.per_topic, self.stats.per_tag
        pt[topic_name] = pt.get(topic_name, 0) + n
        tg[tag] = tg.get(tag, 0) + n

    def finish(self, timeout_s: float = 60.0) -> None:
        """Flush; raise PublishError if anything failed or is still undelivered."""
        left = self.producer.flush(timeout_s)
        s = self.stats
        if left:
            s.delivery_errors += left
            s.first_error = s.first_error or f"{left} messages still undelivered after {timeout_s}s"
        if s.delivery_errors:
            raise PublishError(f"{s.delivery_errors} events were not delivered; first: "
                               f"{s.first_error}", s)  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def publish(
    bootstrap: str,
    scenario: Scenario,
    *,
    prefix: str = DEFAULT_PREFIX,
    producer_config: Mapping[str, Any] = _NO_CONFIG,
    on_tick: Callable[[PublishStats], None] | None = None,
    stop: threading.Event | None = None,
    network: Network | None = None,
    catalogue: Catalogue | None = None,
    before_stream: Callable[[PublishStats], None] | None = None,
    on_ack: Callable[[int, int], None] | None = None,
) -> PublishStats:
    """Send the scenario's initial inventory, then its paced event stream; return the counts.

    ``before_stream`` runs once the initial inventory is delivered and before the first order:
    the demo and benchmarks use it to wait until the engine has applied that inventory, so the
    first orders do not meet an empty ledger.

    ``network`` defaults to the shipped one, ``catalogue`` to the scenario's seeded subset.
    ``on_tick`` runs after every tick with the live stats (keep it cheap). Setting ``stop``
    ends the stream early (``stats.stopped``); what was produced is still flushed.
    ``on_ack(timestamp_ms, acked_ms)`` runs for every delivered event (see the module's notes).
    """
    network = network or load_default()
    catalogue = catalogue or load_catalogue(scenario.sku_count, scenario.seed,
                                            zipf_s=scenario.zipf_s)  # fmt: skip
    stats = PublishStats()
    sender = _Sender(bootstrap, prefix, producer_config, stats, on_ack)
    inv = TopicName.INVENTORY
    inv_name = sender.names[inv]
    for ev in initial_inventory(network, catalogue, scenario, at_ms=_now_ms()):
        sender.produce(inv_name, key_for(inv, ev), orjson.dumps(ev))
        stats.initial_inventory += 1
    if stats.initial_inventory:
        sender.count(inv.value, InventoryEventType.SNAPSHOT.value, stats.initial_inventory)
    sender.finish()  # the ledger must be stocked before the first order arrives
    if before_stream is not None:
        before_stream(stats)

    workload = Workload(network, catalogue, scenario)
    stats.target_rate = workload.total_orders / scenario.duration_s
    t0 = time.monotonic()  # offset 0 of the stream, on both clocks
    stats.start_ms = _now_ms()
    workload.anchor(stats.start_ms)
    stats.ground_truth = workload.ground_truth()
    try:
        _paced(workload, sender, t0, on_tick, stop)
    finally:
        sender.finish()
    return stats


def _paced(workload: Workload, sender: _Sender, t0: float,
           on_tick: Callable[[PublishStats], None] | None,
           stop: threading.Event | None) -> None:  # fmt: skip
    """The tick loop: produce what fell due, catching up by at most MAX_CATCHUP_TICKS ticks."""
    stats, names, produce, poll = sender.stats, sender.names, sender.produce, sender.producer.poll
    duration = workload.scenario.duration_s
    step_max = MAX_CATCHUP_TICKS * TICK_S
    t = 0.0
    while t < duration:
        if stop is not None and stop.is_set():
            stats.stopped = True
            break
        now = time.monotonic() - t0
        t1 = min(now, t + step_max, duration)
        if now - t1 > TICK_S:
            stats.late_ticks += 1
        stats.max_lag_ms = max(stats.max_lag_ms, (now - t1) * 1000)
        if t1 > t:
            for ev in workload.events_at(t, t1):
                now_ms = time.time_ns() // 1_000_000
                produce(names[ev.topic], ev.key, stamp(ev.value, now_ms), now_ms)
                sender.count(ev.topic.value, ev.tag)
            t = t1
        stats.elapsed_s = time.monotonic() - t0
        poll(0)
        if on_tick is not None:
            on_tick(stats)
        behind = (time.monotonic() - t0) - t
        if behind < TICK_S:  # on time: sleep to the next tick; late: loop straight away
            time.sleep(TICK_S - behind)


def publish_events(
    bootstrap: str,
    events: Iterable[tuple[Any, ...]],
    prefix: str = DEFAULT_PREFIX,
    producer_config: Mapping[str, Any] = _NO_CONFIG,
) -> PublishStats:
    """Send explicit events (for tests): ``(topic, key, value[, tag])`` tuples or `SimEvent`s.

    ``value`` is a dict (serialized with orjson as is; a None key is taken from the registry),
    raw bytes (sent as is: malformed payloads are welcome), or a workload template ending in
    ``"occurred_at":`` (stamped with the wall clock). Tags default to the event's ``type``.
    """
    stats = PublishStats()
    sender = _Sender(bootstrap, prefix, producer_config, stats)
    start = time.monotonic()
    for item in events:
        name, key, value = TopicName(item[0]), item[1], item[2]
        tag = item[3] if len(item) > 3 else None
        if isinstance(value, Mapping):
            key = key if key is not None else key_for(name, value)
            tag = tag or str(value.get("type", "raw"))
            value = orjson.dumps(value)
        elif value.endswith(OCCURRED_AT_TAIL):
            value = stamp(value, _now_ms())
        sender.produce(sender.names[name], key, value)
        sender.count(name.value, tag or "raw")
    sender.finish()
    stats.elapsed_s = time.monotonic() - start
    return stats
