"""Business rules in the routing step (real Redis, no Kafka): holds and approvals, restrictions,
priorities, and replays of held orders."""

from __future__ import annotations

import time
from itertools import count

import orjson
import pytest

from dataflows.connectors import RawMessage
from dataflows.router import Router
from fulfil.config import Config
from operators.network import load_default
from operators.rules import compile_rules
from state.ledger import InventoryUpdate, Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import order

NET = load_default()
SP_NODES = [n.id for n in NET.nodes if n.region == "SP"]
RULES = """
version: t
rules:
  - id: big
    precedence: 10
    when: {order.value: {gt: 5000}}
    then: {hold: {group: fraud, reason: big order}}
  - id: vip
    when: {customer.tier: vip}
    then: {service_level: express, priority: 9, tags: [vip]}
  - id: only-first-sp-node
    when: {channel: b2b}
    then: {restrict: {nodes: [FIRST]}}
""".replace("FIRST", SP_NODES[0])
_offsets = count()


def raw(event: dict) -> RawMessage:
    now = int(time.time() * 1000)
    return RawMessage("fulfil.orders", 0, next(_offsets), event["order_id"].encode(),
                      orjson.dumps(event), now, now)


@pytest.fixture
def router(redis_url: str) -> Router:
    client = connect(redis_url)
    ledger = Ledger(client)
    ledger.apply_inventory([InventoryUpdate(n, sku, 1, "snapshot", 5)
                            for n in SP_NODES for sku in ("sku-a", "sku-b")])
    ruleset = compile_rules(RULES, NET)
    return Router(Config(redis_url=redis_url), NET, client, lambda: ruleset)


def route(router: Router, *events: dict) -> tuple[list[dict], list[dict], list[dict]]:
    out = router.route([raw(e) for e in events])
    by_topic: dict[str, list[dict]] = {}
    for _, m in out:
        by_topic.setdefault(m.topic.split(".")[-1], []).append(orjson.loads(m.value))
    return by_topic.get("decisions", []), by_topic.get("approvals", []), by_topic.get(
        "dead-letters", [])


def decide(kind: str, order_id: str, **extra) -> dict:
    return {"type": f"order.{kind}", "event_id": f"{kind}-{order_id}-{time.time_ns()}",
            "order_id": order_id, "occurred_at": int(time.time() * 1000), "by": "ana", **extra}


def reserved(router: Router, sku: str = "sku-a") -> int:
    return sum(router.ledger.stock(n, sku)[1] for n in SP_NODES)


def test_a_held_order_reserves_nothing_until_approved(router: Router) -> None:
    big = order("o-big", [("sku-a", 2)], value={"amount": 9000.0, "currency": "BRL"})
    decisions, approvals, _ = route(router, big)
    assert [d["status"] for d in decisions] == ["held"]
    assert decisions[0]["hold"] == {"group": "fraud", "reason": "big order", "rule": "big"}
    assert decisions[0]["rules"]["version"].startswith("t@")
    assert approvals[0]["decision_id"] == "o-big:v1" and approvals[0]["value"] == 9000.0
    assert reserved(router) == 0

    decisions, approvals, _ = route(router, decide("approved", "o-big"))
    assert [(d["status"], d["version"]) for d in decisions] == [("routed", 2)]
    assert decisions[0]["reasons"][0] == "approved" and approvals == []
    assert reserved(router) == 2


def test_a_rejected_order_is_cancelled_and_a_second_verdict_is_refused(router: Router) -> None:
    big = order("o-big", [("sku-a", 1)], value={"amount": 9000.0})
    route(router, big)
    decisions, _, _ = route(router, decide("rejected", "o-big", reason="stolen card"))
    assert [(d["status"], d["reasons"]) for d in decisions] == [
        ("cancelled", ["rejected", "stolen card"])]
    _, _, dead = route(router, decide("approved", "o-big"))
    assert dead[0]["error"]["code"] == "unknown-order"  # cancelled orders take no events


def test_approving_an_order_that_is_not_held_is_an_invalid_state(router: Router) -> None:
    route(router, order("o-1", [("sku-a", 1)]))
    decisions, _, dead = route(router, decide("approved", "o-1"))
    assert decisions == [] and dead[0]["error"]["code"] == "invalid-state"
    assert "routed, not held" in dead[0]["error"]["message"]
    _, _, dead = route(router, decide("approved", "nobody"))
    assert dead[0]["error"]["code"] == "unknown-order"


def test_replaying_a_held_order_resends_the_same_decision_and_request(router: Router) -> None:
    big = order("o-big", [("sku-a", 1)], value={"amount": 9000.0})
    first = router.route([raw(big)])
    again = router.route([raw(big)])
    assert [m.value for _, m in again] == [m.value for _, m in first]
    assert {m.topic for _, m in again} == {"fulfil.decisions", "fulfil.approvals"}


def test_restrictions_and_forced_service_level_shape_the_route(router: Router) -> None:
    vip = order("o-vip", [("sku-a", 1)], customer={"id": "c", "tier": "vip"})
    b2b = order("o-b2b", [("sku-b", 1)], channel="b2b")
    decisions, _, _ = route(router, vip, b2b)
    by_id = {d["order_id"]: d for d in decisions}
    assert by_id["o-vip"]["shipments"][0]["service"] in ("sedex", "expresso", "express")
    assert by_id["o-vip"]["priority"] == 9 and by_id["o-vip"]["rules"]["tags"] == ["vip"]
    assert by_id["o-b2b"]["shipments"][0]["node_id"] == SP_NODES[0]
    assert by_id["o-b2b"]["rules"]["hit"] == ["only-first-sp-node"]


def test_higher_priority_claims_scarce_stock_first(router: Router) -> None:
    total = sum(router.ledger.stock(n, "sku-b")[2] for n in SP_NODES)  # available everywhere
    normal = [order(f"o-n{i}", [("sku-b", 5)]) for i in range(total // 5)]
    vip = order("o-vip", [("sku-b", 5)], customer={"id": "c", "tier": "vip"})
    decisions, _, _ = route(router, *normal, vip)  # the VIP order arrives last
    status = {d["order_id"]: d["status"] for d in decisions}
    assert status["o-vip"] == "routed"
    assert list(status.values()).count("unroutable") == 1


def test_decisions_carry_a_customer_service_class(router: Router) -> None:
    from operators.decisions import service_class

    assert [service_class(t, r) for t, r in [("vip", True), ("gold", False), ("standard", True),
                                             ("standard", False)]] == ["p1", "p2", "p2", "p3"]
    on_time = order("o-std", [("sku-a", 1)], promise_days=10)
    tight = order("o-tight", [("sku-a", 1)], promise_days=0.01)  # promised in 15 minutes
    vip = order("o-vip", [("sku-a", 1)], customer={"id": "c", "tier": "vip"}, promise_days=0.01)
    decisions, _, _ = route(router, on_time, tight, vip)
    assert {d["order_id"]: d["service_class"] for d in decisions} == {
        "o-std": "p3", "o-tight": "p2", "o-vip": "p1"}
