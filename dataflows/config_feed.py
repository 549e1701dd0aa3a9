"""Hot-reloaded business rules: every process follows the compacted config topic.

Why a side consumer instead of a dataflow input: rules must reach *every* worker of every process
(each routes its own share of orders), while a bytewax input partition is read by one worker.
A tiny consumer thread per process reads `fulfil.config` from the beginning (it is compacted:
the newest record per name survives), compiles each `rules` record against the network, and
swaps the router's rule set in one reference assignment. Workers read `current()` once per wave.

- A record that does not compile (the CLI validates before publishing, so this means a bad
  hand-made record) is logged with every problem and counted; the last good rules stay in force.
- Until the topic has been read to its end once, `current()` blocks (up to `startup_timeout_s`):
  routing the first orders after a restart without the published holds and restrictions would
  break them silently. The end is the fetch's end-of-partition signal, which is exact even where
  the reported high watermark lags (the embedded broker).
- A new version is in force within about `poll_s` + the broker's fetch wait of being published
  (the tests check it in under a second, by all workers).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from dataflows.connectors import KafkaConnectorError, list_partitions
from fulfil import metrics
from fulfil.config import Config
from operators.network import Network
from operators.rules import FileError, RuleSet, compile_rules, empty_ruleset
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate

log = logging.getLogger("fulfil.config_feed")


class RulesFeed:
    """The newest compiled rules published on the config topic; see the module docstring."""

    def __init__(self, config: Config, network: Network, stop: threading.Event | None = None,
                 *, poll_s: float = 0.1, startup_timeout_s: float = 60.0) -> None:
        self._topic = config.topic("config")
        self._network = network
        self._kafka = config.kafka_common()
        self._poll_s = poll_s
        self._startup_timeout_s = startup_timeout_s
        self._rules: RuleSet = empty_ruleset()
        self._ready = threading.Event()
        self._stop = stop or threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fulfil-rules-feed", daemon=True)
        self._thread.start()

    def current(self) -> RuleSet:
        """The rules in force (blocks until the topic was read to its end once)."""
        if not self._ready.is_set() and not self._ready.wait(self._startup_timeout_s):
            raise KafkaConnectorError(
                f"rules feed: {self._topic} not read to its end within "
                f"{self._startup_timeout_s:.0f} s ({self._error or 'no error reported'})"
            )
        return self._rules

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    # -- the consumer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            parts = list_partitions(self._kafka, [self._topic])
        except Exception as exc:  # reported through current()
            self._error = exc
            log.error("rules feed: cannot list %s: %s", self._topic, exc)
            return
        consumer = Consumer({
            **self._kafka, "group.id": "fulfil-config-feed", "enable.auto.commit": "false",
            "enable.partition.eof": "true", "fetch.wait.max.ms": "50",
        })
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
        at_end: set[int] = set()
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(100, self._poll_s):
                    err = msg.error()
                    if err is None:
                        self._apply(msg.value())
                    elif err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        if len(at_end) == len(parts):
                            self._ready.set()
                    else:
                        self._error = KafkaConnectorError(err.str())
                        log.warning("rules feed: %s", err.str())
        finally:
            consumer.close()

    def _apply(self, value: bytes | None) -> None:
        try:
            record = decode_and_validate("config_record", value)
        except ValidationError as exc:
            metrics.RULES_RELOADS.labels(outcome="invalid").inc()
            log.error("rules feed: a record on %s is not a config record: %s", self._topic, exc)
            return
        if record["name"] != "rules":
            return
        try:
            rules = compile_rules(record["text"], self._network, f"rules {record['version']}")
        except FileError as exc:
            metrics.RULES_RELOADS.labels(outcome="rejected").inc()
            log.error("rules feed: version %s rejected, keeping %s:\n%s", record["version"],
                      self._rules.version, exc)
            return
        self._rules = rules
        metrics.RULES_RELOADS.labels(outcome="applied").inc()
        metrics.RULES_VERSION.info({"version": rules.version})
        metrics.RULES_APPLIED_AT.set(time.time())
        log.info("rules feed: version %s in force (%d rules)", rules.version, len(rules.rules),
                 extra={"step": "rules-reload"})


def rules_record(text: str, version: str, by: str, now_ms: int | None = None) -> dict[str, Any]:
    """The config record `fulfil rules publish` sends (validated against its contract)."""
    return {"name": "rules", "version": version, "text": text,
            "published_at": now_ms if now_ms is not None else time.time_ns() // 1_000_000,
            "published_by": by}
