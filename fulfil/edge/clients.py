"""Kafka and Redis clients for the edge links, configured for a link that drops.

Why separate from `dataflows/connectors.py`: the links are not bytewax flows. They read with
`assign()` from offsets they store themselves (on the destination side), and they must survive
a WAN that disappears for minutes: producers are idempotent and never give a message up
(`message.timeout.ms=0`), so a batch in flight when the link drops is delivered exactly once
when it returns; clients reconnect quickly; Redis calls time out instead of hanging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Producer

from fulfil.config import Config
from operators.edge.messages import LinkMsg, Send
from state.redis_client import connect

log = logging.getLogger("fulfil.edge")
_KAFKA_LOG = logging.getLogger("fulfil.edge.kafka")
_KAFKA_LOG.setLevel(logging.WARNING)


def kafka_config(cfg: Config, client_id: str, *, wan: bool) -> dict[str, Any]:
    """librdkafka settings of one link client; WAN clients reconnect within half a second."""
    # connection failures are the normal state of a cut link (the status reports them): only
    # critical librdkafka events are logged
    conf: dict[str, Any] = {**cfg.kafka_common(), "client.id": client_id, "logger": _KAFKA_LOG,
                            "log_level": 2}
    if wan:
        conf.update({"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
                     "socket.connection.setup.timeout.ms": 5000, "log.connection.close": False})
    return conf


def consumer(cfg: Config, client_id: str, *, wan: bool, start: str = "earliest") -> Consumer:
    """A consumer for `assign()` only (no group join, no commits: progress is ours)."""
    return Consumer({
        **kafka_config(cfg, client_id, wan=wan),
        "group.id": client_id, "enable.auto.commit": False, "enable.auto.offset.store": False,
        "enable.partition.eof": False, "fetch.wait.max.ms": max(cfg.fetch_wait_max_ms, 25),
        "auto.offset.reset": start,
    })


def start_offset(start: str) -> int:
    return OFFSET_BEGINNING if start == "earliest" else OFFSET_END


def redis_client(url: str, timeout_s: float) -> Any:
    """A Redis client whose calls fail within `timeout_s` when the other side is gone."""
    return connect(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def link_msg(msg: Any, short: dict[str, str]) -> LinkMsg:
    """A consumed confluent-kafka message as plain data (topic by its short name)."""
    return LinkMsg(short[msg.topic()], msg.partition(), msg.offset(), msg.key(), msg.value(),
                   tuple(msg.headers() or ()), msg.timestamp()[1])


class Outbox:
    """One idempotent producer and the delivery state of what was handed to it.

    `send` enqueues; `pending()` is what is not acknowledged yet; failures are kept (with the
    record) to be sent again. librdkafka retries by itself for ever, so a record is acknowledged
    exactly once per producer, whatever the link does meanwhile.
    """

    def __init__(self, cfg: Config, client_id: str, *, wan: bool) -> None:
        self._prefix = cfg.topic_prefix
        self.producer = Producer({
            **kafka_config(cfg, client_id, wan=wan),
            "enable.idempotence": True, "acks": "all", "message.timeout.ms": 0,
            "linger.ms": max(cfg.producer_linger_ms, 5), "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        })
        self._lock = threading.Lock()
        self._failed: list[tuple[Send, str]] = []
        self.sent = 0

    def send(self, records: Iterable[Send]) -> int:
        n = 0
        for rec in records:
            self._produce(rec)
            n += 1
        self.producer.poll(0)
        return n

    def _produce(self, rec: Send) -> None:
        def done(err: KafkaError | None, _msg: Any, rec: Send = rec) -> None:
            if err is not None:
                with self._lock:
                    self._failed.append((rec, err.str()))

        while True:
            try:
                self.producer.produce(f"{self._prefix}{rec.topic}", rec.value, rec.key,
                                      headers=list(rec.headers), on_delivery=done)
                return
            except BufferError:
                self.producer.poll(0.05)

    def flush(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for acknowledgements; returns how many are still pending."""
        return self.producer.flush(timeout_s)

    def take_failures(self) -> list[tuple[Send, str]]:
        with self._lock:
            failed, self._failed = self._failed, []
        return failed

    def deliver(self, stop: threading.Event, link_timeout_s: float,
                on_slow: Any = None) -> list[tuple[Send, str]]:
        """Flush until everything is acknowledged (or `stop`); `on_slow()` once when it takes
        longer than `link_timeout_s`. Returns the records that failed for good (resend them)."""
        started = time.monotonic()
        slow = False
        while self.flush(0.1) and not stop.is_set():
            if not slow and time.monotonic() - started > link_timeout_s:
                slow = True
                if on_slow is not None:
                    on_slow()
        return self.take_failures()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
