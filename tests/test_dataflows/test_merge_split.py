"""A customer asks to merge orders into one parcel, or to ship one separately.

Through the real broker and Redis: a merge joins the named order's parcel even where the
automatic rule would not (it costs more), moving the stock; a split takes the order out of the
group (same plan, no group) and the consolidation flow never merges it again; a merge that
would break a promise, or names orders of another customer, is refused with a dead letter;
requests for unknown, cancelled or shipped orders are dead letters; replays change nothing.
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows.connectors import list_partitions
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
FAR = next(n for n in NET.nodes if n.region == "PE")  # ~2,000 km from the customer
NEAR = next(n for n in NET.nodes if n.region == "SP")
HOME = {"lat": NEAR.lat, "lng": NEAR.lng, "postal": None}  # the customer lives next to NEAR
CUSTOMER = {"id": "c-1", "tier": "standard"}


def ask(kind: str, event_id: str, order_id: str, **extra: object) -> dict:
    return {"type": f"order.{kind}_requested", "event_id": event_id, "order_id": order_id,
            "occurred_at": int(time.time() * 1000), **extra}


def seen_on_orders_topic(cfg: Config, event_id: str, timeout: float = 60.0) -> bool:
    """Has some flow written an event with this id to the orders topic?"""
    consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "test-orders",
                         "enable.auto.commit": "false", "fetch.wait.max.ms": "25"})
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in
                     list_partitions(cfg.kafka_common(), [cfg.topic("orders")])])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if not m.error() and orjson.loads(m.value()).get("event_id") == event_id:
                    return True
        return False
    finally:
        consumer.close()


def publish_stock(cfg: Config) -> None:
    """sku-x only at FAR; sku-y at FAR and at NEAR (the cheaper parcel for it alone)."""
    publish(cfg, "inventory", [stock(FAR.id, "sku-x", 10), stock(FAR.id, "sku-y", 10),
                               stock(NEAR.id, "sku-y", 10)])


def stocked_ledger(cfg: Config) -> Ledger:
    """The ledger, once the running flow has applied `publish_stock`."""
    ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
    wait_until(lambda: ledger.stock(NEAR.id, "sku-y")[0] == 10)
    return ledger


def versions(decisions: list[dict]) -> dict[int, dict]:
    return {d["version"]: d for d in decisions}  # a replay re-emits the same bytes


def test_merge_joins_a_costlier_parcel_and_split_leaves_it_for_good(cfg: Config) -> None:
    from dataflows.consolidation import build_flow as consolidation_flow

    publish_stock(cfg)
    with FlowThread(cfg):
        ledger = stocked_ledger(cfg)
        publish(cfg, "orders", [
            order("first", [("sku-x", 1)], customer=CUSTOMER, promise_days=20, **HOME),
            order("second", [("sku-y", 1)], customer=CUSTOMER, promise_days=20, **HOME)])
        read_outputs(cfg, lambda o: len(o.decisions) >= 2)
        publish(cfg, "orders", [ask("merge", "m-1", "second", **{"with": ["first"]})])
        read_outputs(cfg, lambda o: len(o.for_order("second")) >= 2)
        after_merge = (ledger.stock(FAR.id, "sku-y"), ledger.stock(NEAR.id, "sku-y"))
        # the customer changes their mind; the same request arrives twice (a retry)
        publish(cfg, "orders", [ask("split", "s-1", "second"), ask("split", "s-1", "second")])
        read_outputs(cfg, lambda o: len(o.for_order("second")) >= 4)
        held = ledger.holds([(NEAR.id, "second#1"), (FAR.id, "second#2")])
        # The consolidation flow now reads every decision from the start: seeing second's first
        # decision it proposes the join again, which the router declines (the customer's choice).
        with FlowThread(cfg, consolidation_flow):
            assert seen_on_orders_topic(cfg, "consolidate:first:second")
            # after that proposal: an address change (to the same address) re-plans it on its
            # own, still separate; then the customer merges it again, undoing the split
            publish(cfg, "orders", [{
                "type": "order.address_changed", "event_id": "a-1", "order_id": "second",
                "occurred_at": int(time.time() * 1000),
                "destination": {"lat": HOME["lat"], "lng": HOME["lng"]}},
                ask("merge", "m-2", "second", **{"with": ["first"]})])
            out = read_outputs(cfg, lambda o: any(
                d["version"] == 5 for d in o.for_order("second")), timeout=60)
    (first,) = out.for_order("first")
    v = versions(out.for_order("second"))
    assert sorted(v) == [1, 2, 3, 4, 5]  # the declined join and the replayed split made nothing
    own, merged, split, moved, again = v[1], v[2], v[3], v[4], v[5]
    assert own["shipments"][0]["node_id"] == NEAR.id
    ship = merged["shipments"][0]
    parcel = (FAR.id, first["shipments"][0]["carrier"], first["shipments"][0]["service"])
    assert (ship["node_id"], ship["carrier"], ship["service"]) == parcel
    assert merged["reasons"][0] == "merge-requested"
    assert merged["consolidation_group"] == f"{first['ship_to']}:first"
    # the automatic rule would not have merged it: without one parcel's fixed costs the joined
    # plan still costs more than the order's own parcel
    svc = next(s for s in NET.services if (s.carrier, s.service) == parcel[1:])
    assert merged["cost"] - FAR.handling_cost - svc.base_cost >= own["cost"]
    # the stock moved with it: held at FAR under the new version, nothing left at NEAR
    assert after_merge[0][1] == 1 and after_merge[1][1] == 0
    assert held == [False, True]
    # split: same plan and stock, no group, the choice stated
    assert split["reasons"][:2] == ["split-requested", "ship-separately"]
    assert "consolidation_group" not in split and split["shipments"] == merged["shipments"]
    # a later decision of the order still says so (the consolidation flow reads it)
    assert moved["reasons"][:2] == ["address-changed", "ship-separately"]
    assert node_of(moved) == NEAR.id and "consolidation_group" not in moved
    assert again["reasons"][0] == "merge-requested" and "ship-separately" not in again["reasons"]
    assert again["shipments"][0]["node_id"] == FAR.id
    assert again["consolidation_group"] == merged["consolidation_group"]
    assert ledger.stock(FAR.id, "sku-y")[1] == 1 and ledger.stock(NEAR.id, "sku-y")[1] == 0
    assert out.dead == []


def test_refused_merges_and_requests_for_orders_that_cannot_change(cfg: Config) -> None:
    publish_stock(cfg)
    with FlowThread(cfg):
        ledger = stocked_ledger(cfg)
        publish(cfg, "orders", [
            order("first", [("sku-x", 1)], customer=CUSTOMER, promise_days=20, **HOME),
            order("tight", [("sku-y", 1)], customer=CUSTOMER, promise_days=3, **HOME),
            order("stranger", [("sku-y", 1)], customer={"id": "c-2"}, promise_days=20, **HOME),
            order("gone", [("sku-y", 1)], customer=CUSTOMER, **HOME),
            order("shipped", [("sku-y", 1)], customer=CUSTOMER, **HOME)])
        first = read_outputs(cfg, lambda o: len(o.decisions) >= 5)
        ship = first.for_order("shipped")[0]["shipments"][0]
        publish(cfg, "carrier-status", [{
            "type": "shipment.tracking", "event_id": "t-1", "shipment_id": f"shipped/{NEAR.id}",
            "order_id": "shipped", "carrier": ship["carrier"], "service": ship["service"],
            "node_id": NEAR.id, "status": "picked_up", "occurred_at": int(time.time() * 1000)}])
        publish(cfg, "orders", [order_cancel("gone")])
        wait_until(lambda: ledger.stock(NEAR.id, "sku-y")[:2] == (9, 2))  # tight + stranger
        publish(cfg, "orders", [
            ask("merge", "r-promise", "tight", **{"with": ["first"]}),
            ask("merge", "r-stranger", "stranger", **{"with": ["first"]}),
            ask("merge", "r-self", "tight", **{"with": ["tight"]}),
            ask("merge", "r-cancelled", "first", **{"with": ["gone"]}),
            ask("split", "r-unknown", "nobody"),
            ask("split", "r-gone", "gone"),
            ask("split", "r-shipped", "shipped")])
        out = read_outputs(cfg, lambda o: len(o.dead) >= 7, timeout=60)
    why = {orjson.loads(d["payload"])["event_id"]: d["error"] for d in out.dead}
    assert {k: (e["code"], e["field"], e.get("rule", "")) for k, e in why.items()} == {
        "r-promise": ("invalid-state", "with", "promise"),
        "r-stranger": ("invalid-state", "with[0]", "same-customer-address"),
        "r-self": ("schema", "with", "distinct"),
        "r-cancelled": ("unknown-order", "with[0]", ""),
        "r-unknown": ("unknown-order", "order_id", ""),
        "r-gone": ("unknown-order", "order_id", ""),
        "r-shipped": ("invalid-state", "order_id", "open"),
    }
    assert "after its promise" in why["r-promise"]["message"], why["r-promise"]["message"]
    assert "shipped" in why["r-shipped"]["message"]
    # nobody changed: one decision each, and the cancellation
    assert {d["order_id"]: d["version"] for d in out.decisions if d["version"] > 1} == {
        "gone": 2}
    assert ledger.stock(NEAR.id, "sku-y")[:2] == (9, 2)  # tight kept its own stock


def order_cancel(order_id: str) -> dict:
    return {"type": "order.cancelled", "event_id": f"x-{order_id}", "order_id": order_id,
            "occurred_at": int(time.time() * 1000)}


def test_a_merge_naming_several_orders_brings_them_all_onto_one_parcel(cfg: Config) -> None:
    publish_stock(cfg)
    with FlowThread(cfg):
        ledger = stocked_ledger(cfg)
        publish(cfg, "orders", [
            order(oid, [(sku, 1)], customer=CUSTOMER, promise_days=20, **HOME)
            for oid, sku in (("first", "sku-x"), ("second", "sku-y"), ("third", "sku-y"),
                             ("fourth", "sku-x"))])
        read_outputs(cfg, lambda o: len(o.decisions) >= 4)
        publish(cfg, "orders", [ask("merge", "m-1", "second",
                                    **{"with": ["first", "third", "fourth"]})])
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 7, timeout=60)
    (first,) = out.for_order("first")
    group = f"{first['ship_to']}:first"
    for oid in ("second", "third"):  # third was asked by the router, on its own key
        own, merged = out.for_order(oid)
        assert node_of(own) == NEAR.id and node_of(merged) == FAR.id
        assert (merged["event_id"], merged["consolidation_group"]) == (
            "m-1" if oid == "second" else "m-1:third", group)
    assert ledger.stock(FAR.id, "sku-y")[1] == 2 and ledger.stock(NEAR.id, "sku-y")[1] == 0
    # fourth already shipped from there with that service: it only gets the group's name
    own, named = out.for_order("fourth")
    assert named["shipments"] == own["shipments"] and named["reasons"][0] == "merge-requested"
    assert named["consolidation_group"] == group and named["event_id"] == "m-1:fourth"
    assert ledger.holds([(FAR.id, "fourth#1"), (FAR.id, "fourth#2")]) == [True, False]


def node_of(decision: dict) -> str:
    (ship,) = decision["shipments"]
    return ship["node_id"]
