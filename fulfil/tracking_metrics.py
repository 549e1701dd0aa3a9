"""Prometheus metrics of the tracking flow and the order query endpoint.

Kept apart from `fulfil/metrics.py` (the routing engine's) so each owner changes their own; both
register in the process's default registry, so one `/metrics` endpoint serves them all. Label
values are bounded sets (registry topic names, outcome words), never order ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TRACKING_EVENTS = Counter(
    "fulfil_tracking_events_total",
    "Messages read by the tracking flow, per source topic and outcome "
    "(recorded | skipped | invalid | undecodable | failed)",
    ["topic", "outcome"],
)
TRACKING_ENTRIES = Counter(
    "fulfil_tracking_entries_total", "New lifecycle entries stored (replayed messages add none)"
)
TRACKING_TRIMMED = Counter(
    "fulfil_tracking_entries_trimmed_total",
    "Oldest entries dropped to keep each order within tracking_max_entries",
)
TRACKING_WRITE_SECONDS = Histogram(
    "fulfil_tracking_write_seconds",
    "Wall time of one lifecycle batch write (one Redis pipeline)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
ORDER_QUERIES = Counter(
    "fulfil_order_queries_total", "Order lookups over HTTP, by outcome (found | unknown | "
    "bad-request | error)", ["outcome"],
)
