"""Prometheus metrics of the engine (one registry per process; bytewax workers share it).

Label values are bounded sets (topic names, partition numbers, status enums, error codes): never
ids or free text, and never anything secret. Nothing here costs more than a counter increment
per event: per-partition gauges are refreshed per batch (at most once a second), not per message.
The dashboard (`deploy/grafana/`) and the alert rules (`deploy/prometheus/rules.yml`) read these
names; `tests/test_deploy` fails if they reference one that is not defined here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import HistogramMetricFamily

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
ALERTS = Counter("fulfil_alerts_total", "Watchtower alerts emitted (status: trigger|update|resolve)", ["type", "status"])  # noqa: E501


class BatchHistogram:
    """A histogram fed a batch at a time: the same exposition as a prometheus_client Histogram
    (`_bucket{le}`, `_count`, `_sum`), through the client's custom-collector API.

    Why: the router observes one latency per decision, and `Histogram.observe` takes a lock and
    walks the buckets in Python per value, ~3-4% of the routing step's time (py-spy). Here a
    batch costs one numpy `searchsorted` + `bincount` under one lock.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self._doc = name, documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def observe_many(self, values: Sequence[float] | np.ndarray) -> None:
        """Count each value in the first bucket whose upper bound is >= it (Prometheus `le`)."""
        if not len(values):
            return
        v = np.asarray(values, dtype=np.float64)
        counts = np.bincount(np.searchsorted(self._bounds, v, side="left"),
                             minlength=len(self._counts))
        total = float(v.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        les = [*(repr(float(b)) for b in self._bounds), "+Inf"]
        yield HistogramMetricFamily(self.name, self._doc,
                                    buckets=list(zip(les, cumulative, strict=True)),
                                    sum_value=total)


EVENT_TO_DECISION = BatchHistogram(
    "fulfil_event_to_decision_seconds",
    "Order event time to decision time",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SECONDS = Histogram(
    "fulfil_route_batch_seconds",
    "Wall time of one routing batch (all Redis round trips and the kernel)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)


# Kafka sources (dataflows/connectors.py). Lag = the partition's high watermark as the consumer
# last saw it in a fetch response, minus the next offset the engine will read. The embedded tansu
# broker's high watermark can trail the true log end by about one producer batch, so there the
# figure is a lower bound; on Apache Kafka it is exact up to one fetch round trip.
CONSUMER_LAG = Gauge(
    "fulfil_consumer_lag_messages",
    "Messages in the partition not yet read by the engine (high watermark - next offset)",
    ["topic", "partition"],
)
SOURCE_SNAPSHOT = Gauge(
    "fulfil_source_snapshot_timestamp_seconds",
    "Unix time of the last epoch snapshot of a source's partitions (bytewax calls it every "
    "epoch, with or without recovery): a stale value means the dataflow stopped advancing",
    ["topic"],
)
SOURCE_RESUMES = Counter(
    "fulfil_source_resumes_total",
    "Source slots rebuilt from a recovery snapshot (rather than from --start-from)",
    ["topic"],
)
SINK_FLUSH = Histogram(
    "fulfil_sink_flush_seconds",
    "Time to deliver an epoch's outstanding messages before bytewax commits the epoch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
)
BUILD_INFO = Gauge(
    "fulfil_build_info", "Always 1; labels name the running code and network",
    ["version", "network_version"],
)


def package_version() -> str:
    """The installed fulfil version (a source checkout without install reports 'unknown')."""
    try:
        return version("fulfil")
    except PackageNotFoundError:
        return "unknown"


def publish_build_info(network_path: str | None = None) -> str:
    """Set `fulfil_build_info` for this process; returns the network version it names.

    Loads the network file the workers will route with (the shipped one by default; cached), so a
    dashboard can tell which network each process runs, e.g. during a rolling network change.
    """
    from operators.network import Network, load_default

    network = Network.load(network_path) if network_path else load_default()
    BUILD_INFO.labels(version=package_version(), network_version=network.version).set(1)
    return network.version


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on loopback by default (SREs opt in to a wider bind)."""
    start_http_server(port, addr=addr)

REDIS_SECONDS = Histogram(
    "fulfil_redis_roundtrip_seconds",
    "Wall time of one Redis round trip (a pipeline), by what it held",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
STATE_ENTRIES = Gauge("fulfil_state_entries",
                      "Entries held in a piece of worker or shared state, sampled per batch "
                      "at most every few seconds", ["state"])


def observe_redis(op: str, seconds: float) -> None:
    """`state.ledger.Ledger`'s round-trip observer."""
    REDIS_SECONDS.labels(op=op).observe(seconds)


REROUTES = Counter("fulfil_reroutes_total",
                   "Open orders re-planned before pickup (a lane or node turned bad, now or "
                   "forecast; a merge), by outcome: requested, kept-by-threshold (its plan's "
                   "miss probability is within reroute_miss_threshold: not re-planned), "
                   "moved, unchanged (same plan is "
                   "still best), no-alternative (kept its plan), not-open (shipped or gone), "
                   "lost (the new plan's stock went elsewhere; kept its plan), declined (an "
                   "automatic merge of an order its customer asked to ship alone)", ["outcome"])
DELIVERIES_LEARNED = Counter("fulfil_deliveries_learned_total",
                             "Delivered shipments fed to the online delivery-time model "
                             "(learned), or without the lane fields it needs (skipped)",
                             ["outcome"])
TRANSIT_UPDATES = Counter("fulfil_transit_updates_total",
                          "Lane transit-distribution changes published to the routers")
RULES_RELOADS = Counter("fulfil_rules_reloads_total",
                        "Rules records read from the config topic, by outcome "
                        "(applied, rejected: did not compile, invalid: not a config record)",
                        ["outcome"])
RULES_VERSION = Info("fulfil_rules", "The business rules version in force in this process")
HEAP_FROZEN = Gauge("fulfil_heap_frozen_objects",
                    "Objects the process moved out of the garbage collector's reach after "
                    "warm-up (fulfil/heap.py); 0 until then, or when the freeze is off")
RULES_APPLIED_AT = Gauge("fulfil_rules_applied_timestamp_seconds",
                         "When this process last switched to new business rules")
RULE_HITS = Counter("fulfil_rule_hits_total", "Orders a business rule matched, per rule id "
                    "(ids come from the rules file, a bounded set)", ["rule"])
