"""Node closures, through the real broker and Redis: a closure forecast moves the open orders
held at the node (new plan held before the old is released) and keeps new orders away from it
while it lasts; once it is over, the node serves orders again."""

from __future__ import annotations

import time

from fulfil.config import Config
from operators.network import load_default
from state.ledger import Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import (
    FlowThread,
    order,
    publish,
    read_outputs,
    stock,
    wait_until,
)

NET = load_default()
N, OTHER = [n for n in NET.nodes if n.region == "SP"][:2]
AT_N = {"lat": N.lat, "lng": N.lng, "postal": None}  # customers next to N: N is their best node
HOUR = 3_600_000


def closure(event_id: str, occurred_at: int, **fields: object) -> dict:
    return {"type": "node.closure", "event_id": event_id, "node_id": N.id,
            "occurred_at": occurred_at, **fields}


def node_of(decision: dict) -> str:
    (ship,) = decision["shipments"]
    return ship["node_id"]


def test_a_closure_forecast_moves_open_orders_and_new_orders_avoid_the_node(cfg: Config) -> None:
    publish(cfg, "inventory", [stock(N.id, "sku-a", 10), stock(OTHER.id, "sku-a", 10)])
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(OTHER.id, "sku-a")[0] == 10)
        publish(cfg, "orders", [order("open", [("sku-a", 2)], **AT_N),
                                order("shipped", [("sku-a", 1)], **AT_N)])
        first = read_outputs(cfg, lambda o: len(o.decisions) >= 2)
        ship = first.for_order("shipped")[0]["shipments"][0]
        publish(cfg, "carrier-status", [{
            "type": "shipment.tracking", "event_id": "t-1", "shipment_id": f"shipped/{N.id}",
            "order_id": "shipped", "carrier": ship["carrier"], "service": ship["service"],
            "node_id": N.id, "status": "picked_up", "occurred_at": int(time.time() * 1000)}])
        wait_until(lambda: ledger.stock(N.id, "sku-a")[0] == 9)  # the pick-up went through
        now = int(time.time() * 1000)
        # a flood is forecast: N closes in an hour (before the open order's pickup), for four
        # days: the open order would leave too late for its promise, so it moves
        publish(cfg, "carrier-status", [closure("k-1", now, reason="flood forecast",
                                                valid_from=now + HOUR,
                                                valid_until=now + 97 * HOUR)])
        moved = read_outputs(cfg, lambda o: len(o.for_order("open")) >= 2, timeout=60)
        stock_after_move = (ledger.stock(N.id, "sku-a"), ledger.stock(OTHER.id, "sku-a"))
        holds = ledger.holds([(N.id, "open#1"), (OTHER.id, "open#2")])
        publish(cfg, "orders", [order("during", [("sku-a", 1)], **AT_N)])
        out = read_outputs(cfg, lambda o: len(o.for_order("during")) >= 1)
    assert [node_of(d) for d in first.decisions] == [N.id, N.id]
    _, v2 = moved.for_order("open")
    assert (v2["version"], v2["reasons"][:2]) == (2, ["rerouted", "node-closure"])
    assert node_of(v2) == OTHER.id
    # the stock moved with it: the new reservation held at OTHER, the old one released at N
    assert stock_after_move == ((9, 0, 9), (10, 2, 8))
    assert holds == [False, True]
    assert [d["version"] for d in out.for_order("shipped")] == [1]  # picked up: stays
    assert node_of(out.for_order("during")[0]) == OTHER.id  # N is closed for new orders


def test_the_node_serves_orders_again_when_the_closure_is_over(cfg: Config) -> None:
    publish(cfg, "inventory", [stock(N.id, "sku-a", 10), stock(OTHER.id, "sku-a", 10)])
    board = connect(cfg.redis_url)
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(OTHER.id, "sku-a")[0] == 10)
        now = int(time.time() * 1000)
        publish(cfg, "carrier-status", [closure("k-1", now, valid_until=now + 25 * HOUR)])
        wait_until(lambda: board.hexists(f"{cfg.redis_prefix}:closures", N.id))
        time.sleep(0.2)  # > lane_refresh_ms: every router has read the board
        publish(cfg, "orders", [order("during", [("sku-a", 1)], **AT_N)])
        read_outputs(cfg, lambda o: len(o.decisions) >= 1)
        # the closure ends early: a newer record for N whose valid_until has passed
        later = int(time.time() * 1000)
        publish(cfg, "carrier-status", [closure("k-2", later, valid_until=later)])
        wait_until(lambda: b'"updated_at":%d' % later in board.hget(
            f"{cfg.redis_prefix}:closures", N.id))
        time.sleep(0.2)
        publish(cfg, "orders", [order("after", [("sku-a", 1)], **AT_N)])
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 2)
    assert node_of(out.for_order("during")[0]) == OTHER.id
    assert node_of(out.for_order("after")[0]) == N.id
    assert out.dead == []
