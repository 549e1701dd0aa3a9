"""The merged-delivery dataflow: routed decisions -> join requests on the orders topic.

```
 fulfil.decisions ─► candidates (routed, with ship_to) ─► consolidate (keyed state per ship_to)
                                                             └─► join requests ─► fulfil.orders
```

Its own flow, run beside the routing flow (`fulfil run --flow consolidation`, or
`python -m bytewax.run dataflows.consolidation:flow`), because keyed state per order costs the
routing process about 40 µs an order (measured: 83 -> 127 µs of engine CPU per order when it
ran inside the routing flow) and routing must not slow down or wait for it: the first decision
goes out at once, consolidation re-plans later (see operators/consolidation.py and
docs/predictive.md). The router decides whether a join is worth it; this flow only proposes.
Orders whose customer asked to ship separately (decision reason `ship-separately`) are never
proposed nor joined; explicit merge/split requests go to the router directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow

from dataflows.connectors import KafkaSink, KafkaSource, OutMessage, RawMessage
from dataflows.router import Out, now_ms
from fulfil import heap
from fulfil.config import Config, load_config
from operators import consolidation


def candidate(raw: RawMessage) -> tuple[str, dict] | None:
    """(ship_to, decision) of a routed decision that carries a consolidation key."""
    try:
        d = orjson.loads(raw.value or b"")
    except orjson.JSONDecodeError:
        return None  # written by fulfil itself; the routing flow's contract tests guard it
    key = d.get("ship_to") if isinstance(d, dict) else None
    return (key, d) if key and d.get("status") == "routed" else None


def join_request(orders_topic: str) -> Callable[[tuple[str, dict | None]], Out | None]:
    """A join into an `order.reroute_requested` on the orders topic; the event id is fixed by
    the pair of orders, so a replay asks once (the router recognises the event id)."""

    def build(kv: tuple[str, dict | None]) -> Out | None:
        req = kv[1]
        if req is None:
            return None
        oid, join = req["order_id"], req["join"]
        event = {"type": "order.reroute_requested",
                 "event_id": f"consolidate:{join['order_id']}:{oid}", "order_id": oid,
                 "occurred_at": now_ms(), "reason": "consolidate", "join": join}
        return oid, OutMessage(orders_topic, oid.encode(), orjson.dumps(event))

    return build


def build_flow(config: Config | None = None, stop: threading.Event | None = None) -> Dataflow:
    """The consolidation dataflow for `config`; `stop` ends the source (tests, embedding)."""
    cfg = config or load_config()
    heap.configure(cfg.gc_gen0_threshold)  # fewer, cheaper collections (fulfil/heap.py)
    window_ms = int(cfg.consolidation_window_s * 1000)
    source = KafkaSource(cfg.kafka_common(), [cfg.topic("decisions")], slots=cfg.source_slots,
                         start_from=cfg.start_from, batch_size=cfg.batch_size,
                         fetch_wait_max_ms=cfg.fetch_wait_max_ms,
                         fetch_min_bytes=cfg.fetch_min_bytes,
                         group_id="fulfil-consolidation", stop=stop)
    flow = Dataflow("fulfil-consolidation")
    decisions = op.input("decisions-in", flow, source)
    candidates = op.filter_map("candidates", decisions, candidate)
    joins = op.stateful_map("consolidate", candidates,
                            lambda state, d: consolidation.step(state, d, window_ms))
    requests = op.filter_map("join-requests", joins, join_request(cfg.topic("orders")))
    op.output("orders-out", requests,
              KafkaSink(cfg.kafka_common(), 4, linger_ms=cfg.producer_linger_ms))
    return flow


def __getattr__(name: str) -> Dataflow:
    """`python -m bytewax.run dataflows.consolidation:flow` builds the flow on first access."""
    if name == "flow":
        return build_flow()
    raise AttributeError(name)
