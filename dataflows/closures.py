"""Node closures in the routing dataflow: keyed state per node, the board, re-route requests.

```
 parse-carrier ─► node.closure ─► node-closures (keyed state per node) ─┬─► closure board (Redis),
                                                                        │   read by every router
                                                                        └─► closure-reroutes ─►
                                                       order.reroute_requested on fulfil.orders
```

The same shape as lane health (`dataflows/routing.py`): the board makes every router avoid the
node for new plans (`operators/closures.py: closed_mask`), and the re-route step asks to move
the open orders held at the node whose pickup the closure would block; the router moves each
with its versioned reservations (new held before old released), reason `node-closure`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Stream
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows.connectors import OutMessage
from dataflows.router import Out, now_ms
from fulfil import metrics
from fulfil.config import Config
from operators.closures import (
    NodeClock,
    NodeClosure,
    announced,
    closure_key,
    endangered,
    node_clock,
    reroute_request,
    update_closure,
)
from operators.network import Network
from operators.orders import OrderRecord
from operators.reroute import open_records, order_of
from state.closures import closure_board
from state.ledger import Ledger
from state.orderbook import OrderBook


def open_orders(book: OrderBook, node_ids: list[str], carrier: str | None = None
                ) -> list[tuple[str, OrderRecord]]:
    """(node, record) of every order still holding a reservation at these nodes: one read of
    the nodes' reservations, one of the orders' records. For the rare scans a disruption
    triggers (a closure here, a lane in `dataflows/routing.py`), never per order. `carrier`:
    only records that name it are parsed (`operators.reroute.open_records`)."""
    open_by_node = book.ledger.open_reservations(node_ids)
    wanted = sorted({order_of(r) for rids in open_by_node.values() for r in rids})
    return open_records(open_by_node, book.get_many(wanted) if wanted else {}, carrier)


class ClosureRerouteRequests:
    """`flat_map_batch` over closure changes: for a node closing now or within the horizon, ask
    to re-plan the open orders held there that it would block (one `HKEYS` of the node's
    reservations: rare and bounded). Requests are keyed by order id on the orders topic, so each
    is handled in order with the order's other events."""

    def __init__(self, config: Config, client: Callable[[], Any],
                 network: Callable[[], Network]) -> None:
        self._config = config
        self._client = client
        self._network = network
        self._orders_topic = config.topic("orders")
        self._book: OrderBook | None = None
        self._clock: NodeClock | None = None

    def __call__(self, batch: list[tuple[str, NodeClosure]]) -> list[Out]:
        now = now_ms()
        closing = [c for _, c in batch if announced(c, now)]
        if not closing:
            return []
        if self._book is None:  # rare step: built on first use, then kept
            self._clock = node_clock(self._network())
            self._book = OrderBook(Ledger(self._client(), self._config.redis_prefix),
                                   self._config.redis_prefix)
        clock, book = self._clock, self._book
        out: list[Out] = []
        for c in closing:
            if c.key not in clock.index:
                continue
            asks = endangered(c, open_orders(book, [c.key]), clock, now)
            for oid in asks:
                event = reroute_request(oid, c, now)
                out.append((oid, OutMessage(self._orders_topic, oid.encode(), orjson.dumps(event))))
            metrics.REROUTES.labels(outcome="requested").inc(len(asks))
        return out


class ClosureBoardSink(DynamicSink[NodeClosure]):
    """Publishes closure changes to the Redis closure board every router reads."""

    def __init__(self, config: Config, client: Callable[[], Any]) -> None:
        self._config = config
        self._client = client

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(closure_board(self._client(), self._config.redis_prefix))


class _Partition(StatelessSinkPartition[NodeClosure]):
    def __init__(self, board: Any) -> None:
        self._board = board

    def write_batch(self, items: list[NodeClosure]) -> None:
        self._board.publish(items)


def closure_steps(config: Config, events: Stream[dict], client: Callable[[], Any],
                  network: Callable[[], Network]) -> Stream[Out]:
    """Wire the closure steps onto validated `node.closure` events; returns the re-route
    requests (to merge into the flow's Kafka output). `client` and `network` are the routing
    flow's per-process Redis client and network."""
    keyed = op.key_on("key-closure", events, closure_key)  # (node_id, event)
    state = op.stateful_map("node-closures", keyed, update_closure)  # (node_id, change | None)
    changes = op.filter_map("closure-changes", state, lambda kv: kv[1])
    op.output("closure-board-out", changes, ClosureBoardSink(config, client))
    return op.flat_map_batch("closure-reroutes", op.key_on("key-closed-node", changes,
                             lambda c: c.key), ClosureRerouteRequests(config, client, network))
