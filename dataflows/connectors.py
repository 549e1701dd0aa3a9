"""Lean Kafka source and sink for bytewax.

Why not the stock `bytewax.connectors.kafka` ones: the stock sink is a `DynamicSink` that calls
`producer.flush()` after every batch (one broker round trip per batch, see
../shared/PERFORMANCE-NOTES.md), and the stock source wraps every message in a dataclass. Here:

- `KafkaSource` emits plain `RawMessage` tuples from a few consumers ("slots"), each over a
  fixed share of the partitions (`assign()`, no consumer group: bytewax recovery owns the
  offsets), resumable from the snapshotted offsets.
- `KafkaSink` is a `FixedPartitionedSink` (writer slots over the workers). `write_batch` only
  enqueues into librdkafka (no flush); `snapshot()` — which bytewax
  calls once the epoch's writes have all reached the sink and *before* it commits the epoch's
  recovery state — flushes and raises if anything failed. So a recovery snapshot never covers an
  undelivered message, and the hot path never waits on the broker.

Items for the sink are `(key, OutMessage)`: the key (an order id, a topic name) spreads writes
over the sink's slots.

Metrics (`fulfil.metrics`): each source slot refreshes `fulfil_consumer_lag_messages` for its
partitions at most once a second from the watermarks librdkafka caches from fetch responses (no
broker round trip; the broker's own ListOffsets answer is not used because the embedded broker's
can be stale), stamps `fulfil_source_snapshot_timestamp_seconds` at every epoch, and the sink
times its pre-commit flush (`fulfil_sink_flush_seconds`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import ClassVar, NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from fulfil import metrics

#: How often a source slot refreshes its partitions' lag gauges (checked once per batch).
LAG_INTERVAL_S = 1.0


class RawMessage(NamedTuple):
    """One consumed Kafka record, as plain data."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    received_ms: int


class OutMessage(NamedTuple):
    """One record to produce; the producer's partitioner picks the partition from the key."""

    topic: str
    key: bytes
    value: bytes


class KafkaConnectorError(RuntimeError):
    """A Kafka source or sink cannot continue (metadata, fatal consumer or delivery error)."""


def list_partitions(config: Mapping[str, str], topics: Iterable[str]) -> list[tuple[str, int]]:
    """(topic, partition) for every partition of the topics; fails clearly if one is missing."""
    admin = AdminClient(dict(config))
    out: list[tuple[str, int]] = []
    for topic in topics:
        md = admin.list_topics(topic, timeout=15)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            why = tmd.error.str() if tmd is not None and tmd.error is not None else "no partitions"
            raise KafkaConnectorError(f"Kafka topic {topic!r} is not available: {why}")
        out.extend((topic, p) for p in sorted(tmd.partitions))
    return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def partition_lag(next_offset: int, low: int, high: int) -> int | None:
    """Messages of one partition not read yet, from the consumer's cached watermarks.

    None while the consumer has not fetched from the partition (librdkafka reports negative
    watermarks then): no figure is better than a made-up zero. Before the first message is read
    the next offset is a logical one: from the beginning, everything still in the log is lag;
    from the end, nothing is until a message arrives (and is then counted once read).
    """
    if high < 0:
        return None
    if next_offset == OFFSET_BEGINNING:
        next_offset = max(low, 0)
    elif next_offset < 0:
        return 0
    return max(0, high - next_offset)


class _SourcePartition(StatefulSourcePartition[RawMessage, dict[str, int]]):
    """One consumer over a fixed set of Kafka partitions; state = next offset per partition."""

    def __init__(
        self, config: dict, parts: list[tuple[str, int]], offsets: dict[str, int],
        batch_size: int, stop: threading.Event | None = None, label: str = "",
    ) -> None:
        self._stop = stop
        self._offsets = dict(offsets)
        self._batch_size = batch_size
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(t, p, self._offsets[f"{t}#{p}"]) for t, p in parts])
        self._idle_until: datetime | None = None
        self._parts = parts
        self._lag_due = 0.0
        self._snapshot_gauge = metrics.SOURCE_SNAPSHOT.labels(topic=label)

    def refresh_lag(self) -> None:
        """Set the lag gauge of every partition of this slot (cached watermarks: no I/O).

        `next_batch` calls it at most every LAG_INTERVAL_S; public for tests and embedders.
        """
        watermarks = self._consumer.get_watermark_offsets
        for topic, partition in self._parts:
            try:
                low, high = watermarks(TopicPartition(topic, partition), cached=True)
            except KafkaException:  # a metric must never stop the flow; no figure this round
                continue
            lag = partition_lag(self._offsets[f"{topic}#{partition}"], low, high)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)

    def next_batch(self) -> list[RawMessage]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        tick = time.monotonic()
        if tick >= self._lag_due:
            self._lag_due = tick + LAG_INTERVAL_S
            self.refresh_lag()
        msgs = self._consumer.consume(self._batch_size, 0.0)
        if not msgs:
            # Nothing buffered: let other steps run, come back shortly. librdkafka keeps
            # fetching in the background, so this adds at most ~1 ms of latency.
            self._idle_until = datetime.now(UTC) + timedelta(milliseconds=1)
            return []
        self._idle_until = None
        now = _now_ms()
        batch: list[RawMessage] = []
        append = batch.append
        offsets = self._offsets
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or not err.retriable():
                    raise KafkaConnectorError(f"consuming {msg.topic()}: {err.str()}")
                continue  # retriable: librdkafka retries by itself
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            append(RawMessage(topic, partition, offset, msg.key(), msg.value(),
                              msg.timestamp()[1], now))
            offsets[f"{topic}#{partition}"] = offset + 1
        return batch

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> dict[str, int]:
        self._snapshot_gauge.set(time.time())
        return dict(self._offsets)

    def close(self) -> None:
        self._consumer.close()
        for topic, partition in self._parts:  # the partition may be read elsewhere next time
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(topic, str(partition))


class KafkaSource(FixedPartitionedSource[RawMessage, dict[str, int]]):
    """Reads every partition of `topics` through `slots` consumers spread over the workers.

    Why slots and not one bytewax partition per Kafka partition (as the stock connector does):
    a batch then holds everything one consumer fetched from all its partitions, so the routing
    step gets a few large batches instead of many small ones; its cost per batch (Redis round
    trips, kernel calls) is paid far less often. Kafka partition i (in sorted order) belongs to
    slot i % slots. `slots` bounds how many workers read (set it to at least the total number of
    workers); keep it constant across restarts with recovery: it decides where each partition's
    offset is kept. A partition with no recorded offset starts at `start_from`.

    It never ends by itself (a stream has no end) unless `stop` is given and set: then every
    slot finishes, the flow drains and the sinks flush — how embedders (tests, the demo's
    in-process mode) stop a flow cleanly.
    """

    def __init__(
        self,
        config: Mapping[str, str],
        topics: Iterable[str],
        *,
        slots: int = 1,
        start_from: str = "earliest",
        batch_size: int = 1000,
        fetch_wait_max_ms: int = 25,
        fetch_min_bytes: int = 1,
        group_id: str = "fulfil",
        stop: threading.Event | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"KafkaSource: slots must be >= 1; got {slots}")
        self._stop = stop
        self._slots = slots
        self._config = dict(config)
        self._topics = list(topics)
        self._start = OFFSET_BEGINNING if start_from == "earliest" else OFFSET_END
        self._batch_size = batch_size
        self._consumer_config = {
            **self._config,
            # Required by librdkafka even with assign(); no group join happens.
            "group.id": group_id,
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
            "fetch.wait.max.ms": str(fetch_wait_max_ms),
            "fetch.min.bytes": str(fetch_min_bytes),
            "auto.offset.reset": "earliest" if start_from == "earliest" else "latest",
        }

    def list_parts(self) -> list[str]:
        return [f"slot-{i}" for i in range(self._slots)]

    def build_part(self, step_id: str, for_part: str, resume_state: dict[str, int] | None
                   ) -> _SourcePartition:
        slot = int(for_part.rpartition("-")[2])
        parts = [tp for i, tp in enumerate(list_partitions(self._config, self._topics))
                 if i % self._slots == slot]
        known = resume_state or {}
        offsets = {f"{t}#{p}": known.get(f"{t}#{p}", self._start) for t, p in parts}
        label = ",".join(self._topics)
        if resume_state is not None:
            metrics.SOURCE_RESUMES.labels(topic=label).inc()
        return _SourcePartition(self._consumer_config, parts, offsets, self._batch_size,
                                self._stop, label)


class _SharedProducer:
    """One librdkafka producer per process, shared by all sink partitions (it is thread-safe)."""

    _lock = threading.Lock()
    _instances: ClassVar[dict[tuple, _SharedProducer]] = {}

    def __init__(self, config: dict) -> None:
        self.producer = Producer({**config, "error_cb": self._on_error})
        self.failures: list[str] = []
        self._fail_lock = threading.Lock()

    @classmethod
    def get(cls, config: dict) -> _SharedProducer:
        key = tuple(sorted((k, str(v)) for k, v in config.items()))
        with cls._lock:
            inst = cls._instances.get(key)
            if inst is None:
                inst = cls._instances[key] = cls(config)
            return inst

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            with self._fail_lock:
                self.failures.append(err.str())

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            with self._fail_lock:
                self.failures.append(err.str())

    def flush_or_raise(self) -> None:
        outstanding = len(self.producer)
        started = time.perf_counter()
        remaining = self.producer.flush(60)
        if outstanding:  # every sink slot calls this per epoch; only real flushes are timed
            metrics.SINK_FLUSH.observe(time.perf_counter() - started)
        with self._fail_lock:
            failures, self.failures = self.failures, []
        if remaining or failures:
            raise KafkaConnectorError(
                f"{remaining} messages undelivered after 60 s; errors: {failures[:5]}"
            )


class _SinkPartition(StatefulSinkPartition[OutMessage, None]):
    def __init__(self, shared: _SharedProducer) -> None:
        self._shared = shared

    def write_batch(self, values: list[OutMessage]) -> None:
        produce = self._shared.producer.produce
        on_delivery = self._shared.on_delivery
        for topic, key, value in values:
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    # Local queue full: serve delivery reports until there is room.
                    self._shared.producer.poll(0.05)
        self._shared.producer.poll(0)

    def snapshot(self) -> None:
        self._shared.flush_or_raise()

    def close(self) -> None:
        self._shared.flush_or_raise()


class KafkaSink(FixedPartitionedSink[OutMessage, None]):
    """Writes `(key, OutMessage)` items to any topic.

    The sink's partitions are just a fixed number of writer slots spread over the workers (items
    are routed to a slot by a stable hash of the key). The Kafka partition is chosen by
    librdkafka's `murmur2_random` partitioner from the message key, the same as Java clients, so
    every decision of an order lands in the same partition whoever produces it.
    """

    def __init__(self, config: Mapping[str, str], parts: int = 16, *, linger_ms: int = 2) -> None:
        self._parts = [f"out-{i:03d}" for i in range(parts)]
        self._producer_config = {
            **dict(config),
            "linger.ms": str(linger_ms),
            "acks": "all",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": "1000000",
        }

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _SinkPartition:
        return _SinkPartition(_SharedProducer.get(self._producer_config))


def ensure_topics(
    config: Mapping[str, str], topics: Mapping[str, int], *, compacted: Iterable[str] = ()
) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); returns the ones created.

    Existing topics are left alone (their partition count is the operator's business).
    """
    from confluent_kafka.admin import NewTopic

    admin = AdminClient(dict(config))
    existing = set(admin.list_topics(timeout=15).topics)
    compact = set(compacted)
    wanted = [
        NewTopic(name, n, 1, config={"cleanup.policy": "compact"} if name in compact else {})
        for name, n in topics.items()
        if name not in existing
    ]
    created: list[str] = []
    if not wanted:
        return created
    for name, future in admin.create_topics(wanted, operation_timeout=15).items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # a concurrent creator is fine; anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise KafkaConnectorError(f"cannot create topic {name!r}: {exc}") from exc
    # Wait until metadata shows every partition (brokers propagate asynchronously).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5).topics
        if all(name in md and len(md[name].partitions) == n for name, n in topics.items()):
            break
        time.sleep(0.1)
    return created
