"""Helpers for end-to-end flow tests: topics, publishing explicit events, running the flow.

The flow runs in a background thread with `bytewax.testing.run_main` (or as real processes for the
cluster tests) against the session's real broker and Redis; tests publish events, wait for the
decisions they expect on the real output topics, then stop the flow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from dataflows.connectors import ensure_topics, list_partitions
from fulfil.config import Config
from schemas.topics import TOPICS, key_for

NOW = int(time.time() * 1000)
DAY_MS = 86_400_000


def make_config(bootstrap: str, redis_url: str, prefix: str, **kw: Any) -> Config:
    base = dict(kafka_bootstrap=bootstrap, redis_url=redis_url, topic_prefix=prefix,
                redis_prefix=f"f{prefix.rstrip('.')}", start_from="earliest",
                fetch_wait_max_ms=25, lane_refresh_ms=50, epoch_interval_s=0.5)
    base.update(kw)
    return Config(**base)


def create_topics(cfg: Config, partitions: int | None = None) -> None:
    ensure_topics(cfg.kafka_common(),
                  {cfg.topic(t.name): partitions or t.partitions for t in TOPICS.values()})


def publish(cfg: Config, topic: str, events: Iterable[Mapping[str, Any] | bytes],
            key: str | None = None) -> int:
    """Publish events (dicts are keyed by the registry's rule; raw bytes with `key`)."""
    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap, "linger.ms": 5})
    n = 0
    for ev in events:
        if isinstance(ev, bytes | bytearray):
            producer.produce(cfg.topic(topic), bytes(ev), (key or "raw").encode())
        else:
            producer.produce(cfg.topic(topic), orjson.dumps(ev), key_for(topic, dict(ev)).encode())
        n += 1
    assert producer.flush(30) == 0
    return n


def order(order_id: str, lines: list[tuple[str, int]], *, lat: float = -23.55,
          lng: float = -46.63, postal: str | None = "01310", promise_days: float = 5.0,
          event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    dest: dict[str, Any] = {"lat": lat, "lng": lng}
    if postal:
        dest["postal_code"] = postal
    return {
        "type": "order.created", "event_id": event_id or f"e-{order_id}", "order_id": order_id,
        "occurred_at": int(time.time() * 1000), "channel": "web",
        "customer": {"id": f"c-{order_id}", "tier": "standard"},
        "promised_by": int(time.time() * 1000 + promise_days * DAY_MS),
        "destination": dest,
        "lines": [{"line_id": str(i + 1), "sku": s, "qty": q, "weight_g": 500}
                  for i, (s, q) in enumerate(lines)],
        **extra,
    }


def stock(node_id: str, sku: str, on_hand: int, version: int = 1) -> dict[str, Any]:
    return {"type": "inventory.snapshot", "event_id": f"i-{node_id}-{sku}-{version}",
            "node_id": node_id, "sku": sku, "version": version, "on_hand": on_hand,
            "occurred_at": int(time.time() * 1000)}


@dataclass
class Output:
    decisions: list[dict]
    dead: list[dict]

    def for_order(self, order_id: str) -> list[dict]:
        return [d for d in self.decisions if d["order_id"] == order_id]


def read_outputs(cfg: Config, until: Any, timeout: float = 90.0) -> Output:
    """Consume decisions + dead letters from the start until `until(output)` or timeout."""
    consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "test",
                         "enable.auto.commit": "false", "fetch.wait.max.ms": "25"})
    topics = [cfg.topic("decisions"), cfg.topic("dead-letters")]
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t, p in list_partitions(cfg.kafka_common(), topics)])
    out = Output([], [])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for m in consumer.consume(1000, 0.2):
                if m.error():
                    continue
                target = out.dead if m.topic() == topics[1] else out.decisions
                target.append(orjson.loads(m.value()))
    finally:
        consumer.close()
    return out


class FlowThread:
    """Runs a flow in a thread; leaving the block stops it cleanly and re-raises its error.

    `build(cfg, stop)` makes the flow (default: the routing flow); `workers` > 1 runs one
    process with several workers, so keyed state is exchanged between them.
    """

    def __init__(self, cfg: Config, build: Any = None, workers: int = 1,
                 join_timeout: float = 30.0) -> None:
        from bytewax.testing import cluster_main, run_main

        if build is None:
            from dataflows.routing import build_flow as build

        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        flow = build(cfg, stop=self._stop)
        epoch = timedelta(seconds=cfg.epoch_interval_s)

        def target() -> None:
            try:
                if workers == 1:
                    run_main(flow, epoch_interval=epoch)
                else:
                    cluster_main(flow, [], 0, epoch_interval=epoch,
                                 worker_count_per_proc=workers)
            except BaseException as exc:  # surfaced in __exit__
                self.error = exc

        self._thread = threading.Thread(target=target, daemon=True)

    def __enter__(self) -> FlowThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._join_timeout)
        assert not self._thread.is_alive(), (
            f"the flow did not stop within {self._join_timeout:.0f} s")
        if self.error is not None:
            raise self.error


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll `predicate` every 50 ms; fail the test if it is not true within `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
