"""`fulfil edge status`: is the link up, how much is waiting to go up, and since when.

Everything is read at the edge (its Redis and its broker), because the moment someone asks is
usually the moment the centre cannot be reached:

* link state, since when, the last error and counters: the links' own reports (`LinkStatus`);
* backlog to send: per partition of the edge topics the uplink forwards, the end offset minus the
  uplink's committed offset (its last report of it; the authoritative copy is at the centre);
* age of the oldest unsent event: the timestamp of the record at the committed offset of every
  partition with a backlog, the oldest of them.

The embedded broker reports end offsets up to one producer batch late, so its backlog can read
a few records short; a real Kafka's is exact.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition

from fulfil.edge.clients import consumer, redis_client
from fulfil.edge.config import EdgeSettings
from fulfil.edge.link import partitions
from operators.edge.routes import UPLINK_TOPICS
from state.edge_sync import LinkStatus


def _oldest(c: Any, lagging: list[tuple[str, int, int]], timeout_s: float) -> int | None:
    """Timestamp (ms) of the oldest record among (topic, partition, offset) positions."""
    if not lagging:
        return None
    c.assign([TopicPartition(t, p, o) for t, p, o in lagging])
    wanted = {(t, p) for t, p, _ in lagging}
    oldest: int | None = None
    deadline = time.monotonic() + timeout_s
    while wanted and time.monotonic() < deadline:
        for m in c.consume(len(wanted) * 10, 0.2):
            if m.error() is not None or (m.topic(), m.partition()) not in wanted:
                continue
            wanted.discard((m.topic(), m.partition()))
            ts = m.timestamp()[1]
            oldest = ts if oldest is None else min(oldest, ts)
    return oldest


def edge_status(settings: EdgeSettings, timeout_s: float = 5.0) -> dict[str, Any]:
    """The status as data (what `--json` prints)."""
    edge = settings.edge
    links = LinkStatus(redis_client(edge.redis_url, timeout_s), edge.redis_prefix,
                       settings.site).read()
    committed = {k: int(v) for k, v in (links.get("uplink", {}).get("offsets") or {}).items()}
    c = consumer(edge, f"fulfil-edge-{settings.site}-status", wan=False)
    try:
        backlog = 0
        lagging: list[tuple[str, int, int]] = []
        for topic, part in partitions(c, [edge.topic(t) for t in UPLINK_TOPICS], timeout_s):
            _low, high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=timeout_s)
            done = committed.get(f"{topic}#{part}", 0)
            if high > done:
                backlog += high - done
                lagging.append((topic, part, done))
        oldest = _oldest(c, lagging, timeout_s)
    finally:
        c.close()
    now = time.time_ns() // 1_000_000
    return {
        "site": settings.site, "nodes": list(settings.nodes), "at": now, "links": links,
        "uplink_backlog": backlog, "oldest_unsent_at": oldest,
        "oldest_unsent_age_s": None if oldest is None else round((now - oldest) / 1000, 1),
    }


def _when(ms: Any, now: int) -> str:
    if not ms:
        return "-"
    clock = datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%H:%M:%S")
    return f"{clock} UTC ({(now - int(ms)) / 1000:.1f} s ago)"


def format_status(st: dict[str, Any]) -> str:
    """The status for people, one block per link."""
    now = st["at"]
    lines = [f"edge site {st['site']}  (nodes {', '.join(st['nodes'])})"]
    for name in ("uplink", "downlink", "handoff"):
        info = st["links"].get(name)
        if info is None:
            lines.append(f"  {name:9s} not reporting")
            continue
        state = info.get("state", "-")
        lines.append(f"  {name:9s} {state:8s} since {_when(info.get('since'), now)}"
                     f"   last ok {_when(info.get('last_ok'), now)}")
        if info.get("error") and state != "up":
            lines.append(f"            last error: {info['error']}")
        counters = {k: v for k, v in info.items() if isinstance(v, int)
                    and k not in ("since", "last_ok", "last_at")}
        if counters:
            shown = "  ".join(f"{k} {v}" for k, v in sorted(counters.items()))
            lines.append(f"            {shown}")
        if name == "uplink":
            age = st["oldest_unsent_age_s"]
            lines.append(f"            backlog to send: {st['uplink_backlog']} events; oldest "
                         f"unsent: {'-' if age is None else f'{age:.1f} s old'}")
    return "\n".join(lines)
