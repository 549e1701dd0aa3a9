"""The paced publisher against a real broker: what it counts is what lands, keyed per the registry,
at the offered rate; failures are raised, never swallowed."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from dataflows.connectors import ensure_topics
from fulfil.sim.publisher import PublishError, PublishStats, publish, publish_events
from fulfil.sim.scenario import CarrierOutage, Scenario
from schemas.errors import ValidationError
from schemas.topics import TOPICS, TopicName, key_for, topic
from schemas.validation import decode_and_validate

SIM_TOPICS = (TopicName.ORDERS, TopicName.INVENTORY, TopicName.CARRIER_STATUS)
KIND = {TopicName.ORDERS: "order_event", TopicName.INVENTORY: "inventory_event",
        TopicName.CARRIER_STATUS: "carrier_event"}  # fmt: skip


def create_topics(bootstrap: str, prefix: str) -> None:
    ensure_topics({"bootstrap.servers": bootstrap},
                  {t.full_name(prefix): t.partitions for t in TOPICS.values()})  # fmt: skip


def consume_all(bootstrap: str, name: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Every message of topic `name`, read with assign() (group joins are slow on this broker).

    Reads until `expected` messages arrived and every partition then reported its end, so a
    surplus would be seen too.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    parts = admin.list_topics(name, timeout=10).topics[name].partitions
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
        "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 50,
    })  # fmt: skip
    consumer.assign([TopicPartition(name, p, 0) for p in parts])
    out: list[Any] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and (len(out) < expected or len(at_end) < len(parts)):
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    out.append(msg)
                    at_end.discard(msg.partition())
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                else:
                    raise AssertionError(f"consume error on {name}: {msg.error()}")
    finally:
        consumer.close()
    return out


def test_publish_lands_exactly_what_it_counts_keyed_per_registry_at_the_offered_rate(
    bootstrap: str, topic_prefix: str
):
    # Given fresh topics and a 2 s scenario at 500 orders/s with an outage and a high
    # invalid rate (so every invalid kind shows up)
    create_topics(bootstrap, topic_prefix)
    outage = CarrierOutage("correios", "RJ", start_s=0.5, end_s=1.5)
    scenario = Scenario.steady(500, 2.0, seed=21, invalid_rate=0.05, heartbeat_interval_s=0.5,
                               restock_interval_s=0.5, disruptions=(outage,))  # fmt: skip
    ticks: list[int] = []
    before_ms = time.time_ns() // 1_000_000

    # When it is published
    stats = publish(bootstrap, scenario, prefix=topic_prefix,
                    on_tick=lambda s: ticks.append(s.orders))  # fmt: skip
    after_ms = time.time_ns() // 1_000_000

    # Then the offered rate is the scenario's, paced over ~2 s in ~10 ms ticks
    assert stats.orders == 1_000 and stats.target_rate == 500
    assert abs(stats.achieved_rate - 500) / 500 < 0.10, stats
    assert len(ticks) > 100 and ticks == sorted(ticks)
    assert stats.delivery_errors == 0 and not stats.stopped
    assert stats.initial_inventory > 10_000
    assert stats.per_tag["lane.status"] >= 2 and stats.per_tag["inventory.adjusted"] > 0
    assert 25 <= stats.invalid <= 80
    assert [g["kind"] for g in stats.ground_truth] == ["carrier_outage"]
    assert stats.ground_truth[0]["start_ms"] == stats.start_ms + 500

    # And every topic holds exactly what was counted, keyed as the registry says
    landed_tags: collections.Counter = collections.Counter()
    for name in SIM_TOPICS:
        msgs = consume_all(bootstrap, topic(name).full_name(topic_prefix), stats.per_topic[name])
        assert len(msgs) == stats.per_topic[name], name
        for msg in msgs:
            key = msg.key().decode()
            try:
                event = decode_and_validate(KIND[name], msg.value())
            except ValidationError:
                landed_tags["invalid"] += 1
                assert name == TopicName.ORDERS and key.startswith("15-")  # an order id
                continue
            assert key == key_for(name, event)
            assert before_ms <= event["occurred_at"] <= after_ms
            landed_tags[event["type"]] += 1
    assert landed_tags["invalid"] == stats.invalid
    for tag, n in stats.per_tag.items():
        if not tag.startswith("invalid:"):
            assert landed_tags[tag] == n, tag


def test_on_ack_reports_every_delivery_and_stream_events_carry_their_time_as_kafka_timestamp(
    bootstrap: str, topic_prefix: str
):
    # Given a short stream whose caller asks when each event reached Kafka
    create_topics(bootstrap, topic_prefix)
    acks: list[tuple[int, int]] = []
    stats = publish(bootstrap, Scenario.steady(200, 1.0, seed=5), prefix=topic_prefix,
                    on_ack=lambda ts, acked: acks.append((ts, acked)))  # fmt: skip

    # Then every delivered event was reported once, never before it was stamped
    assert stats.delivery_errors == 0
    assert len(acks) == stats.total
    assert all(acked >= ts for ts, acked in acks)
    # And each stream order's Kafka timestamp is its occurred_at, the key of its report
    reported = collections.Counter(ts for ts, _ in acks)
    name = topic(TopicName.ORDERS).full_name(topic_prefix)
    msgs = consume_all(bootstrap, name, stats.per_topic["orders"])
    checked = 0
    for msg in msgs:
        try:
            event = decode_and_validate("order_event", msg.value())
        except ValidationError:
            continue
        assert msg.timestamp()[1] == event["occurred_at"]
        assert reported[event["occurred_at"]] > 0
        checked += 1
    assert checked >= 150


def test_a_stop_event_ends_the_stream_early_and_flushes_what_was_sent(
    bootstrap: str, topic_prefix: str
):
    create_topics(bootstrap, topic_prefix)
    stop = threading.Event()

    def on_tick(stats: PublishStats) -> None:
        if stats.orders >= 300:
            stop.set()

    stats = publish(bootstrap, Scenario.steady(1_000, 30.0), prefix=topic_prefix, stop=stop,
                    on_tick=on_tick)  # fmt: skip
    assert stats.stopped and stats.elapsed_s < 10  # ended early: the scenario runs 30 s
    assert 300 <= stats.orders < 400
    name = topic(TopicName.ORDERS).full_name(topic_prefix)
    assert len(consume_all(bootstrap, name, stats.per_topic["orders"])) == stats.per_topic["orders"]


def test_publish_events_sends_dicts_raw_bytes_and_templates(bootstrap: str, topic_prefix: str):
    create_topics(bootstrap, topic_prefix)
    order = {"type": "order.cancelled", "event_id": "e-1", "order_id": "o-1", "occurred_at": 1}
    stats = publish_events(bootstrap, [
        (TopicName.ORDERS, None, order),
        ("orders", "o-2", b"{not json", "invalid:malformed-json"),
        (TopicName.ORDERS, "o-3", b'{"type":"order.cancelled","event_id":"e-3","order_id":"o-3"'
                                  b',"occurred_at":'),
    ], prefix=topic_prefix)  # fmt: skip
    assert isinstance(stats, PublishStats)
    assert stats.per_topic == {"orders": 3} and stats.invalid == 1
    msgs = consume_all(bootstrap, topic(TopicName.ORDERS).full_name(topic_prefix), 3)
    by_key = {m.key().decode(): m.value() for m in msgs}
    assert orjson.loads(by_key["o-1"]) == order
    assert by_key["o-2"] == b"{not json"
    assert orjson.loads(by_key["o-3"])["occurred_at"] > 1_700_000_000_000  # stamped now


def test_undelivered_events_are_raised_not_dropped():
    with pytest.raises(PublishError, match="not delivered") as info:
        publish_events("127.0.0.1:1", [(TopicName.ORDERS, "o-1", b"{}")],
                       producer_config={"message.timeout.ms": 1_000})  # fmt: skip
    assert info.value.stats.delivery_errors == 1
