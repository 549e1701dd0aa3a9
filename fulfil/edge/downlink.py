"""The downlink of one edge site: centre -> edge (docs/edge.md).

The same loop as the uplink (`fulfil.edge.link`), over central `decisions`, `inventory`,
`config` and `orders`, with three jobs of its own:

* **claims**: central decisions that hold stock at the site's nodes are checked on the edge's
  ledger (all or nothing); a rejected one becomes an oversell alert and a re-route request for
  the centre (`_verdicts`), after the uplink has delivered what the edge sold meanwhile (gate);
* **approvals**: `order.approved` / `order.rejected` published centrally for orders held at the
  edge are forwarded to the edge's `orders` topic, where the edge's router takes them like local
  verdicts (`_approvals`; docs/edge.md#holds-across-the-link);
* progress and the link state it prunes are the edge's (reachable during an outage).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import TopicPartition

from dataflows.connectors import KafkaConnectorError
from fulfil.edge.clients import Outbox, consumer, now_ms, redis_client, start_offset
from fulfil.edge.config import EdgeSettings
from fulfil.edge.link import PROBE_EVERY_S, _Link, log, partitions
from operators.edge.messages import (
    REJECTED,
    REPLAN,
    Routed,
    Send,
    dumps,
    oversell_alert,
    reroute_event,
)
from operators.edge.routes import (
    DOWNLINK_TOPICS,
    UPLINK_TOPICS,
    downlink_batch,
    verdict_outcome,
)
from operators.orders import OrderRecord
from state.edge_sync import EdgeSync, LinkProgress
from state.ledger import Ledger
from state.orderbook import OrderBook


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
        edge_ledger = Ledger(self.edge_redis, settings.edge.redis_prefix)
        self.sync = EdgeSync(edge_ledger)
        self.edge_book = OrderBook(edge_ledger, settings.edge.redis_prefix)
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
        # the backlog counts from here (a partition new to an `earliest` site: from 0)
        self._committed = {tp: stored.get(tp, 0) for tp in parts
                           if tp in stored or self.s.link.downlink_start == "earliest"}
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
            if w.routed.approvals:
                w.local = self._approvals(w.routed)
            w.phase = "send"
        if w.phase == "send":
            self.counts["sent"] += self.edge_out.send(w.routed.sends + w.local + w.routed.dead)
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
            self._delivered(w)
            w.phase = "commit"
        self.progress.commit(w.offsets)
        self._committed.update(w.offsets)
        self._work = None
        self._ok()
        self._prune(self.sync, "edge")

    def _approvals(self, routed: Routed) -> list[Send]:
        """The approval verdicts to forward to the edge: those of orders the edge holds, not
        already in effect there (`operators.edge.routes.verdict_outcome`). One round trip to
        the edge's Redis; a verdict the edge acted on is recognised by its event id, so a batch
        re-sent after a crash forwards nothing twice."""
        ids = list(dict.fromkeys(ev["order_id"] for ev, _ in routed.approvals))
        records = self.edge_book.get_many(ids)
        forward: list[Send] = []
        seen: set[str] = set()
        for event, send in routed.approvals:
            raw = records.get(event["order_id"])
            rec = OrderRecord.loads(raw) if raw is not None else None
            outcome = verdict_outcome(event, None if rec is None else (rec.event_id, rec.status))
            if outcome == "forward" and event["event_id"] in seen:
                outcome = "duplicate"  # a client sent it twice: once in this batch is enough
            seen.add(event["event_id"])
            self.counts[f"approvals.{outcome}"] += 1
            self.metrics.approvals(outcome)
            if outcome == "duplicate":
                self.metrics.duplicate("approval")
            elif outcome == "forward":
                log.info("downlink %s: %s of %s by %s forwarded to the edge", self.s.site,
                         event["type"], event["order_id"], event.get("by"))
                forward.append(send)
        return forward

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
            if r.status == "stale":
                self.metrics.duplicate("effect")
            if r.status != "rejected":
                continue
            self.metrics.conflict("claim-rejected")
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
                self.metrics.duplicate("reroute")
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
        self._prune(self.sync, "edge")
