"""Helpers for the tracking tests: contract-valid events of every tracked topic, a runner for the
tracking flow in a thread, and waiting on the Redis read model.

Events are built as the real producers build them (decisions via the contract's shape, dead
letters via `operators.deadletters.dead_letter`), and every one is validated before use, so a
test can never pass on an event the real system would not produce.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import REGISTRY

from fulfil.config import Config
from operators.deadletters import dead_letter
from schemas.validation import decode_and_validate
from tests.test_dataflows.helpers import FlowThread

T0 = int(time.time() * 1000) - 60_000
DAY_MS = 86_400_000


def decision(order_id: str, version: int, status: str, at: int, *, node: str = "N01",
             carrier: str = "correios", service: str = "pac", event_id: str | None = None,
             event_type: str = "order.created", reasons: list[str] | None = None) -> dict:
    ships = [] if status != "routed" else [{
        "node_id": node, "carrier": carrier, "service": service,
        "lines": [{"line_id": "1", "sku": "sku-a", "qty": 1}],
        "estimated_delivery": at + 2 * DAY_MS, "distance_km": 12.0, "cost": 20.0}]
    d = {"decision_id": f"{order_id}:v{version}", "order_id": order_id, "version": version,
         "status": status, "event_id": event_id or f"e-{order_id}-{version}",
         "event_type": event_type, "shipments": ships, "promised_by": at + 5 * DAY_MS,
         "estimated_delivery": at + 2 * DAY_MS if ships else None,
         "on_time": True if ships else None, "score": -1.0 if ships else None,
         "runner_up": None, "splits": 0,
         "reasons": reasons or (["single-node", "on-time"] if ships else [status]),
         "timings": {"event_time": at - 10, "received_at": at - 5, "decided_at": at},
         "network_version": "test"}
    decode_and_validate("decision", orjson.dumps(d))
    return d


def order_event(kind: str, order_id: str, at: int, event_id: str, **extra: Any) -> dict:
    ev: dict[str, Any] = {"type": kind, "event_id": event_id, "order_id": order_id,
                          "occurred_at": at}
    if kind == "order.created":
        ev.update(channel="web", promised_by=at + 5 * DAY_MS,
                  destination={"postal_code": "01310", "region": "SP"},
                  lines=[{"line_id": "1", "sku": "sku-a", "qty": 1}])
    elif kind == "order.address_changed":
        ev.update(destination={"postal_code": "90010", "region": "RS"})
    ev.update(extra)
    return ev


def tracking(order_id: str, status: str, at: int, event_id: str, node: str = "N01") -> dict:
    return {"type": "shipment.tracking", "event_id": event_id, "shipment_id": f"{order_id}/{node}",
            "order_id": order_id, "carrier": "correios", "service": "pac", "node_id": node,
            "status": status, "occurred_at": at}


def dead(cfg: Config, source: str, payload: bytes, *, code: str, at: int, offset: int,
         key: str | None, field: str = "", rule: str = "", step: str = "validate-orders",
         message: str = "bad") -> bytes:
    """A dead letter exactly as the routing flow writes it (bytes)."""
    return dead_letter(topic=cfg.topic(source), partition=0, offset=offset,
                       key=None if key is None else key.encode(), payload=payload, step=step,
                       code=code, message=message, at_ms=at, field=field, rule=rule)


def events_seen() -> float:
    """Messages the tracking flow has read in this process so far (all topics, all outcomes)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "fulfil_tracking_events":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


def TrackingThread(cfg: Config) -> FlowThread:
    """Runs the tracking flow in a thread (see tests/test_dataflows/helpers.py FlowThread)."""
    from dataflows.tracking import build_flow

    return FlowThread(cfg, build_flow)
