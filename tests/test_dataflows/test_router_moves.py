"""Re-routing an order moves its reservation: the new plan is held before the old one is let go,
a node both plans use needs no extra stock, and a crash in between is completed by the replay."""

from __future__ import annotations

import time
from itertools import count

import orjson
import pytest
import redis

from dataflows.connectors import RawMessage
from dataflows.router import Router
from dataflows.routing import pickup_reservations
from fulfil.config import Config
from operators.network import load_default
from state.ledger import InventoryUpdate
from state.redis_client import connect
from tests.test_dataflows.helpers import order

NET = load_default()
SP = [n.id for n in NET.nodes if n.region == "SP"]
RS = [n.id for n in NET.nodes if n.region == "RS"]
_offsets = count()


def raw(event: dict) -> RawMessage:
    now = int(time.time() * 1000)
    return RawMessage("fulfil.orders", 0, next(_offsets), event["order_id"].encode(),
                      orjson.dumps(event), now, now)


def move(order_id: str, lat: float, lng: float, postal: str, event_id: str = "e-move") -> dict:
    return {"type": "order.address_changed", "event_id": event_id, "order_id": order_id,
            "occurred_at": int(time.time() * 1000),
            "destination": {"lat": lat, "lng": lng, "postal_code": postal}}


@pytest.fixture
def router(redis_url: str) -> Router:
    return Router(Config(redis_url=redis_url), NET, connect(redis_url))


def stock(router: Router, nodes: list[str], qty: int) -> None:
    router.ledger.apply_inventory([InventoryUpdate(n, "sku-a", 1, "snapshot", qty)
                                   for n in nodes])


def held(router: Router, nodes: list[str]) -> dict[str, int]:
    return {n: router.ledger.stock(n, "sku-a")[1] for n in nodes
            if router.ledger.stock(n, "sku-a")[1]}


def decisions(out) -> list[dict]:
    return [orjson.loads(m.value) for _, m in out if m.topic.endswith("decisions")]


def test_a_move_within_the_same_node_needs_no_second_set_of_units(router: Router) -> None:
    stock(router, SP, 2)  # every SP node holds exactly the order's two units
    first = decisions(router.route([raw(order("o-1", [("sku-a", 2)]))]))[0]
    node = first["shipments"][0]["node_id"]
    # a new address a few streets away: the best node is the same, whose stock the order holds
    second = decisions(router.route([raw(move("o-1", -23.551, -46.634, "01310"))]))[0]
    assert (second["status"], second["shipments"][0]["node_id"]) == ("routed", node)
    assert held(router, SP) == {node: 2}  # moved in place, not held twice, not dropped


def test_a_move_to_another_region_holds_the_new_plan_then_lets_the_old_go(router) -> None:
    stock(router, SP + RS, 5)
    first = decisions(router.route([raw(order("o-1", [("sku-a", 2)]))]))[0]
    second = decisions(router.route([raw(move("o-1", -30.03, -51.23, "90010"))]))[0]
    new_node = second["shipments"][0]["node_id"]
    assert first["shipments"][0]["node_id"] in SP and new_node in RS
    assert held(router, SP + RS) == {new_node: 2}


def test_a_crash_between_holding_the_new_plan_and_releasing_the_old_is_completed_by_the_replay(
    router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    stock(router, SP + RS, 5)
    router.route([raw(order("o-1", [("sku-a", 2)]))])
    real = router._release_previous
    calls = {"n": 0}

    def crash_once(items, day):
        calls["n"] += 1
        if calls["n"] == 1:
            raise redis.exceptions.ConnectionError("Redis went away")  # the worker dies here
        return real(items, day)

    monkeypatch.setattr(router, "_release_previous", crash_once)
    event = move("o-1", -30.03, -51.23, "90010")
    with pytest.raises(redis.exceptions.ConnectionError):
        router.route([raw(event)])
    assert len(held(router, SP + RS)) == 2  # both plans held for now: the record knows both
    again = decisions(router.route([raw(event)]))  # bytewax replays the event after restart
    assert [(d["decision_id"], d["status"]) for d in again] == [("o-1:v2", "routed")]
    assert held(router, SP + RS) == {again[0]["shipments"][0]["node_id"]: 2}


def test_cancel_after_a_move_releases_everything_and_pickup_finds_the_new_reservation(
    router: Router,
) -> None:
    stock(router, SP + RS, 5)
    router.route([raw(order("o-1", [("sku-a", 1)])), raw(order("o-2", [("sku-a", 1)]))])
    moved = decisions(router.route([raw(move("o-1", -30.03, -51.23, "90010"))]))[0]
    node = moved["shipments"][0]["node_id"]
    records = router.book.get_many(["o-1", "o-2", "gone"])
    plan = pickup_reservations({node: ["o-1", "gone"]}, records)
    assert plan == {node: ["o-1#2", "gone"]}  # the versioned id of the move; unknown: as is
    assert router.ledger.ship(plan)[(node, "o-1#2")] == "shipped"
    cancel = {"type": "order.cancelled", "event_id": "e-c", "order_id": "o-2",
              "occurred_at": int(time.time() * 1000)}
    router.route([raw(cancel)])
    assert held(router, SP + RS) == {}


def test_a_reroute_with_no_better_plan_keeps_the_order_as_it_is(router: Router) -> None:
    from operators.lanes import LaneHealth

    stock(router, SP, 5)
    first = decisions(router.route([raw(order("o-1", [("sku-a", 1)], lat=-22.9, lng=-43.2,
                                              postal="20040"))]))[0]
    record_before = router.book.get_many(["o-1"])["o-1"]
    now = int(time.time() * 1000)
    router.lanes.publish([LaneHealth(f"{c}|*|*|RJ", "outage", 0.0, 0.0, "storm", now, None)
                          for c in {s.carrier for s in NET.services}])  # every carrier is out
    router.lanes._loaded_at = -1e18  # read the board now, not at the next refresh
    request = {"type": "order.reroute_requested", "event_id": "r-1", "order_id": "o-1",
               "occurred_at": now, "reason": "lane-outage"}
    assert decisions(router.route([raw(request)])) == []  # no new version
    assert router.book.get_many(["o-1"])["o-1"] == record_before
    assert held(router, SP) == {first["shipments"][0]["node_id"]: 1}
    gone = {**request, "event_id": "r-2", "order_id": "never-seen"}
    assert router.route([raw(gone)]) == []  # counted as not open, not a dead letter


# -- the risk threshold on the kept plan (operators/reroute.py: judge_kept) ------------------

RJ = {"lat": -22.9, "lng": -43.2, "postal": "20040"}
DAY_MS = 86_400_000


def _reroute(router: Router, carrier: str, until: int | None, event_id: str = "r-1") -> list:
    """Its carrier's lanes into RJ out from now until ``until``, then a lane re-route request
    (what the lane-health step writes)."""
    from operators.lanes import LaneHealth

    now = int(time.time() * 1000)
    router.lanes.publish([LaneHealth(f"{carrier}|*|*|RJ", "outage", 0.0, 0.0, "storm", now,
                                     until)])
    router.lanes._loaded_at = -1e18  # the planner reads the board now, not at its next refresh
    request = {"type": "order.reroute_requested", "event_id": event_id, "order_id": "o-1",
               "occurred_at": now, "reason": "lane-outage"}
    return decisions(router.route([raw(request)]))


def test_a_reroute_whose_plan_absorbs_the_disruption_keeps_it_without_a_replan(
    router: Router, redis_url: str
) -> None:
    """Eight days to deliver a 3-day lane: a 3 h stop leaves the plan safe (miss probability
    far below the default 0.3), so the order keeps it: no re-plan, no new version, counted
    `kept-by-threshold`. With the threshold at 0 (every order asked for) it moves."""
    from fulfil import metrics

    stock(router, SP, 5)
    first = decisions(router.route([raw(order("o-1", [("sku-a", 1)], promise_days=8,
                                              **RJ))]))[0]
    carrier = first["shipments"][0]["carrier"]
    before = router.book.get_many(["o-1"])["o-1"]
    kept = metrics.REROUTES.labels(outcome="kept-by-threshold")
    n = kept._value.get()
    assert _reroute(router, carrier, int(time.time() * 1000) + 3 * 3_600_000) == []
    assert kept._value.get() == n + 1
    assert router.book.get_many(["o-1"])["o-1"] == before
    assert held(router, SP) == {first["shipments"][0]["node_id"]: 1}
    every = Router(Config(redis_url=redis_url, reroute_miss_threshold=0.0), NET,
                   connect(redis_url))
    (moved,) = _reroute(every, carrier, int(time.time() * 1000) + 3 * 3_600_000, "r-2")
    assert moved["version"] == 2 and moved["shipments"][0]["carrier"] != carrier
    assert moved["reasons"][:3] == ["rerouted", "lane-outage", "kept-plan-at-risk"]


@pytest.mark.parametrize(("days", "why"), [(4.5, "kept-plan-at-risk"),
                                            (None, "kept-plan-impossible")])
def test_a_reroute_whose_plan_would_miss_moves_and_says_why(router: Router, days: float | None,
                                                            why: str) -> None:
    """Five days to deliver: its carrier out from now for 4.5 days leaves half a day for a
    3-day lane (at risk); out with no end announced, the plan cannot deliver (impossible).
    Either way the order moves off the carrier, and its decision says why."""
    stock(router, SP, 5)
    first = decisions(router.route([raw(order("o-1", [("sku-a", 1)], **RJ))]))[0]
    carrier = first["shipments"][0]["carrier"]
    until = None if days is None else int(time.time() * 1000 + days * DAY_MS)
    (moved,) = _reroute(router, carrier, until)
    assert moved["version"] == 2 and moved["shipments"][0]["carrier"] != carrier
    assert moved["reasons"][:3] == ["rerouted", "lane-outage", why]
    assert held(router, SP) == {moved["shipments"][0]["node_id"]: 1}  # moved, held once


@pytest.mark.parametrize(("promise_days", "closed_days", "moves"), [(5, 4, True),
                                                                     (12, 1, False)])
def test_a_closure_moves_an_order_only_when_the_wait_would_make_it_late(
    router: Router, promise_days: float, closed_days: float, moves: bool
) -> None:
    """Its node closed from now: for 4 days, the parcel leaves after them with under a day
    left for a 3-day lane (at risk: it moves to another node); for 1 day with 12 days to
    deliver, the wait is within its slack (it keeps its plan, no new version)."""
    from operators.closures import NodeClosure

    stock(router, SP, 5)
    first = decisions(router.route([raw(order("o-1", [("sku-a", 1)], promise_days=promise_days,
                                              **RJ))]))[0]
    node = first["shipments"][0]["node_id"]
    now = int(time.time() * 1000)
    router._closures.publish([NodeClosure(node, "closed", "flood", now, None,
                                          now + round(closed_days * DAY_MS))])
    request = {"type": "order.reroute_requested", "event_id": "c-1", "order_id": "o-1",
               "occurred_at": now, "reason": "node-closure"}
    out = decisions(router.route([raw(request)]))
    if not moves:
        assert out == [] and held(router, SP) == {node: 1}
        return
    (moved,) = out
    assert moved["reasons"][:3] == ["rerouted", "node-closure", "kept-plan-at-risk"]
    assert moved["shipments"][0]["node_id"] != node
    assert held(router, SP) == {moved["shipments"][0]["node_id"]: 1}
