"""The channels dataflow: raw sales-channel payloads in, canonical order events out.

```
 fulfil.channel.shopify ─────► shopify-in ─────► map-shopify ─────┐  (key, OutMessage)
 fulfil.channel.woocommerce ─► woocommerce-in ─► map-woocommerce ─┼─► kafka-out ─► fulfil.orders
 ... one input and one map step per configured channel           ┘               (key order_id)
                                                                                 fulfil.dead-letters
```

Each `map-<channel>` step runs the channel's compiled mapping (operators/channels) over a batch:
a payload that maps to a valid `order.created` goes to `fulfil.orders`, keyed by its order id,
where the routing flow picks it up like any other order; one that does not goes to
`fulfil.dead-letters` with the reason (step `map-<channel>`, code `decode` or `schema`, the
payload field and the mapping rule with its line) and is counted in
`fulfil_dead_letters_total{topic,code}` and `fulfil_channel_payloads_total{channel,outcome}`. An
unexpected error on one payload is a dead letter with code `internal`, never a crashed worker.

Stateless, so replays are harmless: the same payload maps to the same event (same event_id and
order_id), which the routing flow recognises as a replay.

Run it with `fulfil channels run --channels channels.yaml ...` or
`FULFIL_CHANNELS=channels.yaml python -m bytewax.run dataflows.channels:flow`.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow

from dataflows.connectors import KafkaSink, KafkaSource, OutMessage, RawMessage
from fulfil import channel_metrics as cm
from fulfil import heap, metrics
from fulfil.channels_config import ChannelsConfig, load_channels
from fulfil.config import Config, load_config
from operators.channels.mapper import ChannelMapping
from operators.deadletters import dead_letter
from schemas.errors import ValidationError

SINK_PARTS = 8
log = logging.getLogger("fulfil.channels")
Out = tuple[str, OutMessage]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MapChannel:
    """`flat_map_batch` mapper of one channel: raw payloads -> order events and dead letters.

    The same construction as the routing flow's dead letters (`dataflows.router.dead_out`):
    the record names the source message, the step, and the error's code, field and rule.
    """

    def __init__(self, name: str, mapping: ChannelMapping, orders_topic: str, dlq_topic: str
                 ) -> None:
        self._name = name
        self._mapping = mapping
        self._orders = orders_topic
        self._dlq = dlq_topic
        self._step = f"map-{name}"
        self._mapped = cm.CHANNEL_PAYLOADS.labels(channel=name, outcome="mapped")
        self._dead = cm.CHANNEL_PAYLOADS.labels(channel=name, outcome="dead")

    def __call__(self, batch: list[RawMessage]) -> list[Out]:
        out: list[Out] = []
        mapped = 0
        for raw in batch:
            try:
                event = self._mapping.map_bytes(raw.value)
                order_id = event["order_id"]
                out.append((order_id, OutMessage(self._orders, order_id.encode(),
                                                 orjson.dumps(event))))
                mapped += 1
            except ValidationError as exc:
                out.append(self._dead_out(raw, exc.code, exc.message, exc.field, exc.rule))
            except Exception as exc:  # a bug must not stop the stream: set the payload aside
                log.exception("channel %s: payload at %s[%d]@%d failed", self._name, raw.topic,
                              raw.partition, raw.offset)
                out.append(self._dead_out(raw, "internal", f"{type(exc).__name__}: {exc}"))
        metrics.EVENTS_IN.labels(topic=f"channel.{self._name}").inc(len(batch))
        if mapped:
            self._mapped.inc(mapped)
        if mapped < len(batch):
            self._dead.inc(len(batch) - mapped)
        return out

    def _dead_out(self, raw: RawMessage, code: str, message: str, field: str = "",
                  rule: str = "") -> Out:
        metrics.DEAD_LETTERS.labels(topic=raw.topic, code=code).inc()
        value = dead_letter(
            topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
            payload=raw.value, step=self._step, code=code, message=message, at_ms=_now_ms(),
            field=field, rule=rule,
        )
        return raw.topic, OutMessage(self._dlq, raw.topic.encode(), value)


def _channels_file(channels: ChannelsConfig | None) -> ChannelsConfig:
    return channels if channels is not None else load_channels(os.environ.get("FULFIL_CHANNELS"))


def build_flow(config: Config | None = None, stop: threading.Event | None = None,
               channels: ChannelsConfig | None = None) -> Dataflow:
    """The channels dataflow for `config` and `channels` (defaults: environment, then the
    shipped channels.yaml). Every mapping is compiled here, so a broken one fails the start
    with its line numbers instead of dead-lettering every payload."""
    cfg = config or load_config()
    heap.configure(cfg.gc_gen0_threshold)  # fewer, cheaper collections (fulfil/heap.py)
    chans = _channels_file(channels)
    kafka = cfg.kafka_common()
    orders, dlq = cfg.topic("orders"), cfg.topic("dead-letters")

    flow = Dataflow("fulfil-channels")
    mapped = []
    for name, spec in chans.channels.items():
        raw = op.input(f"{name}-in", flow, KafkaSource(
            kafka, [cfg.topic(spec.topic_name())], slots=cfg.source_slots,
            start_from=cfg.start_from, batch_size=cfg.batch_size,
            fetch_wait_max_ms=cfg.fetch_wait_max_ms, fetch_min_bytes=cfg.fetch_min_bytes,
            group_id=f"fulfil-channel-{name}",
            stop=stop))
        step = MapChannel(name, spec.load_mapping(), orders, dlq)
        mapped.append(op.flat_map_batch(f"map-{name}", raw, step))  # (key, OutMessage)
    out = op.merge("all-out", *mapped)
    op.output("kafka-out", out, KafkaSink(kafka, SINK_PARTS, linger_ms=cfg.producer_linger_ms))
    return flow


def __getattr__(name: str) -> Dataflow:
    """`python -m bytewax.run dataflows.channels:flow` builds the flow on first access only."""
    if name == "flow":
        return build_flow()
    raise AttributeError(name)
