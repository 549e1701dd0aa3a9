"""The alert bridge: deliver the alerts topic to every configured receiver, losing nothing.

One worker thread per destination, each with its own consumer (`assign()`, no group join) over
every partition of the alerts topic and its own committed position in Redis
(`state.alert_offsets`). For each message, in order:

1. decode and validate it (a bad one is counted and skipped: fulfil wrote it, it is a bug);
2. if the routes send it here (and it is not an update this destination does not want, nor
   older than `max_age_ms`), deliver it: wait for the rate limiter, post, and on a retryable
   failure back off exponentially (with jitter, honouring Retry-After) and try again, for as long
   as it takes — a receiver that is down only holds back its own worker;
3. only then commit the next offset.

So a crash or a restart redelivers at most the message in flight per destination (at-least-once;
PagerDuty's dedup_key and the alerts' stable `alert_id` make a repeat harmless), and nothing is
skipped. Run one bridge process per `--name` (each destination has a single writer of its offset).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from dataflows.connectors import list_partitions
from fulfil import watch_metrics as wm
from fulfil.alerts.config import BridgeConfig, Destination
from fulfil.alerts.delivery import Outcome, Sender
from fulfil.alerts.ratelimit import TokenBucket
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate
from state.alert_offsets import OffsetStore

log = logging.getLogger("fulfil.alerts")


class DestinationWorker:
    """Consumes the alerts topic for one destination and delivers what is routed to it."""

    def __init__(self, dest: Destination, config: BridgeConfig, kafka: dict[str, str],
                 topic: str, store: OffsetStore, stop: threading.Event,
                 start_from: str = "earliest", sender: Any = None,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.dest, self.config, self.topic, self.store = dest, config, topic, store
        self._stop = stop
        self._kafka = kafka
        self._start = OFFSET_BEGINNING if start_from == "earliest" else OFFSET_END
        self._sender = sender or Sender(dest)
        self._bucket = TokenBucket(dest.rate_per_s, dest.burst)
        self._sleep = sleep or stop.wait
        self._rand = random.Random()
        self.delivered = 0
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by Bridge.run
            self.error = exc
            log.exception("alert bridge: worker %s stopped", self.dest.name,
                          extra={"step": "alert-bridge"})
        finally:
            self._sender.close()

    def _run(self) -> None:
        consumer = Consumer({**self._kafka, "group.id": f"fulfil-alert-bridge-{self.dest.name}",
                             "enable.auto.commit": "false", "enable.auto.offset.store": "false",
                             "fetch.wait.max.ms": "50", "enable.partition.eof": "false"})
        try:
            stored = self.store.load()
            consumer.assign([TopicPartition(t, p, stored.get((t, p), self._start))
                             for t, p in list_partitions(self._kafka, [self.topic])])
            while not self._stop.is_set():
                for msg in consumer.consume(100, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.fatal():
                            raise RuntimeError(f"consuming {self.topic}: {err.str()}")
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("alert bridge: %s", err.str(),
                                        extra={"step": "alert-bridge"})
                        continue
                    if not self._handle(msg.value()):
                        return  # stopping mid-delivery: not committed, redelivered next time
                    self.store.commit_one(msg.topic(), msg.partition(), msg.offset() + 1)
        finally:
            consumer.close()

    def _handle(self, raw: bytes | None) -> bool:
        """Deliver (or deliberately skip) one message; False only when stopping before done."""
        name = self.dest.name
        try:
            alert = decode_and_validate("alert", raw or b"")
        except ValidationError as exc:
            wm.ALERT_DELIVERIES.labels(destination=name, outcome="invalid").inc()
            log.warning("alert bridge: invalid alert skipped (%s)", exc.message,
                        extra={"step": "alert-bridge"})
            return True
        if name not in self.config.targets(alert) or (
                not self.dest.updates and alert["status"] == "trigger" and alert["revision"] > 1):
            wm.ALERT_DELIVERIES.labels(destination=name, outcome="skipped").inc()
            return True
        emitted = alert.get("emitted_at") or alert["last_seen"]
        if time.time() * 1000 - emitted > self.config.max_age_ms:
            wm.ALERT_DELIVERIES.labels(destination=name, outcome="stale").inc()
            return True
        return self._deliver(alert)

    def _deliver(self, alert: dict[str, Any]) -> bool:
        name, started, attempt = self.dest.name, time.perf_counter(), 0
        while not self._stop.is_set():
            wait = self._bucket.wait_s()
            if wait > 0:
                self._sleep(wait)
                continue
            self._bucket.take()
            attempt += 1
            outcome: Outcome = self._sender.send(alert)
            if outcome.kind == "delivered":
                self.delivered += 1
                wm.ALERT_DELIVERIES.labels(destination=name, outcome="delivered").inc()
                wm.ALERT_DELIVERY_SECONDS.labels(destination=name).observe(
                    time.perf_counter() - started)
                return True
            if outcome.kind == "rejected":
                wm.ALERT_DELIVERIES.labels(destination=name, outcome="rejected").inc()
                log.error("alert bridge: %s rejected %s (HTTP %s: %s); not retried", name,
                          alert["alert_id"], outcome.status, outcome.detail,
                          extra={"step": "alert-bridge"})
                return True
            wm.ALERT_DELIVERIES.labels(destination=name, outcome="retried").inc()
            delay = self.config.retry.delay_ms(attempt, self._rand.random()) / 1000
            if outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, self.config.retry.max_ms / 1000))
            log.info("alert bridge: %s failed for %s (%s %s), attempt %d, retry in %.1f s",
                     name, alert["alert_id"], outcome.status, outcome.detail, attempt, delay,
                     extra={"step": "alert-bridge"})
            self._sleep(delay)
        return False


class Bridge:
    """Starts one `DestinationWorker` per destination; `run` blocks until `stop` is set."""

    def __init__(self, config: BridgeConfig, kafka: dict[str, str], topic: str, redis: Any,
                 redis_prefix: str = "fulfil", name: str = "default",
                 start_from: str = "earliest", stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.workers = [
            DestinationWorker(d, config, kafka, topic, OffsetStore(redis, redis_prefix, name, n),
                              self.stop, start_from)
            for n, d in sorted(config.destinations.items())
        ]

    def run(self) -> int:
        threads = [threading.Thread(target=w.run, name=f"alert-bridge-{w.dest.name}",
                                    daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        try:
            while not self.stop.is_set():
                if any(w.error is not None for w in self.workers):
                    self.stop.set()
                    break
                self.stop.wait(0.5)
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=30)
        failed = [w for w in self.workers if w.error is not None]
        return 1 if failed else 0
