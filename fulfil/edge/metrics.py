"""Prometheus metrics of the edge links (`fulfil edge link --metrics-port`), docs/edge.md#metrics.

Why a module of its own: the links are their own process (not a bytewax flow), and what an SRE
running remote sites needs from them is different from the engine's figures: is the link up,
how much waits to cross it and since when, what crossed, what was recognised as a replay, and
whether the two sides sold the same stock. Every series is labelled with the `site` (one
Prometheus scrapes many sites) and, where it applies, the `link` (uplink|downlink|handoff).

`LinkMetrics` is the one door the link loop uses; it keeps the loop free of label plumbing.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge

LINK_UP = Gauge("fulfil_edge_link_up",
                "1 while the link reaches the other side, 0 while it does not", ["site", "link"])
LAST_OK = Gauge("fulfil_edge_link_last_ok_timestamp_seconds",
                "When the link last completed a step against the other side (a batch "
                "delivered and committed, or an idle probe answered)", ["site", "link"])
BACKLOG = Gauge("fulfil_edge_backlog_events",
                "Records of the link's source topics not yet delivered and committed (uplink: "
                "waiting at the edge; downlink: waiting at the centre, as of the last contact)",
                ["site", "link"])
OLDEST = Gauge("fulfil_edge_oldest_unsent_age_seconds",
               "Age of the oldest record the link has read and not yet delivered (0: nothing "
               "waits)", ["site", "link"])
CONSUMED = Counter("fulfil_edge_events_consumed_total",
                   "Records the link read from its source side", ["site", "link"])
FORWARDED = Counter("fulfil_edge_events_forwarded_total",
                    "Records the link delivered (acknowledged) on the destination side, per "
                    "destination topic (short name; centre:<topic> for what the downlink sends "
                    "back to the centre)", ["site", "link", "topic"])
DUPLICATES = Counter("fulfil_edge_duplicates_dropped_total",
                     "Replays recognised and dropped: ledger effects already applied (effect), "
                     "approvals already in effect at the edge (approval), re-route requests the "
                     "centre has moved past (reroute)", ["site", "link", "kind"])
CONFLICTS = Counter("fulfil_edge_conflicts_total",
                    "Stock sold on both sides: claim-rejected (the edge refused a central claim; "
                    "oversell alert and re-route sent), centre-deficit (an edge sale "
                    "over-allocated the centre's copy of a site node)", ["site", "kind"])
DEAD_LETTERS = Counter("fulfil_edge_dead_letters_total",
                       "Records a link could not read, filed as dead letters", ["site", "link"])
APPROVALS = Counter("fulfil_edge_approvals_total",
                    "Approval verdicts (order.approved/rejected) read at the centre, by outcome: "
                    "forwarded to the edge, duplicate, central (not an edge order)",
                    ["site", "outcome"])
STATE_ENTRIES = Gauge("fulfil_edge_link_state_entries",
                      "Fields of the per-node link-state hashes P:{n:NODE}:edge of the site's "
                      "nodes, on one side", ["site", "side"])
STATE_PRUNED = Counter("fulfil_edge_link_state_pruned_total",
                       "Link-state fields pruned (terminal, older than state_retention_s)",
                       ["site", "side"])


_CONFLICT_KINDS = ("claim-rejected", "centre-deficit")
_DUPLICATE_KINDS = {"uplink": ("effect",), "downlink": ("effect", "approval", "reroute")}
_APPROVAL_OUTCOMES = ("forward", "duplicate", "closed", "central")
#: where each link applies effects (and prunes the link state)
_SIDES = {"uplink": "centre", "downlink": "edge"}


class LinkMetrics:
    """The metrics of one link of one site (labels bound once)."""

    def __init__(self, site: str, link: str) -> None:
        self.site, self.link = site, link
        self._up = LINK_UP.labels(site, link)
        self._last_ok = LAST_OK.labels(site, link)
        self._backlog = BACKLOG.labels(site, link)
        self._oldest = OLDEST.labels(site, link)
        self._consumed = CONSUMED.labels(site, link)
        self._dead = DEAD_LETTERS.labels(site, link)
        self._up.set(0)  # until the first step against the other side succeeds
        self._oldest.set(0)
        self._backlog.set(0)
        # counters exist at 0 from the start, so the first conflict is an increase() too
        for kind in _CONFLICT_KINDS:
            CONFLICTS.labels(site, kind)
        for kind in _DUPLICATE_KINDS.get(link, ()):
            DUPLICATES.labels(site, link, kind)
        if link == "downlink":
            for outcome in _APPROVAL_OUTCOMES:
                APPROVALS.labels(site, outcome)
        if link in _SIDES:
            STATE_PRUNED.labels(site, _SIDES[link])

    def up(self, now_ms: int) -> None:
        self._up.set(1)
        self._last_ok.set(now_ms / 1000)

    def down(self) -> None:
        self._up.set(0)

    def consumed(self, n: int) -> None:
        self._consumed.inc(n)

    def delivered(self, topics: Iterable[str], dead: int = 0) -> None:
        """Records acknowledged by the destination, by their (short) topic names."""
        for topic, n in Tally(topics).items():
            FORWARDED.labels(self.site, self.link, topic).inc(n)
        if dead:
            self._dead.inc(dead)

    def duplicate(self, kind: str, n: int = 1) -> None:
        if n:
            DUPLICATES.labels(self.site, self.link, kind).inc(n)

    def conflict(self, kind: str, n: int = 1) -> None:
        if n:
            CONFLICTS.labels(self.site, kind).inc(n)

    def approvals(self, outcome: str, n: int = 1) -> None:
        if n:
            APPROVALS.labels(self.site, outcome).inc(n)

    def waiting(self, oldest_ms: int | None, now_ms: int | None = None) -> None:
        """The oldest record read and not delivered yet (None: nothing waits)."""
        if oldest_ms is None:
            self._oldest.set(0)
        else:
            now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
            self._oldest.set(max(now - oldest_ms, 0) / 1000)

    def backlog(self, consumer: Any, committed: dict[tuple[str, int], int]) -> None:
        """Source records after the committed offsets, from the high watermarks the consumer
        last fetched (no broker round trip: cheap enough for every status tick, and it keeps
        its last value while the other side is unreachable)."""
        from confluent_kafka import TopicPartition

        total, known = 0, False
        for (topic, part), done in committed.items():
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, part),
                                                        cached=True)
            if high is None or high < 0:
                continue  # not fetched yet
            known = True
            total += max(high - done, 0)
        if known:
            self._backlog.set(total)

    def state(self, side: str, entries: int, pruned: int) -> None:
        STATE_ENTRIES.labels(self.site, side).set(entries)
        if pruned:
            STATE_PRUNED.labels(self.site, side).inc(pruned)
