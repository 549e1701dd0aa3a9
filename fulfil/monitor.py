"""A tap on the output topics: what the demo shows, what benchmarks and tests measure.

Reads `decisions` and `dead-letters` from the beginning with `assign()` (no consumer group) in a
background thread and keeps running figures: decisions by status, event-to-decision latency
(receive time here minus the order event's own time, i.e. what a downstream consumer sees),
top nodes and carriers, and dead letters by code.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows.connectors import list_partitions


@dataclass
class TapStats:
    decisions: Counter = field(default_factory=Counter)  # by status
    dead_letters: Counter = field(default_factory=Counter)  # by error code
    nodes: Counter = field(default_factory=Counter)
    carriers: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    recent: deque = field(default_factory=lambda: deque(maxlen=200_000))  # (recv_s, latency_ms)
    splits: int = 0
    late: int = 0


def percentile(values: Iterable[float], q: float) -> float:
    arr = np.fromiter(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


class OutputTap:
    """Consumes the output topics in a thread; read `stats` under `lock`."""

    def __init__(self, bootstrap: str, decisions_topic: str, dead_topic: str,
                 kafka: dict | None = None) -> None:
        self._conf = {"bootstrap.servers": bootstrap, **(kafka or {})}
        self._topics = (decisions_topic, dead_topic)
        self._dead_topic = dead_topic
        self.stats = TapStats()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="output-tap", daemon=True)

    def start(self) -> OutputTap:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        consumer = Consumer({
            "fetch.wait.max.ms": "25", **self._conf, "group.id": "fulfil-tap",
            "enable.auto.commit": "false", "enable.partition.eof": "false",
        })
        parts = list_partitions(self._conf, self._topics)
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(2000, 0.1)
                if msgs:
                    self._absorb(msgs)
        finally:
            consumer.close()

    def _absorb(self, msgs: list) -> None:
        recv_ms = time.time() * 1000.0
        recv_s = recv_ms / 1000.0
        with self.lock:
            s = self.stats
            for m in msgs:
                if m.error() is not None:
                    continue
                value = orjson.loads(m.value())
                if m.topic() == self._dead_topic:
                    s.dead_letters[value["error"]["code"]] += 1
                    continue
                s.decisions[value["status"]] += 1
                if value["status"] != "routed":
                    continue
                latency = recv_ms - value["timings"]["event_time"]
                s.latencies_ms.append(latency)
                s.recent.append((recv_s, latency))
                for sh in value["shipments"]:
                    s.nodes[sh["node_id"]] += 1
                    s.carriers[f'{sh["carrier"]}/{sh["service"]}'] += 1
                s.splits += value["splits"] > 0
                s.late += not value["on_time"]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.stats):
                    return True
            time.sleep(0.05)
        return False
