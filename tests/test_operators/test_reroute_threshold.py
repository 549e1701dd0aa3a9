"""The risk threshold of predictive re-routes (operators/reroute.py: `judge_kept`): an order a
disruption meets is re-planned only when the plan it has, as it would now go, is likely to miss
its promise, or cannot deliver at all.

On the tiny network of tests/test_eval (UTC+0 nodes, 15:00 cut-off, 2 h handling; post/std
3 days, post/exp 1 day, p90 = mean, so the prior's miss probability is ~0 or ~1, clipped to
0.005 / 0.995): an order decided at 10:00 at N1 on post/std is picked up at 12:00 and due
4 days after 10:00, so it has 22 h of slack on its 3-day lane."""

from __future__ import annotations

import math

import orjson
import pytest

from operators.closures import NodeClosure, node_clock
from operators.delivery_align import prior_arrays
from operators.lanes import LaneHealth
from operators.orders import OrderRecord, order_from_created
from operators.reroute import (
    AT_RISK,
    CANNOT_DELIVER,
    KEPT,
    KeptPlan,
    covers,
    judge_kept,
    lane_delay_days,
    open_records,
    reopened_pickup,
)
from schemas.enums import DecisionStatus
from tests.test_eval.conftest import HOUR, NOW, order, tiny_network

PICKUP = NOW + 2 * HOUR  # 12:00


def _record(service: str = "std", node: str = "N1", decided: int = NOW) -> OrderRecord:
    data = order_from_created(order("o", [("A", 1, 1000)], at=NOW, promise_days=4))
    decision = orjson.dumps({"shipments": [{"node_id": node, "carrier": "post",
                                            "service": service}],
                             "timings": {"decided_at": decided}})
    return OrderRecord("o/c", 1, DecisionStatus.ROUTED, decision, data, {node: [["A", 1]]},
                       "o#1")


def _lane(status: str, start_h: float, end_h: float | None, delay_h: float = 0.0,
          key: str = "post|std|*|AA") -> LaneHealth:
    return LaneHealth(key, status, delay_h, 0.0 if status == "outage" else 1.0, "test",
                      updated_at=NOW, valid_until=None if end_h is None else NOW + round(
                          end_h * HOUR), valid_from=NOW + round(start_h * HOUR))


def _judge(lanes: list[LaneHealth] = (), closures: dict[str, NodeClosure] | None = None,
           now: int = NOW + HOUR // 2, p90_factor: float = 1.0, **rec: object) -> KeptPlan:
    net = tiny_network(p90_factor=p90_factor)
    return judge_kept(_record(**rec), list(lanes), closures or {}, net, prior_arrays(net),  # type: ignore[arg-type]
                      node_clock(net), now)


def test_a_plan_with_slack_for_the_disruption_is_kept() -> None:
    """A 6 h outage from 13:00 stops the parcel (on the road then) for 6 h: 22 h of slack
    absorb it, so the plan stays; a 24 h one does not, so the order is re-planned."""
    short = _judge([_lane("outage", 3, 9)])
    assert short.miss < 0.01 and not short.impossible and short.verdict(0.3) == KEPT
    day = _judge([_lane("outage", 3, 27)])
    assert day.miss > 0.99 and not day.impossible and day.verdict(0.3) == AT_RISK
    assert day.verdict(0.999) == KEPT  # a threshold above it keeps even that


def test_threshold_zero_replans_every_order_asked_for() -> None:
    """The former behaviour: a miss probability is never exactly 0."""
    safe = _judge()
    assert 0.0 < safe.miss < 0.01
    assert safe.verdict(0.0) == AT_RISK and safe.verdict(0.3) == KEPT


def test_a_delay_counts_only_when_the_parcel_is_handed_over_inside_it() -> None:
    assert _judge([_lane("delayed", 3, 27, delay_h=24)]).verdict(0.3) == KEPT  # leaves at 12:00
    assert _judge([_lane("delayed", 1, 27, delay_h=24)]).verdict(0.3) == AT_RISK  # from 11:00
    assert _judge([_lane("delayed", 1, 27, delay_h=12)]).verdict(0.3) == KEPT  # within slack


def test_other_lanes_and_services_do_not_weigh_on_the_plan() -> None:
    assert _judge([_lane("outage", 3, 27, key="post|exp|*|AA")]).verdict(0.3) == KEPT
    assert _judge([_lane("outage", 3, 27, key="post|*|*|BB")]).verdict(0.3) == KEPT
    assert _judge([_lane("outage", 3, 27, key="post|*|AA|*")]).verdict(0.3) == AT_RISK
    assert covers("post|*|*|*", "post", "std", "AA", "BB")
    assert not covers("mail|*|*|*", "post", "std", "AA", "BB")


def test_a_stop_past_the_promise_is_impossible_whatever_the_threshold() -> None:
    """An outage in force at the pick-up that ends after the promise, or one with no end: the
    parcel cannot arrive in time; a closure that never reopens: it cannot leave."""
    running = _judge([_lane("outage", -1, 120)])
    assert running.impossible and running.miss == 1.0
    assert running.verdict(1.0) == CANNOT_DELIVER
    assert _judge([_lane("outage", -1, None)]).impossible
    shut = NodeClosure("N1", "closed", "flood", NOW, NOW + HOUR, None)
    assert _judge(closures={"N1": shut}).verdict(0.9) == CANNOT_DELIVER
    assert _judge(service="nope").impossible  # a service the network does not know


def test_a_closure_delays_the_pickup_to_the_first_slot_after_it_reopens() -> None:
    """N1 closed 11:00 - next day 11:00: the 12:00 pick-up becomes 13:00 the next day, 3 h
    short of the 3 days left; closed only until 11:30, the carrier still comes at 12:00."""
    net = tiny_network()
    clock, n1 = node_clock(net), net.node_index["N1"]
    long = NodeClosure("N1", "closed", "flood", NOW, NOW + HOUR, NOW + 25 * HOUR)
    assert reopened_pickup(long, PICKUP, n1, clock) == NOW + 27 * HOUR
    brief = NodeClosure("N1", "closed", "flood", NOW, NOW + HOUR, NOW + 90 * 60_000)
    assert reopened_pickup(brief, PICKUP, n1, clock) == PICKUP
    assert _judge(closures={"N1": long}).verdict(0.3) == AT_RISK
    assert _judge(closures={"N1": brief}).verdict(0.3) == KEPT
    assert _judge(closures={"N2": long}).verdict(0.3) == KEPT  # another node's closure


def test_an_outage_reads_what_the_ground_truth_does() -> None:
    """The parcel is on time when it arrives before the outage starts or absorbs the whole stop:
    the budget shrinks by min(stop, budget - time to the start), never more."""
    b = 4.0
    # starts a day after pick-up, lasts 2 days: at most budget - 1 day = 3 days of extra wait
    assert lane_delay_days([_lane("outage", 26, 74)], "post", "std", "AA", "AA", PICKUP,
                           b) == pytest.approx(2.0)
    assert lane_delay_days([_lane("outage", 26, 200)], "post", "std", "AA", "AA", PICKUP,
                           b) == pytest.approx(3.0)
    assert lane_delay_days([_lane("outage", 26, None)], "post", "std", "AA", "AA", PICKUP,
                           b) == pytest.approx(3.0)
    # starts after the promise: cannot make it late; over before the pick-up: nothing
    assert lane_delay_days([_lane("outage", 2 + 24 * 5, 200)], "post", "std", "AA", "AA",
                           PICKUP, b) == 0.0
    assert lane_delay_days([_lane("outage", -5, 1)], "post", "std", "AA", "AA", PICKUP, b) == 0.0


def test_a_wider_lane_gives_a_graded_probability_that_the_threshold_cuts() -> None:
    """With p90 = 1.5 x mean the prior spreads: a 12 h stop leaves 10 h of slack on a 3-day
    mean, a miss probability between the usual thresholds."""
    p = _judge([_lane("outage", 3, 15)], p90_factor=1.5).miss
    q = _judge([_lane("outage", 3, 27)], p90_factor=1.5).miss
    base = _judge(p90_factor=1.5).miss
    assert 0.05 < base < p < q < 0.95 and not math.isnan(p)
    assert KeptPlan(p, False).verdict(p) == KEPT and KeptPlan(p, False).verdict(p - 1e-9) == AT_RISK


def test_a_lane_scan_parses_only_records_that_name_its_carrier_and_loses_none() -> None:
    """`open_records(..., carrier)`: a byte search before parsing, exact for any carrier name
    (one needing JSON escapes too); the wildcard or no carrier parses every record."""
    def rec(oid: str, carrier: str, sku: str = "A") -> bytes:
        data = order_from_created(order(oid, [(sku, 1, 1000)], at=NOW, promise_days=4))
        decision = orjson.dumps({"shipments": [{"node_id": "N1", "carrier": carrier,
                                                "service": "std"}]})
        return OrderRecord(f"e-{oid}", 1, DecisionStatus.ROUTED, decision, data,
                           {"N1": [[sku, 1]]}, f"{oid}#1").dumps()

    raw = {"a": rec("a", "post"), "b": rec("b", 'air "x"\\'), "c": rec("c", "air"),
           "d": rec("d", "air", sku="post")}  # "post" only inside a sku: parsed, never lost
    by_node = {"N1": ["a#1", "b#1", "c#1", "d#1"]}

    def ids(carrier: str | None) -> list[str]:
        return [r.order.order_id for _, r in open_records(by_node, raw, carrier)]

    assert ids(None) == ids("*") == ["a", "b", "c", "d"]
    assert ids("post") == ["a", "d"]
    assert ids('air "x"\\') == ["b"]
    assert ids("air") == ["c", "d"]  # a quoted name: 'air "x"' does not match "air"
    assert ids("rail") == []
