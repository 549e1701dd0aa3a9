"""Helpers for the watchtower tests: contract-valid events, the flow in a thread, reading alerts.

Every event built here is validated against its contract before use, so a test cannot pass on an
event the real producers would not send. Decisions are written straight to the decisions topic
(as the routing flow would), which keeps these tests about detection, not routing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from dataflows.connectors import ensure_topics, list_partitions
from dataflows.watch_steps import StateSizes
from fulfil.config import Config
from operators.deadletters import dead_letter
from operators.watch.settings import WatchSettings, settings_from
from schemas.topics import TOPICS, key_for
from schemas.validation import decode_and_validate
from tests.test_dataflows.helpers import FlowThread

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_config(bootstrap: str, prefix: str, **kw: Any) -> Config:
    base = dict(kafka_bootstrap=bootstrap, topic_prefix=prefix, start_from="earliest",
                fetch_wait_max_ms=25, epoch_interval_s=0.5, batch_size=500)
    base.update(kw)
    return Config(**base)


def create_topics(cfg: Config) -> None:
    ensure_topics(cfg.kafka_common(), {cfg.topic(t.name): t.partitions for t in TOPICS.values()})


def fast_settings(**sections: Any) -> WatchSettings:
    """Thresholds scaled for tests: short windows, few shards, small minimums."""
    base: dict[str, Any] = {
        "lateness_ms": 200, "shards": 4,
        "lane": {"window_ms": 4000, "slide_ms": 1000, "min_events": 10, "clear_windows": 2,
                 "idle_ttl_ms": 60_000},
        "stock": {"window_ms": 4000, "slide_ms": 1000, "ttso_ms": 60_000,
                  "min_units_per_window": 3, "demand_recent_ms": 10_000, "idle_ttl_ms": 60_000,
                  "sweep_ms": 1000},
        "demand": {"window_ms": 1000, "warmup_windows": 4, "min_baseline": 10.0, "z": 3.0,
                   "idle_ttl_ms": 60_000},
        "stuck": {"unrouted_after_ms": 1500, "handling_grace_ms": 0, "page_min_orders": 5},
        "abnormal": {"duplicate_window_ms": 60_000, "pattern_window_ms": 3000, "min_orders": 2,
                     "qty_min_history": 10, "qty_min": 20},
        "quality": {"window_ms": 1000, "min_dead": 5, "max_rate": 0.1, "clear_windows": 2},
        "incidents": {"update_min_interval_ms": 0, "stale_ms": 600_000, "resolve_hold_ms": 300},
    }
    for name, values in sections.items():
        if isinstance(values, Mapping):
            base[name] = {**base.get(name, {}), **values}
        else:
            base[name] = values
    return settings_from(base)


def publish(cfg: Config, topic: str, events: Iterable[Mapping[str, Any] | bytes],
            key: str | None = None) -> int:
    """Publish events: dicts are validated, then keyed by the registry; bytes are sent as is."""
    kinds = {t.name.value: t.kind for t in TOPICS.values()}
    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap, "linger.ms": 5})
    n = 0
    for ev in events:
        if isinstance(ev, bytes | bytearray):
            producer.produce(cfg.topic(topic), bytes(ev), (key or "raw").encode())
        else:
            decode_and_validate(kinds[topic], orjson.dumps(ev))
            producer.produce(cfg.topic(topic), orjson.dumps(ev), key_for(topic, dict(ev)).encode())
        n += 1
    assert producer.flush(30) == 0
    return n


# ---------------------------------------------------------------------- events


def order(order_id: str, at: int, *, channel: str = "web", customer: str | None = None,
          lines: list[tuple[str, int]] | None = None, dest: dict[str, Any] | None = None,
          promise_days: float = 5.0) -> dict[str, Any]:
    ev = {"type": "order.created", "event_id": f"e-{order_id}", "order_id": order_id,
          "occurred_at": at, "channel": channel,
          "customer": {"id": customer or f"c-{order_id}", "tier": "standard"},
          "promised_by": at + int(promise_days * DAY_MS),
          "destination": dest or {"postal_code": "20040", "region": "RJ", "country": "BR"},
          "lines": [{"line_id": str(i + 1), "sku": s, "qty": q}
                    for i, (s, q) in enumerate(lines or [("sku-a", 1)])]}
    return ev


def decision(order_id: str, at: int, *, version: int = 1, status: str = "routed",
             node: str = "N01", carrier: str = "correios", service: str = "pac",
             lines: list[tuple[str, int]] | None = None, est: int | None = None,
             promised: int | None = None) -> dict[str, Any]:
    routed = status == "routed"
    ships = [{"node_id": node, "carrier": carrier, "service": service,
              "lines": [{"line_id": str(i + 1), "sku": s, "qty": q}
                        for i, (s, q) in enumerate(lines or [("sku-a", 1)])],
              "estimated_delivery": est or at + 2 * DAY_MS, "distance_km": 400.0,
              "cost": 20.0}] if routed else []
    d: dict[str, Any] = {
        "decision_id": f"{order_id}:v{version}", "order_id": order_id, "version": version,
        "status": status, "event_id": f"e-{order_id}", "event_type": "order.created",
        "shipments": ships, "promised_by": promised or at + 5 * DAY_MS,
        "estimated_delivery": (est or at + 2 * DAY_MS) if routed else None,
        "on_time": True if routed else None, "score": -1.0 if routed else None,
        "runner_up": None, "splits": 0, "reasons": ["single-node"] if routed else [status],
        "timings": {"event_time": at - 20, "received_at": at - 10, "decided_at": at},
        "network_version": "test"}
    if status == "held":
        d["hold"] = {"group": "fraud", "reason": "review", "rule": "r1"}
    return d


def lane(carrier: str, status: str, at: int, *, dest: str | None = None,
         origin: str | None = None, delay_hours: float = 0.0, valid_until: int | None = None,
         event_id: str | None = None, reason: str = "test") -> dict[str, Any]:
    ev: dict[str, Any] = {"type": "lane.status", "event_id": event_id or f"l-{carrier}-{at}",
                          "carrier": carrier, "status": status, "delay_hours": delay_hours,
                          "capacity_factor": 0.0 if status == "outage" else 1.0,
                          "reason": reason, "occurred_at": at}
    if dest:
        ev["dest_region"] = dest
    if origin:
        ev["origin_region"] = origin
    if valid_until is not None:
        ev["valid_until"] = valid_until
    return ev


def tracking(order_id: str, status: str, at: int, *, node: str = "N01",
             carrier: str = "correios", n: int = 0) -> dict[str, Any]:
    return {"type": "shipment.tracking", "event_id": f"t-{order_id}-{status}-{n}",
            "shipment_id": f"{order_id}/{node}", "order_id": order_id, "carrier": carrier,
            "service": "pac", "node_id": node, "status": status, "occurred_at": at}


def snapshot(node: str, sku: str, on_hand: int, version: int, at: int) -> dict[str, Any]:
    return {"type": "inventory.snapshot", "event_id": f"i-{node}-{sku}-{version}",
            "node_id": node, "sku": sku, "version": version, "on_hand": on_hand,
            "occurred_at": at}


def dead_letter_for(cfg: Config, source: str, payload: bytes, at: int, offset: int) -> bytes:
    """A dead letter exactly as the routing flow writes one for a bad source event."""
    return dead_letter(topic=cfg.topic(source), partition=0, offset=offset, key=b"junk",
                       payload=payload, step=f"validate-{source}", code="decode",
                       message="payload is not valid JSON", at_ms=at, field="", rule="json")


# ---------------------------------------------------------------------- running and reading


class WatchThread(FlowThread):
    """Runs the watchtower flow in a thread (tests/test_dataflows/helpers.py FlowThread);
    `state` counts its live keys and entries per step."""

    def __init__(self, cfg: Config, settings: WatchSettings, workers: int = 1) -> None:
        from dataflows.watchtower import build_flow

        self.state = StateSizes()
        super().__init__(cfg, lambda c, stop: build_flow(c, stop=stop, settings=settings,
                                                         sizes=self.state),
                         workers=workers, join_timeout=60.0)


class AlertReader:
    """Reads the alerts topic from the start; `wait` polls until a predicate holds."""

    def __init__(self, cfg: Config) -> None:
        self.alerts: list[dict[str, Any]] = []
        self._consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "t",
                                   "enable.auto.commit": "false", "fetch.wait.max.ms": "25"})
        parts = list_partitions(cfg.kafka_common(), [cfg.topic("alerts")])
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])

    def poll(self) -> list[dict[str, Any]]:
        for m in self._consumer.consume(500, 0.1):
            if m.error() is None:
                alert = orjson.loads(m.value())
                decode_and_validate("alert", m.value())  # every alert honours its contract
                self.alerts.append(alert)
        return self.alerts

    def wait(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 60.0,
             what: str = "alerts") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.poll()):
                return self.alerts
        seen = [(a["dedup_key"], a["status"], a["revision"]) for a in self.alerts]
        raise AssertionError(f"{what} not seen within {timeout} s; got {seen}")

    def of(self, prefix: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["dedup_key"].startswith(prefix)]

    def close(self) -> None:
        self._consumer.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
             describe: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    seen = f"; now {describe()}" if describe is not None else ""
    raise AssertionError(f"{what} not met within {timeout} s{seen}")
