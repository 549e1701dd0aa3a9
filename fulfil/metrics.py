"""Prometheus metrics of the engine (one registry per process; bytewax workers share it).

Label values are bounded sets (topic names, status enums, error codes): never ids or free text,
and never anything secret.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

EVENTS_IN = Counter("fulfil_events_in_total", "Events read, per source topic", ["topic"])
DECISIONS = Counter("fulfil_decisions_total", "Routing decisions emitted, by status", ["status"])
DEAD_LETTERS = Counter(
    "fulfil_dead_letters_total", "Events set aside to the dead-letter topic", ["topic", "code"]
)
REPLAYS = Counter("fulfil_replayed_decisions_total", "Recorded decisions re-emitted (replays)")
RACES_LOST = Counter("fulfil_reservation_races_lost_total", "Reservations lost to a competitor")
INVENTORY_APPLIED = Counter(
    "fulfil_inventory_events_total", "Inventory events by ledger outcome", ["outcome"]
)
LANE_UPDATES = Counter("fulfil_lane_updates_total", "Lane-health changes published")
EVENT_TO_DECISION = Histogram(
    "fulfil_event_to_decision_seconds",
    "Order event time to decision time",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SECONDS = Histogram(
    "fulfil_route_batch_seconds",
    "Wall time of one routing batch (all Redis round trips and the kernel)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on loopback by default (SREs opt in to a wider bind)."""
    start_http_server(port, addr=addr)
