"""The routing step on its own (real Redis, no Kafka): poison events are isolated."""

from __future__ import annotations

import orjson

from dataflows.connectors import RawMessage
from dataflows.router import Router
from fulfil.config import Config
from operators.network import load_default
from state.ledger import InventoryUpdate, Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import order

NET = load_default()
SP_NODE = next(n.id for n in NET.nodes if n.region == "SP")


def raw(i: int, event: dict) -> RawMessage:
    return RawMessage("fulfil.orders", 0, i, event["order_id"].encode(), orjson.dumps(event), 0, 0)


def test_a_poison_event_is_set_aside_and_its_neighbours_are_routed(redis_url, monkeypatch):
    client = connect(redis_url)
    Ledger(client).apply_inventory([InventoryUpdate(SP_NODE, "sku-a", 1, "snapshot", 100)])
    router = Router(Config(redis_url=redis_url), NET, client)
    real_prepare = router.planner.prepare

    def prepare(orders, outcomes=None):  # a bug that only one order triggers
        if any(o.order_id == "poison" for o in orders):
            raise ZeroDivisionError("boom")
        return real_prepare(orders, outcomes)

    monkeypatch.setattr(router.planner, "prepare", prepare)
    events = [order("o-1", [("sku-a", 1)]), order("poison", [("sku-a", 1)]),
              order("o-2", [("sku-a", 1)])]
    out = router.route([raw(i, ev) for i, ev in enumerate(events)])
    decisions = [orjson.loads(m.value) for _, m in out if m.topic == "fulfil.decisions"]
    dead = [orjson.loads(m.value) for _, m in out if m.topic == "fulfil.dead-letters"]
    assert sorted(d["order_id"] for d in decisions) == ["o-1", "o-2"]
    assert all(d["status"] == "routed" for d in decisions)
    assert [(d["error"]["code"], d["source"]["offset"]) for d in dead] == [("internal", 1)]
    assert "ZeroDivisionError: boom" in dead[0]["error"]["message"]
    assert Ledger(client).stock(SP_NODE, "sku-a") == (100, 2, 98)  # nothing held twice


def test_redis_round_trips_and_state_sizes_are_measured(redis_url) -> None:
    from prometheus_client import REGISTRY

    def count(op: str) -> float:
        return REGISTRY.get_sample_value("fulfil_redis_roundtrip_seconds_count", {"op": op}) or 0

    client = connect(redis_url)
    Ledger(client).apply_inventory([InventoryUpdate(SP_NODE, "sku-a", 1, "snapshot", 100)])
    router = Router(Config(redis_url=redis_url), NET, client)
    before = count("put_records+reserve")
    router.route([raw(i, order(f"o-{i}", [("sku-a", 1)])) for i in range(3)])
    assert count("put_records+reserve") == before + 1  # one round trip for the whole batch
    # the read: order book + stock + abnormal-order marks (flags ride in the read's round trip)
    assert count("hmget+mget+order_marks") >= 1
    assert REGISTRY.get_sample_value("fulfil_state_entries",
                                     {"state": "availability-cache-skus"}) == 1
