"""The routing dataflow end to end: real broker, real Redis, the real flow in a thread."""

from __future__ import annotations

import orjson

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
SP_NODE = next(n.id for n in NET.nodes if n.region == "SP")




def test_should_route_every_valid_order_exactly_once_and_dead_letter_bad_ones(cfg):
    # given stock of two skus at one São Paulo node
    publish(cfg, "inventory", [stock(SP_NODE, "sku-a", 100), stock(SP_NODE, "sku-b", 100)])
    orders = [order(f"o-{i}", [("sku-a", 1), ("sku-b", 2)] if i % 2 else [("sku-a", 3)])
              for i in range(40)]
    bad = [b"{not json", orjson.dumps({**order("bad-qty", [("sku-a", 0)])}),
           orjson.dumps({"type": "order.created", "order_id": "no-lines"}), b"\xff\xfe",
           orjson.dumps(order("tab-sku", [("sku\ta", 1)]))]  # would break ledger packing
    with FlowThread(cfg):
        # inventory must be applied before the orders arrive: wait for the ledger
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(SP_NODE, "sku-b")[0] == 100)
        publish(cfg, "orders", orders)
        publish(cfg, "orders", bad, key="bad")
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 40 and len(o.dead) >= 5)
    # then: exactly one decision per valid order, all routed from stock that exists
    assert sorted(d["order_id"] for d in out.decisions) == sorted(o["order_id"] for o in orders)
    assert {d["decision_id"] for d in out.decisions} == {f"o-{i}:v1" for i in range(40)}
    assert all(d["status"] == "routed" for d in out.decisions)
    for d in out.decisions:
        assert [s["node_id"] for s in d["shipments"]] == [SP_NODE]
        assert d["timings"]["decided_at"] >= d["timings"]["event_time"]
        assert d["runner_up"] is None or d["runner_up"]["score"] <= d["score"]
    # and the ledger holds exactly what was promised: 20 orders x 1 + 20 x 3 of sku-a
    assert ledger.stock(SP_NODE, "sku-a") == (100, 80, 20)
    assert ledger.stock(SP_NODE, "sku-b") == (100, 40, 60)
    # bad events: dead letters naming the problem, never a crash, never silence
    codes = sorted(d["error"]["code"] for d in out.dead)
    assert codes == ["decode", "decode", "schema", "schema", "schema"]
    qty = next(d for d in out.dead if d["error"]["field"].endswith("qty"))
    assert qty["error"]["rule"] == "minimum"
    assert qty["source"]["topic"] == cfg.topic("orders")
    assert any(d["payload_encoding"] == "base64" for d in out.dead)


def test_should_report_unroutable_orders_as_decisions_and_dead_letters(cfg):
    publish(cfg, "inventory", [stock(SP_NODE, "sku-a", 1)])
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(SP_NODE, "sku-a")[0] == 1)
        publish(cfg, "orders", [order("o-1", [("sku-a", 1)]), order("o-2", [("sku-a", 1)]),
                                order("o-3", [("sku-unknown", 1)])])
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 3 and len(o.dead) >= 2)
    by_id = {d["order_id"]: d for d in out.decisions}
    # o-1 and o-2 compete for the last unit (different partitions: either may come first)
    winner, loser = sorted((by_id["o-1"], by_id["o-2"]), key=lambda d: d["status"] != "routed")
    assert winner["status"] == "routed"
    assert loser["status"] == "unroutable" and loser["reasons"] == ["no-stock"]
    assert by_id["o-3"]["status"] == "unroutable" and by_id["o-3"]["reasons"] == ["no-stock"]
    assert sorted(d["error"]["code"] for d in out.dead) == ["unroutable", "unroutable"]
    assert ledger.stock(SP_NODE, "sku-a") == (1, 1, 0)


def test_should_release_stock_on_cancel_and_reroute_on_address_change(cfg):
    publish(cfg, "inventory", [stock(n.id, "sku-a", 10) for n in NET.nodes])
    o = order("o-1", [("sku-a", 2)])  # São Paulo
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: all(ledger.stock(n.id, "sku-a")[0] == 10 for n in NET.nodes))
        publish(cfg, "orders", [o])
        first = read_outputs(cfg, lambda out: len(out.decisions) >= 1).decisions[0]
        node1 = first["shipments"][0]["node_id"]
        assert ledger.stock(node1, "sku-a")[1] == 2
        # address change to Porto Alegre (RS): re-routed as version 2, old stock released
        move = {"type": "order.address_changed", "event_id": "e-move", "order_id": "o-1",
                "occurred_at": o["occurred_at"] + 1,
                "destination": {"lat": -30.03, "lng": -51.23, "postal_code": "90010"}}
        cancel = {"type": "order.cancelled", "event_id": "e-cancel", "order_id": "o-1",
                  "occurred_at": o["occurred_at"] + 2, "reason": "customer"}
        publish(cfg, "orders", [move])
        out = read_outputs(cfg, lambda out: len(out.decisions) >= 2)
        second = out.decisions[1]
        node2 = second["shipments"][0]["node_id"]
        assert second["decision_id"] == "o-1:v2" and "address-changed" in second["reasons"]
        assert NET.nodes[NET.node_index[node2]].region in {"RS", "SC", "PR"}
        assert ledger.stock(node1, "sku-a")[1] == (2 if node1 == node2 else 0)
        assert ledger.stock(node2, "sku-a")[1] == 2
        publish(cfg, "orders", [cancel, cancel])  # a duplicate cancel is harmless
        out = read_outputs(cfg, lambda out: len(out.decisions) >= 4)
    assert [d["decision_id"] for d in out.decisions[2:]] == ["o-1:v3", "o-1:v3"]
    assert out.decisions[2]["status"] == "cancelled"
    assert all(ledger.stock(n.id, "sku-a") == (10, 0, 10) for n in NET.nodes)



def test_should_reserve_nothing_twice_when_orders_are_replayed_after_a_crash(cfg):
    # given: a first run routes 30 orders competing for 20 units spread over two nodes
    other = next(n.id for n in NET.nodes if n.region == "RJ")
    publish(cfg, "inventory", [stock(SP_NODE, "sku-a", 12), stock(other, "sku-a", 8)])
    ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
    with FlowThread(cfg):
        wait_until(lambda: ledger.stock(other, "sku-a")[0] == 8
                   and ledger.stock(SP_NODE, "sku-a")[0])
        publish(cfg, "orders", [order(f"o-{i}", [("sku-a", 1)]) for i in range(30)])
        first = read_outputs(cfg, lambda o: len(o.decisions) >= 30)
    after_first = (ledger.stock(SP_NODE, "sku-a"), ledger.stock(other, "sku-a"))
    assert after_first == ((12, 12, 0), (8, 8, 0))
    # when: the whole input is replayed from the beginning (a restart without a snapshot)
    with FlowThread(cfg):
        both = read_outputs(cfg, lambda o: len(o.decisions) >= 60)
    # then: the replay re-emits byte-identical decisions and the ledger is unchanged
    assert (ledger.stock(SP_NODE, "sku-a"), ledger.stock(other, "sku-a")) == after_first
    for i in range(30):
        first_run, replayed = both.for_order(f"o-{i}")  # exactly two: original and replay
        assert replayed == first_run
    routed = [d for d in first.decisions if d["status"] == "routed"]
    assert len(routed) == 20


def test_should_avoid_a_carrier_during_its_outage_in_the_destination_region(cfg):
    publish(cfg, "inventory", [stock(SP_NODE, "sku-a", 100)])
    rj = {"lat": -22.90, "lng": -43.20, "postal": "20040"}
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(SP_NODE, "sku-a")[0] == 100)
        publish(cfg, "orders", [order("before", [("sku-a", 1)], **rj)])
        before = read_outputs(cfg, lambda o: len(o.decisions) >= 1).decisions[0]
        carrier = before["shipments"][0]["carrier"]
        outage = {"type": "lane.status", "event_id": "c-1", "carrier": carrier,
                  "dest_region": "RJ", "status": "outage", "reason": "strike",
                  "occurred_at": before["timings"]["event_time"]}
        publish(cfg, "carrier-status", [outage])
        board = connect(cfg.redis_url)
        wait_until(lambda: board.hlen(f"{cfg.redis_prefix}:lanes") == 1)
        import time

        time.sleep(0.2)  # > lane_refresh_ms: every router has seen the board
        publish(cfg, "orders", [order("during", [("sku-a", 1)], **rj),
                                order("elsewhere", [("sku-a", 1)])])
        out = read_outputs(cfg, lambda o: len(o.decisions) >= 3)
    by_id = {d["order_id"]: d for d in out.decisions}
    assert by_id["during"]["status"] == "routed"
    assert by_id["during"]["shipments"][0]["carrier"] != carrier
    # the outage is regional: São Paulo deliveries may still use the carrier
    assert by_id["elsewhere"]["status"] == "routed"


def test_should_consume_stock_on_pickup_and_dead_letter_bad_inventory_and_carrier_events(cfg):
    publish(cfg, "inventory", [stock(SP_NODE, "sku-a", 10)])
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(SP_NODE, "sku-a")[0] == 10)
        publish(cfg, "orders", [order("o-1", [("sku-a", 3)])])
        decision = read_outputs(cfg, lambda o: len(o.decisions) >= 1).decisions[0]
        shipment = decision["shipments"][0]
        assert ledger.stock(SP_NODE, "sku-a") == (10, 3, 7)
        picked = {"type": "shipment.tracking", "event_id": "t-1", "shipment_id": "o-1/1",
                  "order_id": "o-1", "carrier": shipment["carrier"],
                  "service": shipment["service"], "node_id": SP_NODE, "status": "picked_up",
                  "occurred_at": decision["timings"]["decided_at"]}
        publish(cfg, "carrier-status", [picked])
        # then the reserved units leave the shelf: on-hand and reserved both drop by 3
        wait_until(lambda: ledger.stock(SP_NODE, "sku-a") == (7, 0, 7))
        publish(cfg, "inventory", [{**stock(SP_NODE, "sku-a", 5, version=2), "on_hand": -1}])
        publish(cfg, "carrier-status", [{"type": "lane.status", "carrier": "correios"}])
        out = read_outputs(cfg, lambda o: len(o.dead) >= 2)
    by_topic = {d["source"]["topic"]: d for d in out.dead}
    inv = by_topic[cfg.topic("inventory")]
    assert (inv["step"], inv["error"]["code"], inv["error"]["field"]) == (
        "apply-inventory", "schema", "on_hand")
    carrier = by_topic[cfg.topic("carrier-status")]
    assert carrier["step"] == "parse-carrier" and carrier["error"]["rule"] == "required"
    assert ledger.stock(SP_NODE, "sku-a") == (7, 0, 7)  # the bad snapshot changed nothing
