"""The tracking dataflow: every order's lifecycle, queryable by order id.

```
 fulfil.orders ─────────┐
 fulfil.decisions ──────┤
 fulfil.dead-letters ───┼─► tracking-in ─► to-entries ─► lifecycle-out ─► Redis read model
 fulfil.carrier-status ─┤    (RawMessage)   (Entry | DecisionSummary)      (one pipeline per batch)
 fulfil.alerts (if any) ┘
```

Why its own flow and not a step of the routing flow: routing is the latency-critical path (a
Redis round trip per wave already dominates it). The read model is written here, in batches, from
the same topics everyone else reads, so it can lag, stop or be rebuilt (replay from `earliest`)
without the router noticing. It writes only Redis — no Kafka output at all.

Errors as data: a message this flow cannot use never stops it. Each is counted in
`fulfil_tracking_events_total{topic,outcome}`; nothing is dead-lettered from here, because (a) bad
order and carrier events are the routing flow's to dead-letter — and those dead letters are what
gets recorded on the order's timeline — and (b) decisions and dead letters are written by fulfil
itself, so an undecodable one is a bug to surface (a rate-limited WARNING and the metric), not data
to re-queue; writing it to the dead-letter topic, which this flow reads, would loop.

The `alerts` topic is read when it exists when the flow is built (its contract comes with the
alerting work; see operators/lifecycle.py). Create it, then restart `fulfil track` to follow it.

Run it with `fulfil track ...` (which also serves `GET /orders/<id>`), or
`python -m bytewax.run dataflows.tracking:flow` (configuration from `FULFIL_*` variables).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from functools import lru_cache
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows.connectors import KafkaConnectorError, KafkaSource, RawMessage, list_partitions
from fulfil import heap
from fulfil import tracking_metrics as tm
from fulfil.config import Config, load_config
from operators.lifecycle import (
    ALERTS_TOPIC,
    TRACKED_TOPICS,
    DecisionSummary,
    Entry,
    Parsed,
    Source,
    parse,
)
from schemas.topics import TopicName
from state.lifecycle import LifecycleStore
from state.redis_client import connect

log = logging.getLogger("fulfil.tracking")
#: Topics written by fulfil itself: undecodable input there is a bug, worth a warning.
_OWN_TOPICS = frozenset({TopicName.DECISIONS, TopicName.DEAD_LETTERS})
_WARN_EVERY_S = 60.0


@lru_cache(maxsize=8)
def _client(url: str) -> Any:
    """One Redis client (connection pool) per process and URL, shared by worker threads."""
    return connect(url)


def tracked_topics(config: Config) -> list[str]:
    """Full names of the topics to read: the registry's four, plus alerts if it exists."""
    names = [config.topic(t) for t in TRACKED_TOPICS]
    try:
        list_partitions(config.kafka_common(), [config.topic(ALERTS_TOPIC)])
    except KafkaConnectorError:
        log.info("topic %s does not exist; alerts are not tracked until a restart after it "
                 "is created", config.topic(ALERTS_TOPIC), extra={"step": "tracking-in"})
    else:
        names.append(config.topic(ALERTS_TOPIC))
    return names


class ToEntries:
    """`flat_map_batch` mapper: messages -> lifecycle entries and decision summaries."""

    def __init__(self, config: Config) -> None:
        self._prefix = config.topic_prefix
        self._names = {config.topic(t): t for t in (*TRACKED_TOPICS, ALERTS_TOPIC)}
        self._last_warning: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, batch: list[RawMessage]) -> list[Entry | DecisionSummary]:
        out: list[Entry | DecisionSummary] = []
        outcomes: Counter[tuple[str, str]] = Counter()
        for raw in batch:
            name = self._names.get(raw.topic, "other")
            parsed = self._parse(name, raw)
            outcomes[name, parsed.outcome] += 1
            out.extend(parsed.entries)
            if parsed.decision is not None:
                out.append(parsed.decision)
        for (name, outcome), n in outcomes.items():
            tm.TRACKING_EVENTS.labels(topic=name, outcome=outcome).inc(n)
            if outcome in ("undecodable", "invalid", "failed") and name in _OWN_TOPICS:
                self._warn(name, outcome, n)
        return out

    def _parse(self, name: str, raw: RawMessage) -> Parsed:
        src = Source(raw.topic, raw.partition, raw.offset, raw.timestamp_ms)
        try:
            return parse(name, raw.value, src, self._prefix)
        except Exception:  # a bug on some odd but valid input: count it, keep the stream going
            log.debug("could not interpret %s/%d/%d", raw.topic, raw.partition, raw.offset,
                      exc_info=True, extra={"step": "to-entries"})
            return Parsed("failed")

    def _warn(self, name: str, outcome: str, n: int) -> None:
        """At most one warning per topic per minute: a bad producer must not flood the logs."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning.get(name, -_WARN_EVERY_S) < _WARN_EVERY_S:
                return
            self._last_warning[name] = now
        log.warning("%d %s message(s) on %s, which only fulfil writes; counted in "
                    "fulfil_tracking_events_total and skipped", n, outcome, name,
                    extra={"step": "to-entries"})


class _StorePartition(StatelessSinkPartition[Entry | DecisionSummary]):
    def __init__(self, store: LifecycleStore) -> None:
        self._store = store

    def write_batch(self, items: list[Entry | DecisionSummary]) -> None:
        entries = [i for i in items if isinstance(i, Entry)]
        decisions = [i for i in items if isinstance(i, DecisionSummary)]
        with tm.TRACKING_WRITE_SECONDS.time():
            written = self._store.write(entries, decisions)
        tm.TRACKING_ENTRIES.inc(written.added)
        tm.TRACKING_TRIMMED.inc(written.trimmed)
        log.debug("stored %d new of %d entries (%d trimmed), %d decisions", written.added,
                  len(entries), written.trimmed, len(decisions), extra={"step": "lifecycle-out"})


class LifecycleSink(DynamicSink[Entry | DecisionSummary]):
    """Writes each batch of entries to the Redis read model in one pipeline (idempotent)."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(store_for(self._config))


def store_for(config: Config, client: Any | None = None) -> LifecycleStore:
    """The read model as `config` lays it out (prefix, retention, entries per order)."""
    return LifecycleStore(client if client is not None else _client(config.redis_url),
                          config.redis_prefix, config.tracking_ttl_days * 86400,
                          config.tracking_max_entries)


def build_flow(config: Config | None = None, stop: threading.Event | None = None) -> Dataflow:
    """The tracking dataflow for `config` (defaults: environment / FULFIL_CONFIG).

    `stop`, when set, ends the source so the flow drains and returns (embedding and tests).
    """
    cfg = config or load_config()
    heap.configure(cfg.gc_gen0_threshold)  # fewer, cheaper collections (fulfil/heap.py)
    source = KafkaSource(cfg.kafka_common(), tracked_topics(cfg), slots=cfg.source_slots,
                         start_from=cfg.start_from, batch_size=cfg.batch_size,
                         fetch_wait_max_ms=cfg.fetch_wait_max_ms,
                         fetch_min_bytes=cfg.fetch_min_bytes, group_id="fulfil-tracking",
                         stop=stop)
    flow = Dataflow("fulfil-tracking")
    raw = op.input("tracking-in", flow, source)  # RawMessage of any tracked topic
    to_entries = heap.after_warmup(ToEntries(cfg), cfg.gc_freeze_after_batches)
    items = op.flat_map_batch("to-entries", raw, to_entries)  # Entry | DecisionSummary
    op.output("lifecycle-out", items, LifecycleSink(cfg))
    return flow


def __getattr__(name: str) -> Dataflow:
    """`python -m bytewax.run dataflows.tracking:flow` builds the flow on first access only."""
    if name == "flow":
        return build_flow()
    raise AttributeError(name)
