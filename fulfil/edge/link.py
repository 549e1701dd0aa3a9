"""The uplink and the downlink of one edge site (docs/edge.md).

Both are loops over the same four steps per batch, each step retried until it succeeds, so a
link that drops in the middle of a batch picks up exactly where it stopped:

1. consume a batch from the source side (`assign()` from the stored progress);
2. apply its ledger effects on the side that owns the ledger copy (idempotent per order version);
3. hand its records to an idempotent producer and wait until the destination acknowledged all
   of them (librdkafka retries for ever: in one process lifetime nothing is sent twice);
4. store the progress on the destination side (`state.edge_sync.LinkProgress`).

A restart between 3 and 4 re-sends one batch: every receiver is idempotent (decision ids,
inventory versions, the router's order book, the edge-apply versions, alert ids, `fulfil-src`).

The uplink (edge -> centre) stores progress and applies effects in the *centre's* Redis; the
downlink (centre -> edge) in the *edge's*. Both report to `LinkStatus` on the edge's Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
from confluent_kafka import KafkaException, TopicPartition

from dataflows.connectors import KafkaConnectorError, ensure_topics
from fulfil.edge.clients import (
    Outbox,
    consumer,
    kafka_config,
    link_msg,
    now_ms,
    redis_client,
    start_offset,
)
from fulfil.edge.config import EdgeSettings
from operators.edge.messages import (
    REJECTED,
    REPLAN,
    Routed,
    Send,
    dumps,
    mirror_topic,
    oversell_alert,
    reroute_event,
)
from operators.edge.routes import DOWNLINK_TOPICS, UPLINK_TOPICS, downlink_batch, uplink_batch
from operators.orders import OrderRecord
from state.edge_sync import EdgeSync, LinkProgress, LinkStatus
from state.ledger import Ledger
from state.orderbook import OrderBook
from state.redis_client import RedisUnavailable

log = logging.getLogger("fulfil.edge")
#: What "the other side cannot be reached" looks like; anything else is a bug and is raised.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               RedisUnavailable, KafkaConnectorError, KafkaException, ConnectionError,
               TimeoutError)
STATUS_EVERY_S = 0.5
PROBE_EVERY_S = 1.0


@dataclass
class _Work:
    """One consumed batch on its way through the steps (kept across retries)."""

    routed: Routed
    offsets: dict[tuple[str, int], int]
    phase: str = "effects"
    replies: list[Send] = field(default_factory=list)
    #: downlink: the edge topics' end offsets when the batch arrived (see `Downlink.step`)
    gate: dict[str, int] | None = None


def partitions(client: Any, topics: list[str], timeout_s: float) -> list[tuple[str, int]]:
    md = client.list_topics(timeout=timeout_s)
    out: list[tuple[str, int]] = []
    for topic in topics:
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            raise KafkaConnectorError(f"topic {topic!r} is not available")
        out += [(topic, p) for p in sorted(tmd.partitions)]
    return out


class _Link:
    """The loop, the state machine of a batch, and the status reporting of one link."""

    name = "link"

    def __init__(self, settings: EdgeSettings, stop: threading.Event | None) -> None:
        self.s = settings
        self.site = settings.view()
        self.stop = stop or threading.Event()
        self.timeout_s = settings.link.link_timeout_s
        self.edge_redis = redis_client(settings.edge.redis_url, self.timeout_s)
        self.status = LinkStatus(self.edge_redis, settings.edge.redis_prefix, settings.site)
        self.state = "starting"
        self.since = now_ms()
        self.last_ok = 0
        self.error = ""
        self.counts: Counter[str] = Counter()
        self._work: _Work | None = None
        self._status_due = 0.0
        self._probe_due = 0.0
        self._consumer: Any = None
        self._short: dict[str, str] = {}

    # -- status ---------------------------------------------------------------------------

    def _extra(self) -> dict[str, Any]:
        return {}

    def _publish(self, force: bool = False) -> None:
        tick = time.monotonic()
        if not force and tick < self._status_due:
            return
        self._status_due = tick + STATUS_EVERY_S
        try:
            self.status.set(self.name, state=self.state, since=self.since, last_ok=self.last_ok,
                            error=self.error, **self._extra())
            self.status.add(self.name, self.counts)
            self.counts.clear()
        except UNREACHABLE as exc:  # the edge's own Redis: report it, keep going
            log.warning("%s: cannot write status: %s", self.name, exc)

    def _ok(self) -> None:
        self.last_ok = now_ms()
        if self.state != "up":
            log.info("%s of site %s: link up", self.name, self.s.site)
            self.state, self.since, self.error = "up", self.last_ok, ""
            self._publish(force=True)

    def _down(self, why: str) -> None:
        self.error = why[:300]
        if self.state != "down":
            log.warning("%s of site %s: link down: %s", self.name, self.s.site, self.error)
            self.state, self.since = "down", now_ms()
            self._publish(force=True)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until `stop` is set; an unreachable other side is waited out, never raised."""
        try:
            while not self.stop.is_set():
                try:
                    self.step()
                except UNREACHABLE as exc:
                    self._down(f"{type(exc).__name__}: {exc}")
                    self.stop.wait(self.s.link.retry_s)
                self._publish()
        finally:
            self._publish(force=True)
            self.close()

    def close(self) -> None:
        for name in ("_consumer", "_watch"):
            client = getattr(self, name, None)
            if client is not None:
                client.close()
                setattr(self, name, None)

    def _consume(self) -> _Work | None:
        msgs = self._consumer.consume(self.s.link.batch_size, 0.1)
        batch, offsets = [], {}
        for m in msgs:
            if m.error() is not None:
                continue  # transport errors are retried by librdkafka; EOF is off
            batch.append(link_msg(m, self._short))
            offsets[(m.topic(), m.partition())] = m.offset() + 1
        if not batch:
            return None
        self.counts["consumed"] += len(batch)
        return _Work(self.route(batch), offsets)

    def route(self, batch: list[Any]) -> Routed:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError


class Uplink(_Link):
    """Edge -> centre: see the module docstring and `operators.edge.routes`."""

    name = "uplink"

    def __init__(self, settings: EdgeSettings, stop: threading.Event | None = None) -> None:
        super().__init__(settings, stop)
        wan = f"{settings.link.wan_client_id}-{settings.site}-up"
        self.outbox = Outbox(settings.centre, wan, wan=True)
        self._admin_conf = kafka_config(settings.centre, f"{wan}-admin", wan=True)
        self._short = {settings.edge.topic(t): t for t in UPLINK_TOPICS}
        self._centre: tuple[EdgeSync, LinkProgress] | None = None
        self._committed: dict[tuple[str, int], int] = {}

    def _extra(self) -> dict[str, Any]:
        return {"offsets": {f"{t}#{p}": o for (t, p), o in self._committed.items()}}

    def _centre_side(self) -> tuple[EdgeSync, LinkProgress]:
        if self._centre is None:
            centre = self.s.centre
            client = redis_client(centre.redis_url, self.timeout_s)
            sync = EdgeSync(Ledger(client, centre.redis_prefix))
            mirrors = {centre.topic(mirror_topic(self.s.site, t)): 2 for t in UPLINK_TOPICS}
            ensure_topics(self._admin_conf, mirrors)
            self._centre = sync, LinkProgress(client, centre.redis_prefix, self.s.site, "uplink")
        return self._centre

    def _assign(self) -> None:
        if self._consumer is not None:
            return
        _, progress = self._centre_side()
        stored = progress.load()
        self._consumer = consumer(self.s.edge, f"fulfil-edge-{self.s.site}-up-src", wan=False)
        parts = partitions(self._consumer, list(self._short), 15)
        self._committed = {tp: stored.get(tp, 0) for tp in parts}
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in self._committed.items()])

    def route(self, batch: list[Any]) -> Routed:
        return uplink_batch(batch, self.site, now_ms())

    def step(self) -> None:
        self._assign()
        if self._work is None:
            self._work = self._consume()
            if self._work is None:
                self._idle()
                return
        w = self._work
        sync, progress = self._centre_side()
        if w.phase == "effects":
            if w.routed.effects:
                for r in sync.apply(w.routed.effects, "force"):
                    self.counts[f"effects.{r.status}"] += 1
                    if r.status == "deficit":
                        log.warning("uplink %s: %s %s over-allocated by %d at the centre; the "
                                    "edge's sale of %s stands", self.s.site, r.effect.node_id,
                                    r.sku, r.amount, r.effect.order_id)
            w.phase = "send"
        if w.phase == "send":
            self.counts["sent"] += self.outbox.send(w.routed.sends + w.routed.dead)
            self.counts["dead"] += len(w.routed.dead)
            w.phase = "deliver"
        if w.phase == "deliver":
            failed = self.outbox.deliver(self.stop, self.timeout_s,
                                         lambda: self._down("centre's broker does not answer"))
            if self.stop.is_set():
                return
            if failed:
                self.outbox.send(rec for rec, _ in failed)
                raise KafkaConnectorError(f"{len(failed)} records failed: {failed[0][1]}")
            w.phase = "commit"
        progress.commit(w.offsets)
        self._committed.update(w.offsets)
        self._work = None
        self._ok()
        try:  # at once, not with the next status report: the downlink's gate reads it
            self.status.set(self.name, **self._extra())
        except UNREACHABLE as exc:
            log.warning("uplink: cannot write status: %s", exc)

    def _idle(self) -> None:
        tick = time.monotonic()
        if tick < self._probe_due:
            return
        self._probe_due = tick + PROBE_EVERY_S
        _, progress = self._centre_side()
        progress.load()  # one round trip to the centre: is it there?
        self._ok()


class Downlink(_Link):
    """Centre -> edge: see the module docstring and `operators.edge.routes`."""

    name = "downlink"

    def __init__(self, settings: EdgeSettings, stop: threading.Event | None = None) -> None:
        super().__init__(settings, stop)
        wan = f"{settings.link.wan_client_id}-{settings.site}-down"
        self.edge_out = Outbox(settings.edge, f"fulfil-edge-{settings.site}-down-local",
                               wan=False)
        self.centre_out = Outbox(settings.centre, f"{wan}-reply", wan=True)
        self._wan_id = wan
        self.sync = EdgeSync(Ledger(self.edge_redis, settings.edge.redis_prefix))
        self.progress = LinkProgress(self.edge_redis, settings.edge.redis_prefix, settings.site,
                                     "downlink")
        self._short = {settings.centre.topic(t): t for t in DOWNLINK_TOPICS}
        self._book: OrderBook | None = None
        self._watch: Any = None
        self._watched: list[tuple[str, int]] = []

    def _assign(self) -> None:
        if self._consumer is not None:
            return
        c = consumer(self.s.centre, self._wan_id, wan=True, start=self.s.link.downlink_start)
        try:
            parts = partitions(c, list(self._short), self.timeout_s)
        except Exception:
            c.close()
            raise
        stored = self.progress.load()
        first = start_offset(self.s.link.downlink_start)
        c.assign([TopicPartition(t, p, stored.get((t, p), first)) for t, p in parts])
        self._consumer = c

    def route(self, batch: list[Any]) -> Routed:
        return downlink_batch(batch, self.site, now_ms())

    def edge_ends(self) -> dict[str, int]:
        """End offset of every partition the uplink sends from (the edge's own broker)."""
        if self._watch is None:
            self._watch = consumer(self.s.edge, f"fulfil-edge-{self.s.site}-down-gate",
                                   wan=False)
            self._watched = partitions(self._watch, [self.s.edge.topic(t)
                                                     for t in UPLINK_TOPICS], 15)
        return {f"{t}#{p}": self._watch.get_watermark_offsets(TopicPartition(t, p), 5)[1]
                for t, p in self._watched}

    def uplink_has(self, ends: dict[str, int]) -> bool:
        """The uplink has delivered (and committed) everything up to `ends`."""
        done = self.status.read().get("uplink", {}).get("offsets") or {}
        return all(int(done.get(k, 0)) >= v for k, v in ends.items())

    def step(self) -> None:
        self._assign()
        if self._work is None:
            self._work = self._consume()
            if self._work is None:
                self._idle()
                return
            self._ok()
            if self._work.routed.effects and self.s.link.gate_claims:
                self._work.gate = self.edge_ends()
        w = self._work
        if w.phase == "effects":
            # Claims wait until the centre has everything the edge did before they arrived
            # (after an outage: the edge's sales), so the centre re-plans what the edge refuses
            # on stock figures that include those sales.
            if w.gate is not None and not self.uplink_has(w.gate):
                self.counts["gate.waits"] += 1
                self.stop.wait(0.05)
                return
            if w.routed.effects or w.routed.replans:
                w.replies = self._verdicts(w.routed)
            w.phase = "send"
        if w.phase == "send":
            self.counts["sent"] += self.edge_out.send(w.routed.sends + w.routed.dead)
            self.counts["dead"] += len(w.routed.dead)
            self.counts["replies"] += self.centre_out.send(w.replies)
            w.phase = "deliver"
        if w.phase == "deliver":
            for out in (self.edge_out, self.centre_out):
                failed = out.deliver(self.stop, self.timeout_s,
                                     lambda: self._down("a broker does not answer"))
                if self.stop.is_set():
                    return
                if failed:
                    out.send(rec for rec, _ in failed)
                    raise KafkaConnectorError(f"{len(failed)} records failed: {failed[0][1]}")
            w.phase = "commit"
        self.progress.commit(w.offsets)
        self._work = None
        self._ok()

    def _verdicts(self, routed: Routed) -> list[Send]:
        """Apply the centre's claims on the edge's ledger. A rejected one becomes an oversell
        alert and a re-route request for the centre; a re-route that ended `lost-races` gets
        its clean re-plan (`operators.edge.messages.reroute_event`). Ids are fixed by the
        decisions they answer, and nothing is asked for a decision the centre has moved past."""
        asks: list[tuple[dict[str, Any], str, str, str]] = []  # (decision, node, sku, prefix)
        replies: list[Send] = []
        now = now_ms()
        for r in self.sync.apply(routed.effects, "check") if routed.effects else []:
            self.counts[f"claims.{r.status}"] += 1
            if r.status != "rejected":
                continue
            e = r.effect
            decision = routed.claims[(e.node_id, e.order_id)]
            log.warning("downlink %s: claim %s at %s rejected (%s: %s left)", self.s.site,
                        decision["decision_id"], e.node_id, r.sku, r.amount)
            alert = oversell_alert(self.s.site, e.node_id, r.sku or "", decision, r.amount or 0,
                                   now)
            replies.append(Send("alerts", alert["dedup_key"].encode(), dumps(alert), ()))
            asks.append((decision, e.node_id, r.sku or "", REJECTED))
        asks += [(d, "", "", REPLAN) for d in routed.replans]
        # one request per decision, even when a split claim was refused at two nodes
        asks = list({(d["decision_id"], prefix): (d, node, sku, prefix)
                     for d, node, sku, prefix in reversed(asks)}.values())[::-1]
        if not asks:
            return replies
        if self._book is None:
            client = redis_client(self.s.centre.redis_url, self.timeout_s)
            self._book = OrderBook(Ledger(client, self.s.centre.redis_prefix),
                                   self.s.centre.redis_prefix)
        records = self._book.get_many([d["order_id"] for d, *_ in asks])
        for decision, node, sku, prefix in asks:
            raw = records.get(decision["order_id"])
            rec = OrderRecord.loads(raw) if raw is not None else None
            if rec is None or rec.version != int(decision["version"]):
                # gone, or the centre moved on (a re-route already asked for, a cancel): asking
                # again for a superseded version would route the order once more
                self.counts["reroute.superseded"] += 1
                continue
            event = reroute_event(decision, dict(rec.order.destination), self.s.site, node, sku,
                                  prefix=prefix)
            replies.append(Send("orders", decision["order_id"].encode(), dumps(event), ()))
            self.counts[f"reroute.{prefix}"] += 1
        return replies

    def _idle(self) -> None:
        tick = time.monotonic()
        if tick < self._probe_due:
            return
        self._probe_due = tick + PROBE_EVERY_S
        partitions(self._consumer, list(self._short)[:1], self.timeout_s)
        self._ok()
