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
downlink (centre -> edge) in the *edge's*. Both report to `LinkStatus` on the edge's Redis
and to Prometheus (`fulfil.edge.metrics`), and both prune the link state of the side they apply
effects on (`EdgeSync.prune`, docs/edge.md#bounded-link-state). The downlink is in
`fulfil/edge/downlink.py`.
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
)
from fulfil.edge.config import EdgeSettings
from fulfil.edge.metrics import LinkMetrics
from operators.edge.messages import Routed, Send, mirror_topic
from operators.edge.routes import UPLINK_TOPICS, uplink_batch
from state.edge_sync import EdgeSync, LinkProgress, LinkStatus
from state.ledger import Ledger
from state.redis_client import RedisUnavailable

log = logging.getLogger("fulfil.edge")
#: What "the other side cannot be reached" looks like; anything else is a bug and is raised.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               RedisUnavailable, KafkaConnectorError, KafkaException, ConnectionError,
               TimeoutError)
STATUS_EVERY_S = 0.5
PROBE_EVERY_S = 1.0
#: How often a link reports the size of the link state it prunes (one HLEN per site node).
STATE_EVERY_S = 10.0


@dataclass
class _Work:
    """One consumed batch on its way through the steps (kept across retries)."""

    routed: Routed
    offsets: dict[tuple[str, int], int]
    phase: str = "effects"
    replies: list[Send] = field(default_factory=list)
    #: downlink: approval verdicts for the edge's orders topic (see `Downlink._approvals`)
    local: list[Send] = field(default_factory=list)
    #: downlink: the edge topics' end offsets when the batch arrived (see `Downlink.step`)
    gate: dict[str, int] | None = None
    #: timestamp (ms) of the oldest record of the batch: the age of what waits to cross
    oldest_ms: int | None = None


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
        #: next offset per source partition, as last committed (the backlog counts from it)
        self._committed: dict[tuple[str, int], int] = {}
        self.metrics = LinkMetrics(settings.site, self.name)
        self._prune_due = self._size_due = 0.0

    # -- status ---------------------------------------------------------------------------

    def _extra(self) -> dict[str, Any]:
        return {}

    def _publish(self, force: bool = False) -> None:
        tick = time.monotonic()
        if not force and tick < self._status_due:
            return
        self._status_due = tick + STATUS_EVERY_S
        self.metrics.waiting(self._work.oldest_ms if self._work is not None else None)
        if self._consumer is not None and self._committed:
            self.metrics.backlog(self._consumer, self._committed)
        try:
            self.status.set(self.name, state=self.state, since=self.since, last_ok=self.last_ok,
                            error=self.error, **self._extra())
            self.status.add(self.name, self.counts)
            self.counts.clear()
        except UNREACHABLE as exc:  # the edge's own Redis: report it, keep going
            log.warning("%s: cannot write status: %s", self.name, exc)

    def _ok(self) -> None:
        self.last_ok = now_ms()
        self.metrics.up(self.last_ok)
        if self.state != "up":
            log.info("%s of site %s: link up", self.name, self.s.site)
            self.state, self.since, self.error = "up", self.last_ok, ""
            self._publish(force=True)

    def _down(self, why: str) -> None:
        self.error = why[:300]
        self.metrics.down()
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
        self.metrics.consumed(len(batch))
        oldest = min((m.timestamp_ms for m in batch if m.timestamp_ms > 0), default=None)
        return _Work(self.route(batch), offsets, oldest_ms=oldest)

    def _delivered(self, w: _Work) -> None:
        """Count what the destination acknowledged (once per batch, after delivery)."""
        records = (*w.routed.sends, *w.routed.dead, *w.local)
        # the downlink's replies go back to the centre (alerts, re-route requests)
        self.metrics.delivered([*(s.topic for s in records),
                                *(f"centre:{s.topic}" for s in w.replies)],
                               dead=len(w.routed.dead))

    def _prune(self, sync: EdgeSync, side: str) -> None:
        """Now and then, forget the link state of orders that hold nothing at the site's nodes
        any more and turned terminal longer than `state_retention_s` ago; report its size."""
        tick = time.monotonic()
        if tick < self._size_due:
            return
        self._size_due = tick + min(STATE_EVERY_S, self.s.link.prune_every_s)
        pruned = 0
        if tick >= self._prune_due:
            self._prune_due = tick + self.s.link.prune_every_s
            cutoff = now_ms() - int(self.s.link.state_retention_s * 1000)
            pruned = sync.prune(self.s.nodes, cutoff)
        self.metrics.state(side, sync.size(self.s.nodes), pruned)
        if pruned:
            log.info("%s of site %s: pruned %d link-state entries (%s)", self.name, self.s.site,
                     pruned, side)

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
                    if r.status == "stale":
                        self.metrics.duplicate("effect")
                    if r.status == "deficit":
                        self.metrics.conflict("centre-deficit")
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
            self._delivered(w)
            w.phase = "commit"
        progress.commit(w.offsets)
        self._committed.update(w.offsets)
        self._work = None
        self._ok()
        self._prune(sync, "centre")
        try:  # at once, not with the next status report: the downlink's gate reads it
            self.status.set(self.name, **self._extra())
        except UNREACHABLE as exc:
            log.warning("uplink: cannot write status: %s", exc)

    def _idle(self) -> None:
        tick = time.monotonic()
        if tick < self._probe_due:
            return
        self._probe_due = tick + PROBE_EVERY_S
        sync, progress = self._centre_side()
        progress.load()  # one round trip to the centre: is it there?
        self._ok()
        self._prune(sync, "centre")
