"""Merged delivery, the keyed-state step: who asks to join whom, and state that stays bounded."""

from __future__ import annotations

from operators.consolidation import MAX_OPEN, ship_to, step

W = 30 * 60_000


def routed(order_id: str, node: str, service: str = "pac", at: int = 0) -> dict:
    return {"order_id": order_id, "status": "routed", "timings": {"decided_at": at},
            "shipments": [{"node_id": node, "carrier": "correios", "service": service}]}


def test_the_key_hides_who_and_where_but_is_stable() -> None:
    a = ship_to("c-1", {"postal_code": "01310", "lat": -23.5613, "lng": -46.6565})
    assert a == ship_to("c-1", {"lat": -23.56131, "lng": -46.65649})  # same spot, ~1 m apart
    assert a != ship_to("c-2", {"lat": -23.5613, "lng": -46.6565})
    assert ship_to(None, {"postal_code": "01310"}) is None and "c-1" not in a


def test_a_second_order_from_another_node_asks_to_join_the_first() -> None:
    state, req = step(None, routed("o-1", "N01", at=0), W)
    assert req is None and [o.order_id for o in state] == ["o-1"]
    state, req = step(state, routed("o-2", "N07", at=60_000), W)
    assert req == {"order_id": "o-2", "join": {"order_id": "o-1", "node_id": "N01",
                                               "carrier": "correios", "service": "pac"}}
    # once moved, its new decision ships with o-1: it joins the open set, no new request
    state, req = step(state, routed("o-2", "N01", at=61_000), W)
    assert req is None and [o.order_id for o in state] == ["o-1", "o-2"]


def test_orders_outside_the_window_do_not_join_and_state_empties() -> None:
    state, _ = step(None, routed("o-1", "N01", at=0), W)
    state, req = step(state, routed("o-2", "N07", at=W + 1), W)
    assert req is None and [o.order_id for o in state] == ["o-2"]
    split = {**routed("o-3", "N01", at=3 * W), "shipments": [{}, {}]}
    state, req = step(state, split, W)
    assert state is None and req is None  # nothing open any more: the key's state is dropped


def test_state_per_key_is_capped() -> None:
    state = None
    for i in range(3 * MAX_OPEN):
        state, _ = step(state, routed(f"o-{i}", "N01", at=i), W)
    assert len(state) == MAX_OPEN and state[-1].order_id == f"o-{3 * MAX_OPEN - 1}"


def test_an_order_that_ships_separately_is_never_proposed_nor_joined() -> None:
    from operators.consolidation import SEPARATE

    state, _ = step(None, routed("o-1", "N01", at=0), W)
    state, _ = step(state, routed("o-2", "N01", at=1), W)
    alone = {**routed("o-1", "N07", at=2), "reasons": ["split-requested", SEPARATE]}
    state, req = step(state, alone, W)  # its split decision takes it out of the open set
    assert req is None and [o.order_id for o in state] == ["o-2"]
    later = {**routed("o-1", "N09", at=3), "reasons": ["rerouted", SEPARATE]}
    state, req = step(state, later, W)  # nor is it proposed to join when it moves later
    assert req is None and [o.order_id for o in state] == ["o-2"]


def test_merge_and_split_decisions_keep_the_plan_and_name_the_group() -> None:
    import orjson

    from operators.consolidation import merge_targets, order_problem, parcel, relabel

    d = {**routed("o-2", "N01", at=5), "decision_id": "o-2:v2", "version": 2,
         "reasons": ["consolidated", "single-node", "on-time"], "consolidation_group": "k:o-1"}
    ev = {"type": "order.split_requested", "event_id": "s-1", "occurred_at": 7}
    out = orjson.loads(relabel(d, 3, ev, 8, 9, ["split-requested"], None))
    assert (out["decision_id"], out["event_id"], out["shipments"]) == ("o-2:v3", "s-1",
                                                                       d["shipments"])
    assert out["reasons"] == ["split-requested", "single-node", "on-time"]
    assert "consolidation_group" not in out and out["timings"]["decided_at"] == 9
    assert parcel(d).join() == {"order_id": "o-1", "node_id": "N01", "carrier": "correios",
                                "service": "pac"}  # the group's first order names it
    assert merge_targets("o-2", ["o-2", "o-1", "o-3", "o-1"]) == [(1, "o-1"), (2, "o-3")]
    assert order_problem("merge", "routed", True) is None
    assert order_problem("split", None, False, order_id="x").code == "unknown-order"
    assert order_problem("split", "held", False).rule == "routed"
    assert order_problem("merge", "routed", False, "with[1]").field == "with[1]"
