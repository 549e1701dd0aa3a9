"""Helpers for the channel tests that run on the real broker and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from dataflows.connectors import ensure_topics, list_partitions
from fulfil.channels_config import ChannelsConfig, load_channels
from fulfil.config import Config

SECRETS = {"shopify": "shpss_test_secret", "woocommerce": "wc-webhook-secret"}


def channels_file(tmp_path: Path, **gateway: object) -> ChannelsConfig:
    """The shipped channels (builtin mappings) with test secrets and gateway settings."""
    lines = ["fulfil_channels: 1"]
    if gateway:
        lines.append("gateway:")
        lines += [f"  {k}: {v}" for k, v in gateway.items()]
    lines += [
        "channels:",
        "  shopify:", "    mapping: builtin:shopify", "    signature: shopify",
        f"    secret: {SECRETS['shopify']}", "    accept_topics: [orders/create]",
        "    key_path: id",
        "  woocommerce:", "    mapping: builtin:woocommerce", "    signature: woocommerce",
        f"    secret: {SECRETS['woocommerce']}", "    key_path: id",
    ]
    path = tmp_path / "channels.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_channels(path)


def create_channel_topics(cfg: Config, chans: ChannelsConfig) -> None:
    ensure_topics(cfg.kafka_common(),
                  {cfg.topic(s.topic_name()): s.partitions for s in chans.channels.values()})


def produce(cfg: Config, topic: str, values: list[bytes], key: bytes = b"raw") -> None:
    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap, "linger.ms": 5})
    for value in values:
        producer.produce(cfg.topic(topic), value, key)
    assert producer.flush(30) == 0


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topics(cfg: Config, names: list[str], until: Callable[[list[Record]], bool],
                timeout: float = 30.0) -> list[Record]:
    """Everything on the topics from the start, until `until(records)` or the timeout."""
    consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "t",
                         "enable.auto.commit": "false", "fetch.wait.max.ms": "25"})
    topics = [cfg.topic(n) for n in names]
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t, p in list_partitions(cfg.kafka_common(), topics)])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            for m in consumer.consume(500, 0.2):
                if m.error() is None:
                    records.append(Record(m.topic(), m.key(), m.value(),
                                          dict(m.headers() or [])))
    finally:
        consumer.close()
    return records


class ChannelsFlow:
    """The channels flow in a thread; leaving the block stops it and re-raises its error."""

    def __init__(self, cfg: Config, chans: ChannelsConfig) -> None:
        from bytewax.testing import run_main

        from dataflows.channels import build_flow

        self.error: BaseException | None = None
        self._stop = threading.Event()
        flow = build_flow(cfg, stop=self._stop, channels=chans)

        def target() -> None:
            try:
                run_main(flow, epoch_interval=timedelta(seconds=cfg.epoch_interval_s))
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=target, daemon=True)

    def __enter__(self) -> ChannelsFlow:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the channels flow did not stop within 30 s"
        if self.error is not None:
            raise self.error
