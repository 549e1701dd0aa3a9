"""Node closures, the pure parts: keyed state, which nodes a plan made now avoids (by the node's
own clock), which open orders a closure endangers, and the re-route request's fixed id."""

from __future__ import annotations

import numpy as np
import orjson

from operators.closures import (
    CLOSED,
    NodeClock,
    NodeClosure,
    announced,
    avoid,
    closed_mask,
    endangered,
    reroute_request,
    update_closure,
)
from operators.orders import OrderData, OrderRecord
from operators.rules import EMPTY

H = 3_600_000
T0 = 1_795_556_400_000 - (1_795_556_400_000 % (24 * H))  # a UTC midnight
# two nodes on UTC, cut-off 15:00, 6 h handling: released at 10:00 -> picked up at 16:00
CLOCK = NodeClock({"A": 0, "B": 1}, [0.0, 0.0], [15.0, 15.0], [6.0, 6.0])


def closure(node: str = "A", at: int = T0, **kw: object) -> NodeClosure:
    _, rec = update_closure(None, {"node_id": node, "occurred_at": at, **kw})
    assert rec is not None
    return rec


def test_latest_event_wins_and_replays_publish_nothing() -> None:
    event = {"node_id": "A", "occurred_at": T0, "valid_until": T0 + H, "reason": "strike"}
    state, out = update_closure(None, event)
    assert out == state and state.status == "closed" and state.valid_from is None
    assert update_closure(state, event) == (state, None)  # a replay
    assert update_closure(state, {**event, "occurred_at": T0 - 1, "status": "open"}) == (
        state, None)  # older than the state
    lifted, out = update_closure(state, {**event, "occurred_at": T0 + 1, "status": "open"})
    assert out == lifted and lifted.status == "open"
    assert NodeClosure.from_dict(orjson.loads(orjson.dumps(lifted.to_dict()))) == lifted


def test_a_node_is_avoided_when_the_closure_overlaps_handling_up_to_pickup() -> None:
    now = T0 + 10 * H  # released now at A: picked up at 16:00
    for c, closed in [
        (closure(), True),  # closed from now on
        (closure(valid_from=now + 5 * H), True),  # closes before the 16:00 pickup
        (closure(valid_from=now + 7 * H), False),  # closes after the parcel left
        (closure(valid_until=now), False),  # over
        (closure(status="open"), False),  # lifted
        (closure(node="Z"), False),  # not a node of this network
    ]:
        mask = closed_mask([c], CLOCK, now)
        assert (mask is not None and bool(mask[0])) == closed, c
    # after the cut-off the parcel waits for the morning: a closure at 20:00 now matters
    late = T0 + 16 * H
    assert closed_mask([closure(valid_from=late + 4 * H)], CLOCK, late).tolist() == [True, False]


def test_avoiding_keeps_the_rules_own_node_limits() -> None:
    closed = np.array([True, False, False])
    assert avoid(EMPTY, closed).node_ok.tolist() == [False, True, True]
    ruled = avoid(EMPTY, np.array([False, False, True]))
    assert avoid(ruled, closed).node_ok.tolist() == [False, True, False]
    assert avoid(EMPTY, closed).restricts and CLOSED == "node-closed"


def record(order_id: str, node: str, decided_at: int, status: str = "routed") -> OrderRecord:
    decision = {"order_id": order_id, "timings": {"decided_at": decided_at},
                "shipments": [{"node_id": node}]}
    order = OrderData(order_id, T0 + 99 * H, {"postal_code": "01310"}, (), "web", "standard",
                      0, decided_at)
    return OrderRecord("e", 1, status, orjson.dumps(decision), order, {node: [["s", 1]]},
                       f"{order_id}#1")


def test_open_orders_whose_pickup_falls_in_the_closure_are_endangered() -> None:
    now = T0 + 10 * H
    c = closure(valid_from=now + 2 * H, valid_until=now + 30 * H)  # 12:00 .. next day
    records = [("A", record("early", "A", T0 + 5 * H)),  # picked up at 11:00, before it
               ("A", record("due", "A", T0 + 9 * H)),  # picked up at 15:00, inside
               ("A", record("overdue", "A", T0 - 20 * H)),  # pickup passed, still here: now
               ("B", record("elsewhere", "B", T0 + 9 * H)),
               ("A", record("held", "A", T0 + 9 * H, status="held"))]
    assert endangered(c, records, CLOCK, now) == ["due"]
    assert endangered(closure(), records, CLOCK, now) == ["early", "due", "overdue"]  # from now
    assert announced(c, now) and not announced(closure(valid_from=now + 49 * H), now)
    req = reroute_request("due", c, now)
    assert (req["reason"], req["event_id"]) == ("node-closure", f"closure:A:{T0}:due")


def test_closures_are_keyed_by_node_on_the_carrier_topic() -> None:
    from schemas.topics import TopicName, key_for
    from schemas.validation import validate

    event = {"type": "node.closure", "event_id": "c-1", "node_id": "N01", "occurred_at": T0}
    assert validate("carrier_event", event)["status"] == "closed"  # the default is filled in
    assert key_for(TopicName.CARRIER_STATUS, event) == "N01"
