"""The handoff: an order the site cannot serve becomes the centre's, and stops being the edge's.

The edge's routing flow decides every order it receives: one it cannot serve from the site's
nodes gets an `unroutable` decision and a dead letter carrying the original event. The uplink
sends that event to the centre's `orders` topic (the centre routes it), and this loop, which runs
at the edge and needs no link, closes the order locally: it writes an `order.cancelled` with the
id `handoff:<order_id>` on the edge's own orders topic. The edge router then records the order
as cancelled (a `cancelled` decision whose reason says "handed off to the centre"), so a later
address change or cancel for it at the edge is set aside (`unknown-order`) and forwarded to the
centre, instead of being routed at the edge as well. Writing it twice is harmless: the same event
id is a replay for the router.
"""

from __future__ import annotations

import contextlib
import threading
import time

from confluent_kafka import TopicPartition

from fulfil.edge.clients import Outbox, consumer, now_ms, redis_client
from fulfil.edge.config import EdgeSettings
from fulfil.edge.link import UNREACHABLE, log, partitions
from fulfil.edge.metrics import LinkMetrics
from operators.edge.messages import Send, dumps
from operators.edge.routes import handoff_cancel_for
from state.edge_sync import LinkProgress, LinkStatus


class Handoff:
    """Consumes the edge's dead letters; writes the cancels (see the module docstring)."""

    name = "handoff"

    def __init__(self, settings: EdgeSettings, stop: threading.Event | None = None) -> None:
        edge = settings.edge
        self.s = settings
        self.site = settings.view()
        self.stop = stop or threading.Event()
        client = redis_client(edge.redis_url, settings.link.link_timeout_s)
        self.progress = LinkProgress(client, edge.redis_prefix, settings.site, "handoff")
        self.status = LinkStatus(client, edge.redis_prefix, settings.site)
        self.outbox = Outbox(edge, f"fulfil-edge-{settings.site}-handoff", wan=False)
        self.handed_off = 0
        self.metrics = LinkMetrics(settings.site, self.name)

    def run(self) -> None:
        c = consumer(self.s.edge, f"fulfil-edge-{self.s.site}-handoff", wan=False)
        try:
            topic = self.s.edge.topic("dead-letters")
            stored = self.progress.load()
            c.assign([TopicPartition(t, p, stored.get((t, p), 0))
                      for t, p in partitions(c, [topic], 15)])
            reported = 0.0
            while not self.stop.is_set():
                try:
                    self._step(c)
                    self.metrics.up(now_ms())
                    if time.monotonic() - reported > 1.0:
                        reported = time.monotonic()
                        self.status.set(self.name, state="up", last_ok=now_ms())
                except UNREACHABLE as exc:  # the edge's own broker or Redis: wait for it
                    log.warning("handoff %s: %s", self.s.site, exc)
                    self.metrics.down()
                    with contextlib.suppress(*UNREACHABLE):
                        self.status.set(self.name, state="down", error=str(exc)[:300])
                    self.stop.wait(self.s.link.retry_s)
        finally:
            c.close()

    def _step(self, c: object) -> None:
        msgs = c.consume(self.s.link.batch_size, 0.2)  # type: ignore[attr-defined]
        offsets: dict[tuple[str, int], int] = {}
        sends: list[Send] = []
        for m in msgs:
            if m.error() is not None:
                continue
            offsets[(m.topic(), m.partition())] = m.offset() + 1
            cancel = handoff_cancel_for(m.value(), self.site)
            if cancel is not None:
                sends.append(Send("orders", cancel["order_id"].encode(), dumps(cancel), ()))
        if not offsets:
            return
        self.outbox.send(sends)
        while self.outbox.flush(0.5):
            if self.stop.is_set():
                return
        failed = self.outbox.take_failures()
        if failed:
            self.outbox.send(rec for rec, _ in failed)
            raise ConnectionError(f"{len(failed)} cancels not written: {failed[0][1]}")
        self.progress.commit(offsets)
        self.metrics.consumed(len(msgs))
        self.metrics.delivered([s.topic for s in sends])
        if sends:
            self.handed_off += len(sends)
            self.status.add(self.name, {"handed_off": len(sends)})
