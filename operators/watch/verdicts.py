"""What detectors say: a `Verdict` per condition, or a `Partial` when a condition spans shards.

A detector never builds alerts. It says, each time it looks, whether its condition holds (one
`Verdict` per dedup key); `operators.watch.incidents` turns the sequence of verdicts into one
trigger, a few updates and one resolve. That keeps the paging rules (dedup, no re-page, resolve)
in one place instead of in eight detectors.

Per-order state is sharded (see `dataflows/watchtower.py`), so "orders at risk on lane L" or
"orders stuck at node N" is the sum of what each shard sees: each shard sends a `Partial`, and
`PartialSet` keeps the latest partial per shard and merges them into one verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.enums import AlertSeverity

Entity = Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A detector's current judgement of one condition (one dedup key)."""

    dedup_key: str
    type: str
    active: bool
    at: int  # event time (ms) of the evaluation
    severity: str = AlertSeverity.WARNING
    entity: Entity = field(default_factory=dict)
    summary: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    evidence_at: int | None = None  # event time the evidence was complete
    affected_count: int = 0
    sample_ids: tuple[str, ...] = ()
    listed_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Partial:
    """One shard's share of a condition: its count, some ids, and how to describe the whole.

    `title` finishes the sentence "<total> ..." (e.g. "open orders at risk on correios|*|*|RJ");
    `min_orders` / `page_min_orders` decide activity and severity of the merged verdict.
    """

    dedup_key: str
    type: str
    shard: str
    count: int
    at: int
    ids: tuple[str, ...] = ()
    evidence_at: int | None = None
    entity: Entity = field(default_factory=dict)
    title: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    min_orders: int = 1
    page_min_orders: int = 10
    sample_size: int = 20
    max_listed: int = 500


@dataclass(slots=True)
class PartialSet:
    """The latest partial of every shard that currently reports a non-zero count."""

    parts: dict[str, Partial] = field(default_factory=dict)
    latest: Partial | None = None

    def update(self, part: Partial) -> Verdict:
        """Record one shard's partial and return the merged verdict."""
        if part.count > 0:
            self.parts[part.shard] = part
        else:
            self.parts.pop(part.shard, None)
        self.latest = part
        return merge(self.parts.values(), part)

    def current(self) -> Verdict | None:
        """The merged verdict of what is held now (None before any partial)."""
        return None if self.latest is None else merge(self.parts.values(), self.latest)

    @property
    def empty(self) -> bool:
        return not self.parts


def merge(parts: Iterable[Partial], latest: Partial) -> Verdict:
    """One verdict from the shards' partials; `latest` supplies time, entity and thresholds."""
    parts = sorted(parts, key=lambda p: p.shard)
    total = sum(p.count for p in parts)
    ids: list[str] = []
    for p in parts:
        ids.extend(p.ids)
    ids.sort()
    evidence = [p.evidence_at for p in parts if p.evidence_at is not None]
    details: dict[str, Any] = {}
    for p in parts:
        details.update(p.details)
    details.update(latest.details)
    active = total >= max(1, latest.min_orders)
    severity = AlertSeverity.ERROR if total >= latest.page_min_orders else AlertSeverity.WARNING
    return Verdict(
        dedup_key=latest.dedup_key, type=latest.type, active=active, at=latest.at,
        severity=severity, entity=latest.entity,
        summary=f"{total} {latest.title}" if total else f"no {latest.title}",
        details=details, evidence_at=min(evidence) if evidence else latest.evidence_at,
        affected_count=total, sample_ids=tuple(ids[: latest.sample_size]),
        listed_ids=tuple(ids[: latest.max_listed]),
    )
