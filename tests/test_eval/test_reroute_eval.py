"""With and without predictive re-routing, on a hand-built network where every figure can be
worked out: one carrier `post` (std 3 days, exp 1 day, p90 = mean: the truth is exactly the
mean), nodes at UTC+0 with a 15:00 cut-off and 2 h handling, so an order planned at 10:00 is
picked up at 12:00.

The story: an order routed at 10:00 on post/std (4-day promise, 3 days of transit: on time),
then at 10:30 the carrier announces that post/std into AA stops from 13:00 for a day. The
parcel would be on the road then and arrive a day late. With re-routing it moves to post/exp
before its pick-up, which stays at 12:00 (same node: its handling clock is kept); without, it
stays and is late. An order picked up at 07:00 stays either way: it is in the carrier's
hands."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from fulfil.config import Config
from operators.eval.forecasts import (
    ClosureTruth,
    Forecast,
    NodeClosure,
    closure_windows,
    forecast_from_dict,
    truth_disruptions,
    truth_for,
    with_forecasts,
)
from operators.eval.reroute_compare import (
    compare,
    comparison_json,
    forecast_groups,
    format_comparison,
)
from operators.eval.reroute_replay import run
from operators.eval.truth import Truth
from operators.network import Network
from operators.reroute import credit_holds, move_verdict
from schemas.validation import decode_and_validate

from .conftest import DAY, HOUR, NOW, inventory, order, tiny_network

T0 = NOW - 10 * HOUR  # the period starts at 00:00 UTC (the nodes' local midnight)
STORM = Forecast("storm", "weather", ("post",), "outage", announce_h=10.5, start_h=13,
                 end_h=37, dest_regions=("AA",), service="std")


def _events(forecasts: tuple[Forecast, ...] = (STORM,)) -> list:
    base = [inventory("N1", "A", 5, at=T0),
            order("early", [("A", 1, 1000)], at=NOW - 5 * HOUR, promise_days=4),  # 05:00
            order("open", [("A", 1, 1000)], at=NOW, promise_days=4)]  # 10:00
    base.sort(key=lambda e: e["occurred_at"])
    return with_forecasts(base, forecasts, T0)


def _where(net: Network, st: object) -> tuple[str, str]:
    sh = st.plan.shipments[0]  # type: ignore[attr-defined]
    return net.nodes[sh.node].id, net.services[sh.service].id


def test_a_forecast_outage_on_an_open_orders_lane_moves_it_only_with_rerouting() -> None:
    net = tiny_network()
    without = run(_events(), net, Config(), reroute=False)
    with_ = run(_events(), net, Config(), reroute=True)
    # both routed it the same way at arrival: the cheap service is on time
    assert _where(net, without.result.orders["open"]) == ("N1", "post/std")
    assert without.result.orders["open"].version == 1
    assert without.exposed == with_.exposed == {"open"}  # the early one has left by 10:30
    assert without.counts["requested"] == 0 and not without.moves
    moved, kept = with_.result.orders["open"], without.result.orders["open"]
    assert _where(net, moved) == ("N1", "post/exp")
    # a carrier swap at the same node: released there when first planned, picked up at 12:00
    # as planned (not 12:30, a fresh 2 h of handling after the 10:30 move)
    assert (moved.version, moved.planned_ms) == (2, kept.planned_ms)
    assert moved.plan is not None and moved.plan.est_ms == kept.planned_ms + 2 * HOUR + DAY
    assert with_.counts["requested"] == 1 and with_.counts["moved"] == 1
    assert [m.order_id for m in with_.moves] == ["open"]
    # the stock moved with it: one unit held under the new plan, none twice
    assert with_.ledger is not None and with_.ledger.holds("open") == {"N1": [("A", 1)]}
    assert with_.ledger.reserved("N1", "A") == 1 and with_.ledger.on_hand("N1", "A") == 4


def test_an_order_already_picked_up_is_never_rerouted() -> None:
    net = tiny_network()
    r = run(_events(), net, Config(), reroute=True)
    early = r.result.orders["early"]
    assert early.version == 1 and _where(net, early) == ("N1", "post/std")
    assert "early" not in r.exposed and all(m.order_id != "early" for m in r.moves)


def test_the_comparison_judges_lateness_on_the_truth_and_is_the_same_every_time() -> None:
    net = tiny_network()
    truth = Truth(net, truth_disruptions([STORM], T0), seed=1)
    clear = Truth(net, [], seed=1)
    c = compare(_events(), net, Config(), truth, clear=clear,
                groups={"post|std|*|AA": "storm"})
    # without: "open" is on the road when the outage starts and stops for 24 h (3 d + 2 h
    # + 24 h > 4 d); "early" too (picked up at 07:00). With: "open" flies, on time.
    assert (c.without.late, c.with_.late) == (2, 1)
    assert (c.exposed_without.late, c.exposed_with.late) == (1, 0)
    assert c.caused == {"without": 2, "exposed_without": 1, "with": 1, "exposed_with": 0}
    assert c.with_.cost > c.without.cost
    assert (c.moves["moved"], c.moves["saved"], c.moves["harmed"]) == (1, 1, 0)
    assert c.by_forecast["storm"] == {"requested": 1, "kept": 0, "kept_late": 0, **c.moves}
    again = compare(_events(), net, Config(), truth, clear=clear,
                    groups={"post|std|*|AA": "storm"})
    assert format_comparison(again) == format_comparison(c)
    assert comparison_json(again, {"seed": 1}) == comparison_json(c, {"seed": 1})
    assert "late deliveries" in format_comparison(c)


def test_a_forecast_on_another_service_asks_nothing() -> None:
    net = tiny_network()
    other = Forecast("exp-only", "weather", ("post",), "outage", announce_h=10.5, start_h=13,
                     end_h=37, dest_regions=("AA",), service="exp")
    r = run(_events((other,)), net, Config(), reroute=True)
    assert not r.exposed and r.counts["requested"] == 0
    assert r.result.orders["open"].version == 1


def test_forecast_announcements_are_valid_carrier_events_with_their_window() -> None:
    f = Forecast("cut", "capacity-cut", ("jadlog", "loggi"), "delayed", announce_h=10,
                 start_h=18, end_h=42, delay_hours=24, capacity_factor=0.5,
                 dest_regions=("RJ", "MG"), origin_region="SP")
    events = f.lane_events(T0)
    assert len(events) == 4 and len({e["event_id"] for e in events}) == 4
    for ev in events:
        ok = decode_and_validate("carrier_event", orjson.dumps(ev))
        assert ok["valid_from"] - ok["occurred_at"] == 8 * HOUR
        assert (ok["origin_region"], ok["delay_hours"]) == ("SP", 24)
    (x, *_) = f.actual(T0)
    assert (x.carrier, x.origin, x.dest, x.delay_hours, x.outage) == (
        "jadlog", "SP", "RJ", 24.0, False)
    assert Forecast.from_dict(f.to_dict()) == f
    with pytest.raises(ValueError, match="48 h"):
        Forecast("far", "weather", ("post",), "delayed", announce_h=0, start_h=49, end_h=50)


def test_the_move_rule_is_the_routers() -> None:
    """`move_verdict` decides what `dataflows/router_moves.PlanMoves._same_route` decides."""
    from dataflows.router_moves import PlanMoves

    net = tiny_network()
    r = run(_events(), net, Config(), reroute=True)
    (move,) = r.moves
    router = SimpleNamespace(node_ids=[n.id for n in net.nodes], network=net)
    rec = SimpleNamespace(decision=orjson.dumps({"shipments": [
        {"node_id": "N1", "carrier": "post", "service": "std"}]}))
    assert move_verdict(move.before.plan, rec.decision, net) == "unchanged"
    assert PlanMoves._same_route(router, move.before.plan, rec)  # type: ignore[arg-type]
    assert move_verdict(move.after.plan, rec.decision, net) == "moved"
    assert not PlanMoves._same_route(router, move.after.plan, rec)  # type: ignore[arg-type]


def test_credit_holds_counts_an_orders_own_units_as_available_to_it() -> None:
    import numpy as np

    atp = np.zeros((2, 2), dtype=np.int64)
    credit_holds(atp, ["A", "B"], {"N2": [("B", 2)], "N9": [("A", 1)]}, {"N1": 0, "N2": 1})
    assert atp.tolist() == [[0, 0], [0, 2]]


def test_without_rerouting_it_decides_what_the_evaluators_replay_decides() -> None:
    """Pick-ups consume on-hand and reserved together: no decision changes (the real Olist
    network, a simulated minute of orders, one forecast)."""
    from fulfil.eval_source import scenario_events
    from fulfil.sim.scenario import Scenario
    from operators.eval.policies import make_policy
    from operators.eval.replay import replay
    from operators.network import load_default

    net = load_default()
    sc = Scenario.steady(8.0, 60.0, seed=5, sku_count=200, stock_horizon_s=60.0)
    cut = Forecast("cut", "capacity-cut", ("jadlog",), "delayed", announce_h=0.005,
                   start_h=6, end_h=30, delay_hours=24, origin_region="SP")
    events = with_forecasts(scenario_events(sc, net).events, [cut], sc.sim_start_ms)
    ours = run(events, net, Config(), reroute=False).result.orders
    theirs = replay(events, make_policy("fulfil", net, Config())).orders
    assert len(ours) > 400 and ours.keys() == theirs.keys()
    assert all((a.plan, a.reason, a.version) == (b.plan, b.reason, b.version)
               for a, b in zip(ours.values(), theirs.values(), strict=True))
    moved = run(events, net, Config(), reroute=True)
    assert moved.counts["requested"] > 0  # the forecast did endanger open orders


def test_the_selection_leaves_parcels_that_leave_before_a_delay() -> None:
    """The engine's selection (the routing flow's `requests_for_lane`): a delay from 13:00 does
    not touch a parcel picked up at 12:00, an outage from 13:00 does (it is on the road then);
    the former selection (`at_pickup=False`) asked for both, and moved the first for nothing."""
    net = tiny_network()
    delay = Forecast("slow", "weather", ("post",), "delayed", announce_h=10.5, start_h=13,
                     end_h=37, delay_hours=24, dest_regions=("AA",), service="std")
    skip = run(_events((delay,)), net, Config(), reroute=True)
    assert not skip.exposed and skip.counts["requested"] == 0
    assert skip.result.orders["open"].version == 1
    every = Config(reroute_miss_threshold=0.0)  # no threshold: every order asked for moves
    former = run(_events((delay,)), net, every, reroute=True, at_pickup=False)
    assert former.exposed == {"open"} and former.result.orders["open"].version == 2
    # the threshold alone keeps it: its plan, judged at its own pick-up, meets no delay
    judged = run(_events((delay,)), net, Config(), reroute=True, at_pickup=False)
    assert judged.counts["kept-by-threshold"] == 1 and judged.kept == {"open": "post|std|*|AA"}
    assert judged.result.orders["open"].version == 1 and not judged.moves
    out = run(_events(), net, Config(), reroute=True)
    assert out.exposed == {"open"} and out.result.orders["open"].version == 2


def test_a_delay_that_starts_before_the_pickup_asks_to_replan() -> None:
    """The same delay announced for 11:00, before the 12:00 pick-up: the parcel would be
    handed over inside it, so the order is asked for and moves."""
    net = tiny_network()
    early = Forecast("slow", "weather", ("post",), "delayed", announce_h=10.5, start_h=11,
                     end_h=37, delay_hours=24, dest_regions=("AA",), service="std")
    r = run(_events((early,)), net, Config(), reroute=True)
    assert r.exposed == {"open"} and r.counts["requested"] == 1
    assert _where(net, r.result.orders["open"]) == ("N1", "post/exp")


def test_the_named_forecast_sets_are_valid_announcements() -> None:
    """Every shipped set validates as carrier events; the strike is jadlog's, every lane, an
    outage with the legal 48 h notice (announced Monday 20:00, Wednesday 20:00 to Friday
    20:00), within the forecast horizon."""
    from operators.eval.forecasts import FORECAST_SETS, STRIKE_FORECASTS, forecast_set
    from operators.lanes import FORECAST_HORIZON_MS, LaneHealth, in_force, lane_key
    from operators.network import load_default

    assert set(FORECAST_SETS) == {"ordinary", "strike", "closure", "ordinary+closure"}
    for forecasts in FORECAST_SETS.values():
        for f in forecasts:
            for ev in f.events(T0):
                decode_and_validate("carrier_event", orjson.dumps(ev))
    (strike,) = forecast_set("strike")
    assert strike is STRIKE_FORECASTS[0]
    events = strike.lane_events(T0)
    net = load_default()
    # every destination state of the network, one lane key each (never the carrier-wide key
    # its heartbeats use, which would overwrite the forecast in lane state)
    assert sorted(e["dest_region"] for e in events) == sorted(net.regions)
    assert {lane_key(e) for e in events}.isdisjoint({"jadlog|*|*|*"})
    for ev in events:
        assert (ev["carrier"], ev["status"], ev["capacity_factor"]) == ("jadlog", "outage", 0.0)
        assert "origin_region" not in ev and "service" not in ev
        assert (ev["occurred_at"] - T0, ev["valid_from"] - T0, ev["valid_until"] - T0) == (
            20 * HOUR, 68 * HOUR, 116 * HOUR)
        assert ev["valid_from"] - ev["occurred_at"] == FORECAST_HORIZON_MS
        health = LaneHealth(lane_key(ev), "outage", 0.0, 0.0, "strike", ev["occurred_at"],
                            ev["valid_until"], ev["valid_from"])
        assert in_force(health, ev["occurred_at"])  # routing avoids jadlog from then on
    assert all(x.carrier == "jadlog" and x.outage for x in strike.actual(T0))
    with pytest.raises(ValueError, match="closure, ordinary, ordinary\\+closure, strike"):
        forecast_set("hurricane")


def test_meets_compares_the_pickup_with_the_window() -> None:
    from operators.lanes import LaneHealth
    from operators.reroute import meets

    def rec(status: str) -> LaneHealth:
        return LaneHealth("post|*|*|AA", status, 24.0, 1.0, "", updated_at=0,
                          valid_until=20 * HOUR, valid_from=10 * HOUR)

    delayed, outage = rec("delayed"), rec("outage")
    assert [meets(delayed, h * HOUR, 3.0) for h in (9, 10, 19, 20)] == [
        False, True, True, False]  # handed over while it lasts
    assert not meets(outage, 5 * HOUR, 0.1) and meets(outage, 5 * HOUR, 1.0)  # on the road
    assert not meets(outage, 20 * HOUR, 3.0)  # it is over by then
    now = LaneHealth("post|*|*|AA", "delayed", 24.0, 1.0, "", 5 * HOUR, None)
    assert meets(now, 5 * HOUR, 3.0)  # in force now: every parcel handed over from now on


# -- node closures --------------------------------------------------------------------------
#
# N1 closes from 11:00 to 11:00 the next day, announced at 10:30. "open" (routed at 10:00 to
# N1, the nearest node, pick-up 12:00) is held there: with re-routing it moves to N2 before
# its pick-up; without, its carrier finds N1 closed and it leaves at N1's first slot after
# reopening (next day 11:00 + 2 h handling = 13:00), then 3 days of post/std: 3 h after its
# 4-day promise. "early" left N1 at 07:00, before the closure. "later" (11:30) avoids N1 in
# both runs; "only-N1" (a sku only N1 holds) has no node left: unroutable, `node-closed`.

FLOOD = NodeClosure("flood", "N1", "flood", announce_h=10.5, start_h=11, end_h=35)


def _closure_events(until_h: float | None = None) -> list:
    base = [inventory("N1", "A", 5, at=T0), inventory("N2", "A", 5, at=T0),
            inventory("N1", "B", 5, at=T0),
            order("early", [("A", 1, 1000)], at=NOW - 5 * HOUR, promise_days=4),
            order("open", [("A", 1, 1000)], at=NOW, promise_days=4),
            order("later", [("A", 1, 1000)], at=NOW + 90 * 60_000, promise_days=4),
            order("only-N1", [("B", 1, 1000)], at=NOW + 90 * 60_000, promise_days=4)]
    if until_h is not None:  # something happening later, so the clock (and pick-ups) runs on
        base.append(inventory("N3", "A", 1, at=T0 + round(until_h * HOUR)))
    base.sort(key=lambda e: e["occurred_at"])
    return with_forecasts(base, [FLOOD], T0)


def test_a_node_closure_moves_the_open_order_held_there_only_with_rerouting() -> None:
    net = tiny_network()
    without = run(_closure_events(), net, Config(), reroute=False)
    with_ = run(_closure_events(), net, Config(), reroute=True)
    assert without.exposed == with_.exposed == {"open"}  # "early" had left at 07:00
    kept, moved = without.result.orders["open"], with_.result.orders["open"]
    assert _where(net, kept)[0] == "N1" and kept.version == 1
    assert _where(net, moved)[0] == "N2" and moved.version == 2
    assert with_.counts["requested"] == with_.counts["moved"] == 1
    assert with_.requested_by == {"node-closure:N1": 1}
    assert [(m.order_id, m.lane) for m in with_.moves] == [("open", "node-closure:N1")]
    assert with_.ledger is not None and with_.ledger.holds("open") == {"N2": [("A", 1)]}
    assert with_.ledger.reserved("N1", "A") == 0
    for r in (without, with_):  # the early parcel was gone; new orders avoid the closed node
        assert _where(net, r.result.orders["early"])[0] == "N1"
        assert r.result.orders["early"].version == 1
        assert _where(net, r.result.orders["later"])[0] == "N2"
        only = r.result.orders["only-N1"]
        assert only.plan is None and only.reason == "node-closed"


def test_a_parcel_at_a_closed_node_waits_for_its_first_slot_after_reopening() -> None:
    """Without re-routing the carrier takes nothing from N1 while it is closed: "open" is still
    held there at 12:00 the next day (reopened 11:00, slot 13:00) and gone by 14:00."""
    net = tiny_network()
    at_noon = run(_closure_events(until_h=36), net, Config(), reroute=False)
    assert at_noon.ledger is not None and at_noon.ledger.holds("open") == {"N1": [("A", 1)]}
    assert at_noon.ledger.holds("early") == {}  # picked up at 07:00, before the closure
    later = run(_closure_events(until_h=38), net, Config(), reroute=False)
    assert later.ledger is not None and later.ledger.holds("open") == {}


def test_the_closure_comparison_judges_the_wait_on_the_truth() -> None:
    net = tiny_network()
    truth = truth_for(net, [FLOOD], T0, seed=1)
    assert isinstance(truth, ClosureTruth)
    n1 = net.node_index["N1"]
    assert truth.handover_ms(n1, NOW) == T0 + 37 * HOUR  # next day 13:00, not 12:00
    assert truth.handover_ms(n1, NOW - 5 * HOUR) == T0 + 7 * HOUR  # before it: untouched
    c = compare(_closure_events(), net, Config(), truth, clear=Truth(net, [], seed=1),
                groups=forecast_groups([FLOOD], T0))
    # "open" waits at N1 and arrives 3 h after its promise; moved to N2 it is on time
    assert (c.without.late, c.with_.late) == (1, 0)
    assert (c.exposed_without.late, c.exposed_with.late) == (1, 0)
    assert c.caused == {"without": 1, "exposed_without": 1, "with": 0, "exposed_with": 0}
    assert c.held == {"without": 1, "exposed_without": 1, "with": 0, "exposed_with": 0}
    assert (c.moves["moved"], c.moves["saved"], c.moves["harmed"]) == (1, 1, 0)
    assert c.by_forecast == {"flood": {"requested": 1, "kept": 0, "kept_late": 0, **c.moves}}
    assert c.with_.cost > c.without.cost  # N2 is farther
    assert "held at a closed node" in format_comparison(c)


def test_the_closure_set_is_a_valid_announcement_on_the_busiest_node() -> None:
    """The shipped closure: N01 (Sao Paulo DC, the largest capacity) closed Tuesday 00:00 to
    Thursday 00:00, announced Monday 20:00; a valid `node.closure` within the horizon, and
    round-trips through the JSON form the benchmark reads."""
    from operators.eval.forecasts import CLOSURE_FORECASTS, forecast_set
    from operators.lanes import FORECAST_HORIZON_MS
    from operators.network import load_default

    (flood,) = forecast_set("closure")
    assert flood is CLOSURE_FORECASTS[0]
    net = load_default()
    k = net.node_index[flood.node_id]
    assert net.node_capacity[k] == net.node_capacity.max() and net.nodes[k].region == "SP"
    (ev,) = flood.events(T0)
    ok = decode_and_validate("carrier_event", orjson.dumps(ev))
    assert (ok["type"], ok["node_id"], ok["status"]) == ("node.closure", "N01", "closed")
    assert (ok["occurred_at"] - T0, ok["valid_from"] - T0, ok["valid_until"] - T0) == (
        20 * HOUR, 24 * HOUR, 72 * HOUR)
    assert 0 < ok["valid_from"] - ok["occurred_at"] <= FORECAST_HORIZON_MS
    assert forecast_from_dict(orjson.loads(orjson.dumps(flood.to_dict()))) == flood
    assert forecast_from_dict(STORM.to_dict()) == STORM
    assert truth_disruptions([flood], T0) == [] and closure_windows([flood], T0) == [
        ("N01", T0 + 24 * HOUR, T0 + 72 * HOUR)]
    assert flood in forecast_set("ordinary+closure")
    with pytest.raises(ValueError, match="48 h"):
        NodeClosure("far", "N01", "flood", announce_h=0, start_h=49, end_h=60)
