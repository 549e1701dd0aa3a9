"""Prometheus metrics of the watchtower flow and the alert bridge.

Kept apart from `fulfil/metrics.py` (the routing engine's; only `fulfil_alerts_total` lives there,
as the issue names it) so each owner changes their own file; all register in the process's
default registry. Label values are bounded sets (registry topic names, step ids, destination
names from the bridge's config file, outcome words), never ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WATCH_EVENTS = Counter(
    "fulfil_watch_events_total",
    "Messages read by the watchtower, per topic and outcome (ok | invalid | undecodable | failed)",
    ["topic", "outcome"],
)
WATCH_STATE_KEYS = Gauge(
    "fulfil_watch_state_keys", "Live keyed states per watchtower step (bounded: expired state "
    "is discarded)", ["step"],
)
WATCH_STATE_ENTRIES = Gauge(
    "fulfil_watch_state_entries", "Entries held per watchtower step (orders, skus, fingerprints, "
    "lane records, open incidents)", ["step"],
)
WATCH_ALERTS_REPLAYED = Counter(
    "fulfil_watch_alerts_replayed_total",
    "Alert revisions not sent because their evidence is older than the replay horizon "
    "(a restart reading the topics again)", ["type"],
)
ALERT_DELIVERIES = Counter(
    "fulfil_alert_deliveries_total",
    "Alert deliveries by the bridge, per destination and outcome (delivered | retried | "
    "rejected | skipped | stale | invalid)",
    ["destination", "outcome"],
)
ALERT_DELIVERY_SECONDS = Histogram(
    "fulfil_alert_delivery_seconds",
    "Wall time of one successful delivery (all attempts, backoff and rate limiting included)",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
