"""The watchtower's first step: validate every message and route small facts to the detectors.

One `flat_map_batch` over everything the watchtower reads. Each message is decoded and validated
against its contract (`schemas.validation`), then reduced to the facts of `operators.watch.facts`,
each tagged with the route and key of the step that needs it::

    ("hub", "h7", OrderIn(...))          per-order state, sharded by order id
    ("lane", "correios|*|*|RJ", LaneRec)  lane announcements (also broadcast to every hub shard)
    ("stock", "N01", InventoryIn)         stock level per node
    ("demand", "web", (ts, {region: n}))  order counts, pre-aggregated per batch and window
    ("dq", "orders", (ts, events, dead))  events read and dead letters, per source topic
    ("abn", "a3", DupCheck | QtyCheck)    abnormal-order history, sharded
    ("pattern", "address", Flag)          an order flagged already (bad address)
    ("out", key, OutMessage)              a dead letter for the Kafka sink

Errors as data: a message that does not decode or validate never stops the flow. It is counted
(`fulfil_watch_events_total{outcome}`) and still counts as an event of its topic for the
data-quality rate. The routing flow already dead-letters the source topics' bad events, so the
watchtower only does when `dead_letter_bad_input` is set (a deployment where nothing else
validates them); bad messages on fulfil's own topics (decisions, dead letters) are a bug to
surface, logged at most once a minute, never re-queued (writing them to the dead-letter topic this
flow reads would loop).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter
from typing import Any

from dataflows.connectors import OutMessage, RawMessage
from fulfil import watch_metrics as wm
from operators.deadletters import dead_letter
from operators.watch import abnormal
from operators.watch.clock import StreamClock
from operators.watch.facts import (
    NetInfo,
    address_in,
    decision_in,
    inventory_in,
    lane_rec,
    order_in,
    track_in,
)
from operators.watch.hub import shard_of
from operators.watch.patterns import DupCheck, QtyCheck
from operators.watch.quality import BAD_INPUT_CODES
from operators.watch.settings import WatchSettings
from schemas.errors import ValidationError
from schemas.validation import decode_and_validate

log = logging.getLogger("fulfil.watchtower")

#: Registry names the watchtower reads, and the schema kind of each.
KINDS = {"orders": "order_event", "inventory": "inventory_event",
         "carrier-status": "carrier_event", "decisions": "decision",
         "dead-letters": "dead_letter"}
SOURCE_TOPICS = ("orders", "inventory", "carrier-status")
_WARN_EVERY_S = 60.0

Fact = tuple[str, str, Any]


def abn_shard(kind: str, name: str, shards: int) -> str:
    return f"a{zlib.crc32(f'{kind}:{name}'.encode()) % shards}"


class ParseInputs:
    """`flat_map_batch` mapper: RawMessage batch -> routed facts (see the module docstring)."""

    def __init__(self, prefix: str, settings: WatchSettings, net: NetInfo,
                 clock: StreamClock | None = None) -> None:
        self._prefix, self._cfg, self._net, self._clock = prefix, settings, net, clock
        self._names = {f"{prefix}{name}": name for name in KINDS}
        self._dlq = f"{prefix}dead-letters"
        self._warned: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, batch: list[RawMessage]) -> list[Fact]:
        out: list[Fact] = []
        outcomes: Counter[tuple[str, str]] = Counter()
        demand: dict[tuple[str, int], tuple[int, Counter[str]]] = {}
        dq: dict[tuple[str, int], list[int]] = {}
        latest: dict[tuple[str, int], int] = {}
        for raw in batch:
            name = self._names.get(raw.topic, "other")
            outcome, ts = self._one(name, raw, out, demand, dq)
            outcomes[name, outcome] += 1
            part = (raw.topic, raw.partition)
            latest[part] = max(latest.get(part, 0), ts or raw.timestamp_ms)
        for (key, _), (ts, counts) in demand.items():
            out.append(("demand", key, (ts, dict(counts))))
        for (topic, _), (ts, events, dead) in dq.items():
            out.append(("dq", topic, (ts, events, dead)))
        for (name, outcome), n in outcomes.items():
            wm.WATCH_EVENTS.labels(topic=name, outcome=outcome).inc(n)
        if self._clock is not None:  # how far each partition has been read, in event time
            wall = time.time_ns() // 1_000_000
            for part, ts in latest.items():
                if ts > 0:
                    self._clock.observe(part, ts, wall)
        return out

    # ------------------------------------------------------------------ one message

    def _one(self, name: str, raw: RawMessage, out: list[Fact],
             demand: dict[tuple[str, int], tuple[int, Counter[str]]],
             dq: dict[tuple[str, int], list[int]]) -> tuple[str, int]:
        kind = KINDS.get(name)
        ts = raw.timestamp_ms if raw.timestamp_ms > 0 else raw.received_ms
        if name in SOURCE_TOPICS:
            self._count_dq(dq, name, ts, 1, 0)
        if kind is None:
            return "skipped", 0
        try:
            ev = decode_and_validate(kind, raw.value or b"")
        except ValidationError as exc:
            outcome = "undecodable" if exc.code == "decode" else "invalid"
            self._bad(name, raw, exc, out, outcome)
            return outcome, 0
        try:
            ts = self._facts(name, ev, ts, out, demand, dq)
        except Exception:  # a bug on an odd but valid event: count it, keep the stream going
            log.debug("could not use %s/%d/%d", raw.topic, raw.partition, raw.offset,
                      exc_info=True, extra={"step": "watch-parse"})
            return "failed", 0
        return "ok", ts

    def _facts(self, name: str, ev: dict[str, Any], ts: int, out: list[Fact],
               demand: dict[tuple[str, int], tuple[int, Counter[str]]],
               dq: dict[tuple[str, int], list[int]]) -> int:
        cfg, net = self._cfg, self._net
        shards = cfg.shards
        if name == "orders":
            typ = ev["type"]
            if typ == "order.created":
                f = order_in(ev, net)
                out.append(("hub", shard_of(f.order_id, shards), f))
                self._demand(demand, f.channel, f.dest_region, f.ts)
                self._abnormal(ev, f.customer, out)
                return f.ts
            if typ == "order.address_changed":
                a = address_in(ev, net)
                out.append(("hub", shard_of(a.order_id, shards), a))
                self._address(ev, out)
                return a.ts
            return int(ev["occurred_at"])
        if name == "inventory":
            inv = inventory_in(ev)
            out.append(("stock", ev["node_id"], inv))
            return inv.ts
        if name == "carrier-status":
            if ev["type"] == "lane.status":
                rec = lane_rec(ev)
                out.append(("lane", rec.key, rec))
                out.extend(("hub", f"h{i}", rec) for i in range(shards))
                return rec.ts
            if ev["type"] == "node.closure":  # closures reach the watch through re-routes
                return int(ev["occurred_at"])
            t = track_in(ev)
            out.append(("hub", shard_of(t.order_id, shards), t))
            return t.ts
        if name == "decisions":
            d = decision_in(ev, net)
            out.append(("hub", shard_of(d.order_id, shards), d))
            return d.ts
        # dead letters: input the routing flow rejected, counted against its source topic
        source = str((ev.get("source") or {}).get("topic") or "")
        short = source[len(self._prefix):] if source.startswith(self._prefix) else source
        if short in SOURCE_TOPICS and ev["error"]["code"] in BAD_INPUT_CODES \
                and not str(ev.get("step", "")).startswith("watch-"):
            self._count_dq(dq, short, int(ev["at"]), 0, 1)
        return int(ev["at"])

    # ------------------------------------------------------------------ helpers

    def _demand(self, demand: dict[tuple[str, int], tuple[int, Counter[str]]], channel: str,
                region: str | None, ts: int) -> None:
        bucket = ts // self._cfg.demand.window_ms
        for key in (channel or "unknown", "*"):
            prev_ts, counts = demand.get((key, bucket), (0, Counter()))
            counts[region or "unknown"] += 1
            demand[key, bucket] = (max(prev_ts, ts), counts)

    def _count_dq(self, dq: dict[tuple[str, int], list[int]], topic: str, ts: int,
                  events: int, dead: int) -> None:
        bucket = ts // self._cfg.quality.window_ms
        acc = dq.setdefault((topic, bucket), [0, 0, 0])
        acc[0], acc[1], acc[2] = max(acc[0], ts), acc[1] + events, acc[2] + dead

    def _abnormal(self, ev: dict[str, Any], customer: str | None, out: list[Fact]) -> None:
        shards, oid, ts = self._cfg.shards, ev["order_id"], int(ev["occurred_at"])
        fp = abnormal.fingerprint(customer, ev["lines"], ev["destination"])
        if fp is not None:
            out.append(("abn", abn_shard("fp", fp, shards),
                        DupCheck(ts, fp, oid, str(ev.get("channel", "")))))
        top = 0
        for line in ev["lines"]:
            sku, qty = str(line["sku"]), int(line["qty"])
            top = max(top, qty)
            out.append(("abn", abn_shard("sku", sku, shards), QtyCheck(ts, oid, "sku", sku, qty)))
        if customer:
            out.append(("abn", abn_shard("customer", customer, shards),
                        QtyCheck(ts, oid, "customer", customer, top)))
        self._address(ev, out)

    def _address(self, ev: dict[str, Any], out: list[Fact]) -> None:
        why = abnormal.address_problem(ev["destination"], self._net, self._cfg.abnormal)
        if why:
            flag = abnormal.Flag(abnormal.ADDRESS, ev["order_id"], int(ev["occurred_at"]), why)
            out.append(("pattern", abnormal.ADDRESS, flag))

    def _bad(self, name: str, raw: RawMessage, exc: ValidationError, out: list[Fact],
             outcome: str) -> None:
        if name in SOURCE_TOPICS:
            if self._cfg.dead_letter_bad_input:
                value = dead_letter(
                    topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
                    payload=raw.value, step=f"watch-{name}", code=exc.code, message=exc.message,
                    at_ms=time.time_ns() // 1_000_000, field=exc.field, rule=exc.rule)
                out.append(("out", raw.topic, OutMessage(self._dlq, raw.topic.encode(), value)))
            return
        now = time.monotonic()
        with self._lock:
            if now - self._warned.get(name, -_WARN_EVERY_S) < _WARN_EVERY_S:
                return
            self._warned[name] = now
        log.warning("%s message on %s, which only fulfil writes (%s); counted in "
                    "fulfil_watch_events_total and skipped", outcome, raw.topic, exc.message,
                    extra={"step": "watch-parse"})
