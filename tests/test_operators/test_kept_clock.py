"""A re-route that keeps a node keeps that node's handling clock (operators/kept_clock.py).

On the tiny network of tests/test_eval (UTC+0 nodes, 15:00 cut-off, 2 h handling, next-day
opening 09:00; post/std 3 days, post/exp 1 day, every lane's p90 = its mean): an order released
to N1 at 14:00 is picked up at 16:00. Re-planned at 16:00 (after the cut-off), a fresh release
would wait until 11:00 the next day; a carrier swap at N1 must still leave at 16:00."""

from __future__ import annotations

import numpy as np

from fulfil.config import Config
from operators.candidates import LaneArrays
from operators.closures import node_clock
from operators.decisions import routed_decision
from operators.kept_clock import kept_ready
from operators.orders import OrderRecord, order_from_created
from operators.planner import Plan, Planner
from schemas.enums import DecisionStatus
from tests.test_eval.conftest import DAY, HOUR, NOW, order, tiny_network

DECIDED = NOW + 4 * HOUR  # 14:00
REPLAN = NOW + 6 * HOUR  # 16:00, after the cut-off


def _plan(planner: Planner, oid: str, now: int) -> Plan:
    net = planner.network
    data = order_from_created(order(oid, [("A", 1, 1000)], at=DECIDED, promise_days=4))
    prep = planner.prepare([data])
    atp = np.zeros((len(net.nodes), len(prep.skus)), dtype=np.int64)
    atp[net.node_index["N1"], 0] = 5  # only N1 holds the sku
    load = np.zeros(len(net.nodes), dtype=np.int64)
    (plan,) = planner.plan(prep, atp, load, LaneArrays.healthy(len(net.regions),
                                                               len(net.services)), now)
    assert isinstance(plan, Plan)
    return plan


def test_kept_ready_is_the_nodes_pickup_on_the_decisions_time() -> None:
    net = tiny_network()
    planner = Planner(net, Config())
    data = order_from_created(order("o", [("A", 1, 1000)], at=DECIDED, promise_days=4))
    plan = _plan(planner, "o", DECIDED)
    decision = routed_decision(data, 1, order("o", [("A", 1, 1000)], at=DECIDED), plan, net, [],
                               DECIDED, DECIDED)
    rec = OrderRecord("o/c", 1, DecisionStatus.ROUTED, decision, data, {"N1": [["A", 1]]})
    assert kept_ready([rec], node_clock(net)) == {"o": {net.node_index["N1"]: DECIDED + 2 * HOUR}}


def test_a_replan_that_keeps_the_node_keeps_its_pickup_instead_of_restarting_it() -> None:
    net = tiny_network()
    n1 = net.node_index["N1"]
    planner = Planner(net, Config())
    fresh = _plan(planner, "o", REPLAN)
    # without the kept clock: released at 16:00, after the cut-off -> picked up 11:00 tomorrow
    assert fresh.shipments[0].node == n1
    tomorrow = NOW + 25 * HOUR
    assert fresh.est_ms == tomorrow + 3 * DAY  # post/std, 3 days
    planner.kept = {"o": {n1: DECIDED + 2 * HOUR}}
    kept = _plan(planner, "o", REPLAN)
    assert kept.shipments[0].node == n1 and kept.shipments[0].service == fresh.shipments[0].service
    assert kept.est_ms == REPLAN + 3 * DAY  # leaves at 16:00 today, as first planned
    assert kept.shipments[0].est_ms == kept.est_ms
    assert kept.risk <= fresh.risk
    # another order in the same batch is not touched
    other = _plan(planner, "x", REPLAN)
    assert other.est_ms == fresh.est_ms
    # an overdue pick-up (the parcel is still there): it leaves now, not in the past
    planner.kept = {"o": {n1: NOW}}
    assert _plan(planner, "o", REPLAN).est_ms == REPLAN + 3 * DAY
