"""Re-routing open orders before a disruption hits: a forecast outage on the lane an order was
routed over moves it (new plan held before the old is let go); orders with nothing better, or
already picked up, keep their plan and get no new decision."""

from __future__ import annotations

import time

import pytest

from fulfil.config import Config
from operators.network import load_default
from state.ledger import Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import (
    FlowThread,
    create_topics,
    make_config,
    order,
    publish,
    read_outputs,
    stock,
)

NET = load_default()
SP_NODE = next(n.id for n in NET.nodes if n.region == "SP")
RJ = {"lat": -22.90, "lng": -43.20, "postal": "20040"}
HOUR = 3_600_000


@pytest.fixture
def cfg(bootstrap: str, redis_url: str, topic_prefix: str) -> Config:
    cfg = make_config(bootstrap, redis_url, topic_prefix)
    create_topics(cfg)
    return cfg


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_forecast_outage_moves_open_orders_off_the_lane_before_pickup(cfg: Config) -> None:
    publish(cfg, "inventory", [stock(SP_NODE, "sku-a", 100)])
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        _wait(lambda: ledger.stock(SP_NODE, "sku-a")[0] == 100)
        publish(cfg, "orders", [order("open", [("sku-a", 2)], **RJ),
                                order("shipped", [("sku-a", 1)], **RJ)])
        first = {d["order_id"]: d for d in
                 read_outputs(cfg, lambda o: len(o.decisions) >= 2).decisions}
        ship = first["shipped"]["shipments"][0]
        publish(cfg, "carrier-status", [{
            "type": "shipment.tracking", "event_id": "t-1", "shipment_id": "shipped/1",
            "order_id": "shipped", "carrier": ship["carrier"], "service": ship["service"],
            "node_id": SP_NODE, "status": "picked_up", "occurred_at": int(time.time() * 1000)}])
        _wait(lambda: ledger.stock(SP_NODE, "sku-a")[0] == 99)  # the pick-up went through
        used = first["open"]["shipments"][0]
        now = int(time.time() * 1000)
        # storm forecast: the carrier's lanes into RJ close in 6 hours, for a day
        publish(cfg, "carrier-status", [{
            "type": "lane.status", "event_id": "f-1", "carrier": used["carrier"],
            "dest_region": "RJ", "status": "outage", "reason": "storm forecast",
            "occurred_at": now, "valid_from": now + 6 * HOUR, "valid_until": now + 30 * HOUR}])
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 3, timeout=60)
        time.sleep(1.0)  # nothing else follows (the shipped order is not re-routed)
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 4, timeout=2)
    moved = [d for d in out.decisions if d["version"] == 2]
    assert [d["order_id"] for d in moved] == ["open"]
    assert moved[0]["reasons"][:2] == ["rerouted", "lane-outage"]
    assert moved[0]["shipments"][0]["carrier"] != used["carrier"]
    # the stock moved with it: 2 held for "open" (new reservation), none left under the old one
    assert ledger.stock(SP_NODE, "sku-a") == (99, 2, 97)
    assert ledger.holds([(SP_NODE, "open#1"), (SP_NODE, "open#2")]) == [False, True]


def test_a_second_order_to_the_same_address_is_merged_onto_the_first_parcel(cfg: Config) -> None:
    a, b = [n for n in NET.nodes if n.region == "SP"][:2]
    publish(cfg, "inventory", [stock(a.id, "sku-x", 10), stock(a.id, "sku-y", 10),
                               stock(b.id, "sku-y", 10)])
    home = {"lat": b.lat, "lng": b.lng, "postal": None}  # the customer lives next to node b
    customer = {"id": "c-42", "tier": "standard"}
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        _wait(lambda: ledger.stock(b.id, "sku-y")[0] == 10)
        publish(cfg, "orders", [order("first", [("sku-x", 1)], customer=customer, **home)])
        read_outputs(cfg, lambda o: len(o.decisions) >= 1)
        publish(cfg, "orders", [order("second", [("sku-y", 1)], customer=customer, **home)])
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 3, timeout=60)
    first, second, merged = out.decisions[:3]
    assert first["shipments"][0]["node_id"] == a.id  # only a holds sku-x
    assert second["shipments"][0]["node_id"] == b.id  # on its own: the nearest node
    assert (merged["order_id"], merged["version"], merged["reasons"][0]) == (
        "second", 2, "consolidated")
    ship = merged["shipments"][0]
    assert (ship["node_id"], ship["carrier"], ship["service"]) == (
        a.id, first["shipments"][0]["carrier"], first["shipments"][0]["service"])
    assert merged["consolidation_group"] == f"{first['ship_to']}:first"
    assert merged["ship_to"] == first["ship_to"] == second["ship_to"]
    assert (ledger.stock(a.id, "sku-y")[1], ledger.stock(b.id, "sku-y")[1]) == (1, 0)
