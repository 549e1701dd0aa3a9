"""The Kafka connectors' own metrics, measured against a real broker.

Lag must be honest: the high watermark the consumer saw minus the next offset the engine will
read, per partition, including messages fetched but not yet handed to the flow; absent (not zero)
before the partition was ever fetched; zero once everything is read.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Producer
from prometheus_client import REGISTRY

from dataflows import connectors
from dataflows.connectors import KafkaSink, KafkaSource, OutMessage, ensure_topics, partition_lag
from fulfil.infra import Server


@pytest.mark.parametrize("next_offset,low,high,lag", [
    (40, 0, 100, 60),             # read up to 39 of 0..99
    (100, 0, 100, 0),             # all read
    (OFFSET_BEGINNING, 0, 30, 30),  # nothing read yet, from the beginning: everything is lag
    (OFFSET_BEGINNING, 25, 30, 5),  # ... except what retention already deleted
    (OFFSET_END, 0, 30, 0),       # from the end: nothing is lag until a message arrives
    (40, 0, -1001, None),         # never fetched: no figure
    (120, 0, 100, 0),             # a watermark older than what was read (cached): never < 0
])
def test_partition_lag(next_offset: int, low: int, high: int, lag: int | None) -> None:
    assert partition_lag(next_offset, low, high) == lag


def _lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("fulfil_consumer_lag_messages",
                                     {"topic": topic, "partition": str(partition)})


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_lag_gauge_follows_what_the_source_has_read(broker: Server, topic_prefix: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = f"127.0.0.1:{broker.port}"
    topic = f"{topic_prefix}lag"
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 2})
    # given 100 messages in partition 0 and 30 in partition 1
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for p, n in ((0, 100), (1, 30)):
        for i in range(n):
            producer.produce(topic, b"x", f"k{i}".encode(), partition=p)
    assert producer.flush(30) == 0
    monkeypatch.setattr(connectors, "LAG_INTERVAL_S", 3600.0)  # refresh only when asked
    source = KafkaSource({"bootstrap.servers": bootstrap}, [topic], slots=1, batch_size=10)
    part = source.build_part("in", "slot-0", None)
    try:
        assert _lag(topic, 0) is None  # nothing fetched yet: no figure at all
        # when the flow has taken a few batches
        read: dict[int, int] = {}
        deadline = time.monotonic() + 20
        while sum(read.values()) < 40 and time.monotonic() < deadline:
            for msg in part.next_batch():
                read[msg.partition] = max(read.get(msg.partition, -1), msg.offset)
        assert sum(1 for _ in read) >= 1 and time.monotonic() < deadline

        def expected(p: int, total: int) -> int:
            return total - (read[p] + 1) if p in read else total

        # then each partition's lag is what is left of it (fetched-but-unread messages included)
        def settled() -> bool:
            part.refresh_lag()
            return _lag(topic, 0) == expected(0, 100) and _lag(topic, 1) == expected(1, 30)

        assert _wait_for(settled), (read, _lag(topic, 0), _lag(topic, 1))
        assert expected(0, 100) + expected(1, 30) == 130 - sum(o + 1 for o in read.values())
        # and once everything is read, it is zero
        deadline = time.monotonic() + 20
        while sum(o + 1 for o in read.values()) < 130 and time.monotonic() < deadline:
            for msg in part.next_batch():
                read[msg.partition] = max(read.get(msg.partition, -1), msg.offset)

        def drained() -> bool:
            part.refresh_lag()
            return _lag(topic, 0) == 0 and _lag(topic, 1) == 0

        assert _wait_for(drained)
        # a snapshot (every epoch) stamps the time; close() drops the partitions' series
        before = time.time()
        assert part.snapshot() == {f"{topic}#0": 100, f"{topic}#1": 30}
        stamp = REGISTRY.get_sample_value("fulfil_source_snapshot_timestamp_seconds",
                                          {"topic": topic})
        assert stamp is not None and before <= stamp <= time.time()
    finally:
        part.close()
    assert _lag(topic, 0) is None and _lag(topic, 1) is None


def test_a_resumed_slot_is_counted(broker: Server, topic_prefix: str) -> None:
    bootstrap = f"127.0.0.1:{broker.port}"
    topic = f"{topic_prefix}resume"
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 1})
    source = KafkaSource({"bootstrap.servers": bootstrap}, [topic], slots=1)

    def resumes() -> float:
        return REGISTRY.get_sample_value("fulfil_source_resumes_total", {"topic": topic}) or 0.0

    source.build_part("in", "slot-0", None).close()
    assert resumes() == 0
    source.build_part("in", "slot-0", {f"{topic}#0": 0}).close()
    assert resumes() == 1


def test_the_pre_commit_flush_is_timed_only_when_it_has_work(
    broker: Server, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = f"127.0.0.1:{broker.port}"
    topic = f"{topic_prefix}flush"
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 1})
    # this test's own process-wide producer, dropped afterwards (not shared with other tests)
    monkeypatch.setattr(connectors._SharedProducer, "_instances", {})
    sink = KafkaSink({"bootstrap.servers": bootstrap}, parts=2)
    first, second = (sink.build_part("out", p, None) for p in sink.list_parts())

    def flushes() -> float:
        return REGISTRY.get_sample_value("fulfil_sink_flush_seconds_count") or 0.0

    before = flushes()
    first.write_batch([OutMessage(topic, b"k", b"v") for _ in range(50)])
    first.snapshot()   # bytewax snapshots every sink partition at each epoch:
    second.snapshot()  # the second finds nothing left to deliver
    assert flushes() == before + 1
