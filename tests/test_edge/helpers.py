"""A centre and an edge site on loopback, joined by a relay the tests cut and restore.

```
 centre: broker (advertises the Kafka relay's port) + Redis       edge: broker + Redis
         ▲ LAN: the central engine, the tests' own clients                ▲
         │                                                                │ local
   Kafka relay ◄── WAN (client.id fulfil-edge-link-*) ── uplink / downlink (threads here)
   Redis relay ◄── WAN (every connection) ────────────────┘
```

Every Kafka client of the centre connects through the Kafka relay (the broker advertises it);
the relay tells the edge links' connections (their client id) from the centre's own, so `cut()`
breaks the WAN only. The centre's Redis is reached by the links through the Redis relay only.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows.connectors import ensure_topics, list_partitions
from fulfil.config import Config
from fulfil.edge.config import EdgeSettings, LinkSettings
from fulfil.edge.downlink import Downlink
from fulfil.edge.handoff import Handoff
from fulfil.edge.link import Uplink
from fulfil.edge.relay import Relay
from fulfil.infra import Server, free_port, start_broker, start_redis
from schemas.topics import TOPICS
from state.ledger import Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import make_config

SITE = "sul"
SITE_NODES = ("N20", "N23")  # Tubarão and Rio do Sul stores, Santa Catarina
CENTRAL_SC = "N05"  # Joinville DC, Santa Catarina: the centre's own node nearby
FLORIPA = {"lat": -27.5855, "lng": -48.5159, "postal": "88010"}  # an SC destination
WAN = "fulfil-edge-link"


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class World:
    """Two stacks and the relays between them (module-scoped; tests use fresh prefixes)."""

    central_broker: Server
    central_redis: Server
    edge_broker: Server
    edge_redis: Server
    kafka_relay: Relay
    redis_relay: Relay
    tmp: Path
    threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path) -> World:
        relay_port = free_port()
        central_broker = start_broker(tmp, advertised_port=relay_port)
        kafka_relay = Relay(("127.0.0.1", central_broker.port), port=relay_port,
                            wan_clients=WAN).start()
        central_redis = start_redis(tmp)
        redis_relay = Relay(("127.0.0.1", central_redis.port)).start()
        return cls(central_broker, central_redis, start_broker(tmp), start_redis(tmp),
                   kafka_relay, redis_relay, tmp)

    def stop(self) -> None:
        for part in (self.kafka_relay, self.redis_relay, self.edge_redis, self.edge_broker,
                     self.central_redis, self.central_broker):
            part.stop()

    def cut(self) -> None:
        self.kafka_relay.cut()
        self.redis_relay.cut()

    def restore(self) -> None:
        self.kafka_relay.restore()
        self.redis_relay.restore()

    def site(self, **link: Any) -> Site:
        tag = uuid.uuid4().hex[:6]
        centre = make_config(f"127.0.0.1:{self.kafka_relay.port}",
                             f"redis://127.0.0.1:{self.central_redis.port}/0", f"c{tag}.",
                             epoch_interval_s=0.2)
        edge = make_config(f"127.0.0.1:{self.edge_broker.port}",
                           f"redis://127.0.0.1:{self.edge_redis.port}/0", f"e{tag}.",
                           epoch_interval_s=0.2)
        for cfg in (centre, edge):
            ensure_topics(cfg.kafka_common(), {cfg.topic(t.name): t.partitions
                                               for t in TOPICS.values()},
                          compacted=[cfg.topic(t.name) for t in TOPICS.values() if t.compacted])
        # the links see the centre through the relays only
        wan_redis = f"redis://127.0.0.1:{self.redis_relay.port}/0"
        wan_centre = make_config(centre.kafka_bootstrap, wan_redis, centre.topic_prefix,
                                 redis_prefix=centre.redis_prefix)
        settings = EdgeSettings(SITE, SITE_NODES, edge, wan_centre, state_dir=str(self.tmp / tag),
                                link=LinkSettings(**{"link_timeout_s": 1.0, **link}))
        return Site(settings, centre, settings.edge_engine_config())


@dataclass
class Site:
    """One test's site: its settings, the central engine's config, the edge engine's config."""

    settings: EdgeSettings
    centre: Config
    edge: Config
    stop: threading.Event = field(default_factory=threading.Event)
    links: dict[str, Any] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def start_links(self, *names: str) -> Site:
        kinds = {"uplink": Uplink, "downlink": Downlink, "handoff": Handoff}
        for name in names or tuple(kinds):
            link = kinds[name](self.settings, self.stop)
            self.links[name] = link
            t = threading.Thread(target=link.run, name=f"test-{name}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop_links(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)
        assert not any(t.is_alive() for t in self.threads), "a link did not stop"
        self.threads.clear()
        self.links.clear()
        self.stop = threading.Event()

    def ledger(self, side: str) -> Ledger:
        cfg = self.centre if side == "centre" else self.edge
        return Ledger(connect(cfg.redis_url), cfg.redis_prefix)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int

    def json(self) -> Any:
        return orjson.loads(self.value)


def read_all(cfg: Config, names: Iterable[str], settle_s: float = 0.0) -> dict[str, list[Record]]:
    """Every record of the topics (short names), read to their end (end-of-partition signal)."""
    topics = [cfg.topic(n) for n in names]
    c = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "t", "fetch.wait.max.ms":
                  25, "enable.partition.eof": True, "enable.auto.commit": False})
    parts = list_partitions(cfg.kafka_common(), topics)
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
    out: dict[str, list[Record]] = {n: [] for n in names}
    short = dict(zip(topics, names, strict=True))
    ended: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 30
    try:
        while len(ended) < len(parts) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                if m.error() is not None:
                    ended.add((m.topic(), m.partition()))
                    continue
                headers = {k: v.decode() for k, v in (m.headers() or [])}
                out[short[m.topic()]].append(Record(
                    short[m.topic()], m.partition(), m.offset(), (m.key() or b"").decode(),
                    m.value() or b"", headers, m.timestamp()[1]))
    finally:
        c.close()
    return out


def publish_paced(cfg: Config, topic: str, events: Iterable[Callable[[], dict[str, Any] | bytes]],
                  rate: float) -> list[dict[str, Any] | bytes]:
    """Produce events at `rate` per second, each built just before it is sent (so its
    `occurred_at` is its real send time); returns what was sent."""
    from confluent_kafka import Producer

    from schemas.topics import key_for

    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap, "linger.ms": 2})
    sent: list[dict[str, Any] | bytes] = []
    start = time.monotonic()
    for i, make in enumerate(events):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ev = make()
        if isinstance(ev, bytes):
            producer.produce(cfg.topic(topic), ev, b"bad")
        else:
            producer.produce(cfg.topic(topic), orjson.dumps(ev), key_for(topic, ev).encode())
        producer.poll(0)
        sent.append(ev)
    assert producer.flush(30) == 0
    return sent


def site_stock(ledger: Ledger, skus: Iterable[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(on-hand, reserved) of every (site node, sku)."""
    return {(n, s): ledger.stock(n, s)[:2] for n in SITE_NODES for s in skus}
