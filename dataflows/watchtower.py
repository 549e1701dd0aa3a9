"""The watchtower dataflow: detect trouble in the streams, one alert per incident.

```
 fulfil.orders ────────┐                  ┌─► order-hub (shards: orders, decisions, tracking)
 fulfil.inventory ─────┤                  │     ├─► stock deltas ─────────────┐
 fulfil.carrier-status ┼─► watch-in ─► parse    ├─► velocity-window ──────────┼─► stock-out
 fulfil.decisions ─────┤   (RawMessage) (facts) ├─► transit-window ─► lane-transit
 fulfil.dead-letters ──┘                  │     └─► partials (stuck, delivery risk)
                                          ├─► lane-status (per announced lane key)
                                          ├─► demand-window (tumbling) ─► demand
                                          ├─► quality-window (tumbling) ─► data-quality
                                          └─► abnormal-history (shards) ─► abnormal-patterns
 every verdict and partial ─► incidents (per dedup key) ─► alerts-out ─► fulfil.alerts
```

Why its own flow, not steps of the routing flow: routing is the latency-critical path, and
detection needs state over hours (baselines, open orders) that has nothing to do with routing one
order. It reads the same topics anyone can read, writes only `fulfil.alerts` (and, optionally,
dead letters), and can stop, lag or be replayed without the router noticing.

Time: every detector runs in event time, on one watermark for the whole flow: the low watermark
of every input partition (`operators.watch.clock.StreamClock`, fed by the parse step). Windows
(bytewax `fold_window`, through `StreamWindowClock`) close and keyed timers fire when every input
has passed the point, so a backlog read unevenly across partitions drops nothing as late, and a
timer still fires when no further event arrives for its key (a live input's time moves with the
wall clock). One process per watchtower (worker threads share the clock).

Bounded state: every keyed state is discarded as soon as it holds nothing; orders are dropped
after their promise (or soon after delivery or cancellation), skus and lanes after idle periods,
fingerprints after the duplicate window. `dataflows.watch_steps.STATE` shows what is held.

Run it with `fulfil watch ...` or `python -m bytewax.run dataflows.watchtower:flow`
(configuration from `FULFIL_*` variables, thresholds from `FULFIL_WATCH_THRESHOLDS`).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators.windowing import SlidingWindower, TumblingWindower, fold_window

from dataflows.connectors import KafkaSink, KafkaSource, OutMessage, list_partitions
from dataflows.watch_parse import KINDS, ParseInputs
from dataflows.watch_steps import StateSizes, StreamWindowClock, WindowResult, builder
from fulfil import heap, metrics
from fulfil import watch_metrics as wm
from fulfil.config import Config, load_config
from operators.network import Network, load_default
from operators.watch import detectors as det
from operators.watch.clock import StreamClock
from operators.watch.facts import NetInfo
from operators.watch.incidents import metric_status
from operators.watch.lanes import TransitAgg
from operators.watch.quality import QualityAgg
from operators.watch.settings import WatchSettings, load_settings

ALIGN = datetime(1970, 1, 1, tzinfo=UTC)
SINK_PARTS = 4


def _route(step: str, up: Stream[Any], route: str) -> Stream[tuple[str, Any]]:
    """The facts of one route, as (key, (key, value)) so each detector knows its key."""
    return op.filter_map(step, up, lambda f: (f[1], (f[1], f[2])) if f[0] == route else None)


def _window_end(windower: TumblingWindower | SlidingWindower, window_id: int) -> int:
    if isinstance(windower, TumblingWindower):
        length, offset = windower.length, windower.length
    else:
        length, offset = windower.length, windower.offset
    end = ALIGN + offset * window_id + length
    return int(end.timestamp() * 1000)


def _windowed(step: str, up: Stream[tuple[str, Any]], windower: Any, ts_of: Any, builder_: Any,
              folder: Any, merger: Any, stream: StreamClock) -> Stream[tuple[str, Any]]:
    """fold_window in event time -> (key, (key, WindowResult(end, acc)))."""
    clock = StreamWindowClock(stream, ts_of)
    plain = op.map(f"{step}-values", up, lambda kv: (kv[0], kv[1][1]))
    out = fold_window(step, plain, clock, windower, builder_, folder, merger, ordered=False)
    return op.map(f"{step}-closed", out.down, lambda kv: (
        kv[0], (kv[0], WindowResult(_window_end(windower, kv[1][0]), kv[1][1]))))


def _counts_fold(acc: dict[str, int], item: tuple[int, dict[str, int]]) -> dict[str, int]:
    for region, n in item[1].items():
        acc[region] = acc.get(region, 0) + n
    return acc


def _units_fold(acc: dict[str, int], item: tuple[int, str, int]) -> dict[str, int]:
    acc[item[1]] = acc.get(item[1], 0) + item[2]
    return acc


def _merge_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def _to_message(topic: str, alert: dict[str, Any] | tuple[str, str]
                ) -> tuple[str, OutMessage] | None:
    """An alert as a message for the sink, counted; a replayed one is only counted."""
    if isinstance(alert, tuple):
        wm.WATCH_ALERTS_REPLAYED.labels(type=alert[1]).inc()
        return None
    metrics.ALERTS.labels(type=alert["type"], status=metric_status(alert)).inc()
    key = alert["dedup_key"]
    return key, OutMessage(topic, key.encode(), orjson.dumps(alert))


def build_flow(config: Config | None = None, stop: threading.Event | None = None,
               settings: WatchSettings | None = None, network: Network | None = None,
               sizes: StateSizes | None = None) -> Dataflow:
    """The watchtower dataflow for `config` (defaults: environment / FULFIL_CONFIG) and
    `settings` (defaults: FULFIL_WATCH_THRESHOLDS file, else built-in defaults).

    `stop`, when set, ends the source so the flow drains and returns (embedding and tests);
    `sizes` receives the live keys and entries of every step (default: the process's `STATE`).
    """
    cfg = config or load_config()
    heap.configure(cfg.gc_gen0_threshold)  # fewer, cheaper collections (fulfil/heap.py)
    ws = settings or load_settings(os.environ.get("FULFIL_WATCH_THRESHOLDS"))
    net = NetInfo(network or (Network.load(cfg.network_path) if cfg.network_path
                              else load_default()))
    # The flow's event time: the low watermark of every input partition (see the clock module).
    stream = StreamClock(ws.lateness_ms, ws.live_lag_ms, ws.idle_ms)
    source = KafkaSource(cfg.kafka_common(), [cfg.topic(t) for t in KINDS],
                         slots=cfg.source_slots, start_from=cfg.start_from,
                         batch_size=cfg.batch_size, fetch_wait_max_ms=cfg.fetch_wait_max_ms,
                         fetch_min_bytes=cfg.fetch_min_bytes,
                         group_id="fulfil-watchtower", stop=stop)
    parse = ParseInputs(cfg.topic_prefix, ws, net, stream)
    started = time.time_ns() // 1_000_000
    for part in list_partitions(cfg.kafka_common(), [cfg.topic(t) for t in KINDS]):
        stream.expect(part, started)  # unread partitions hold event time back until they speak

    def stateful(step: str, up: Stream[Any], make: Any) -> Stream[Any]:
        """A detector step; its outputs, unkeyed."""
        out = op.stateful_batch(step, up, builder(step, make, stream, sizes))
        return op.map(f"{step}-out", out, lambda kv: kv[1])

    flow = Dataflow("fulfil-watchtower")
    raw = op.input("watch-in", flow, source)  # RawMessage of any watched topic
    parse_batch = heap.after_warmup(parse, cfg.gc_freeze_after_batches)
    facts = op.flat_map_batch("parse", raw, parse_batch)  # (route, key, fact)

    # per-order state: joins orders, decisions and tracking; lane records broadcast to shards
    hub_out = stateful("order-hub", _route("route-hub", facts, "hub"),
                       lambda k: det.HubDetector(k, ws, net))  # (route, key, value)

    # stock-out ahead: levels, reservation deltas, and the velocity window per node
    velocity = _windowed("velocity-window", _route("route-velocity", hub_out, "velocity"),
                         SlidingWindower(timedelta(milliseconds=ws.stock.window_ms),
                                         timedelta(milliseconds=ws.stock.slide_ms), ALIGN),
                         lambda v: v[0], dict, _units_fold, _merge_counts, stream)
    stock_in = op.merge("stock-in", _route("route-stock", facts, "stock"),
                        _route("route-deltas", hub_out, "stock"), velocity)
    stock = stateful("stock-out", stock_in, lambda k: det.StockDetector(k, ws))

    # lane disruption: announcements at once, tracking outcomes in sliding windows
    lane_status = stateful("lane-status", _route("route-lane", facts, "lane"),
                           lambda k: det.LaneStatusDetector(k, ws))
    transit = _windowed("transit-window", _route("route-transit", hub_out, "transit"),
                        SlidingWindower(timedelta(milliseconds=ws.lane.window_ms),
                                        timedelta(milliseconds=ws.lane.slide_ms), ALIGN),
                        lambda v: v.ts, TransitAgg, TransitAgg.add, TransitAgg.merge, stream)
    lane_transit = stateful("lane-transit", transit, lambda k: det.LaneTransitDetector(k, ws))

    # demand surge/collapse and data quality: tumbling windows
    demand_w = _windowed("demand-window", _route("route-demand", facts, "demand"),
                         TumblingWindower(timedelta(milliseconds=ws.demand.window_ms), ALIGN),
                         lambda v: v[0], dict, _counts_fold, _merge_counts, stream)
    demand = stateful("demand", demand_w, lambda k: det.DemandDetector(k, ws))
    quality_w = _windowed("quality-window", _route("route-dq", facts, "dq"),
                          TumblingWindower(timedelta(milliseconds=ws.quality.window_ms), ALIGN),
                          lambda v: v[0], QualityAgg, QualityAgg.add, QualityAgg.merge, stream)
    quality = stateful("data-quality", quality_w, lambda k: det.QualityDetector(k, ws))

    # abnormal orders: history shards flag orders; one incident per pattern
    flags = stateful("abnormal-history", _route("route-abn", facts, "abn"),
                     lambda k: det.AbnormalHistoryDetector(k, ws))
    patterns_in = op.merge("patterns-in", _route("route-flags", flags, "pattern"),
                           _route("route-pattern", facts, "pattern"))
    patterns = stateful("abnormal-patterns", patterns_in, lambda k: det.PatternDetector(k, ws))

    # incidents: verdicts and shards' partials per dedup key -> trigger / update / resolve
    partials = op.filter_map("partials", hub_out, lambda f: f[2] if f[0] == "partial" else None)
    verdicts = op.merge("verdicts", stock, lane_status, lane_transit, demand, quality, patterns,
                        partials)
    keyed = op.map("by-dedup-key", verdicts, lambda v: (v.dedup_key, (v.dedup_key, v)))
    alerts = stateful("incidents", keyed, lambda k: det.IncidentDetector(k, ws))
    alerts_topic = cfg.topic("alerts")
    to_kafka = op.filter_map("to-kafka", alerts, lambda a: _to_message(alerts_topic, a))
    dead = op.filter_map("dead-letters", facts, lambda f: (f[1], f[2]) if f[0] == "out" else None)
    out = op.merge("all-out", to_kafka, dead)
    op.output("alerts-out", out, KafkaSink(cfg.kafka_common(), SINK_PARTS,
                                           linger_ms=cfg.producer_linger_ms))
    return flow


def __getattr__(name: str) -> Dataflow:
    """`python -m bytewax.run dataflows.watchtower:flow` builds the flow on first access only."""
    if name == "flow":
        return build_flow()
    raise AttributeError(name)


__all__ = ["build_flow"]
