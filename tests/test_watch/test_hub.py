"""The order hub (one shard of per-order state), driven by explicit event times.

Stuck orders and delivery-promise risk come out as partials per incident; reservations as stock
deltas; and every order leaves the state again (bounded).
"""

from __future__ import annotations

from operators.network import load_default
from operators.watch.facts import (
    AddressIn,
    DecisionIn,
    LaneRec,
    NetInfo,
    OrderIn,
    Ship,
    StockDelta,
    TrackIn,
    TransitObs,
)
from operators.watch.hub import CLOSED_GRACE_MS, OrderHub
from operators.watch.settings import settings_from
from operators.watch.verdicts import PartialSet

T0 = 1_795_556_252_000
DAY, HOUR = 86_400_000, 3_600_000
NET = NetInfo(load_default())
S = settings_from({"stuck": {"unrouted_after_ms": 1000, "handling_grace_ms": 0,
                             "order_ttl_ms": DAY}, "incidents": {"resolve_hold_ms": 0}})
SP_NODE = next(n.id for n in load_default().nodes if n.region == "SP")


def created(oid: str, ts: int = T0, dest: str = "RJ") -> OrderIn:
    return OrderIn(ts, oid, "web", f"c-{oid}", dest, (("sku-a", 2),), ts + 5 * DAY)


def routed(oid: str, ts: int, *, version: int = 1, node: str = SP_NODE, carrier: str = "correios",
           est: int | None = None) -> DecisionIn:
    ship = Ship(node, NET.node_region(node), carrier, "pac", est or ts + 2 * DAY, (("sku-a", 2),))
    return DecisionIn(ts, oid, version, "routed", (ship,), T0 + 5 * DAY)


def partials(out: list) -> dict[str, int]:
    return {k: p.count for r, k, p in out if r == "partial"}


def test_received_but_not_routed_is_stuck_until_a_decision_arrives():
    hub = OrderHub("h0", S, NET)
    assert hub.on_fact(created("o-1"), T0) == []
    assert hub.next_deadline() == T0 + 1000
    assert hub.on_timer(T0 + 999) == []
    out = hub.on_timer(T0 + 1000)
    assert partials(out) == {"stuck-orders/unrouted": 1}
    part = out[0][2]
    assert part.ids == ("o-1",) and part.evidence_at == T0 + 1000
    out = hub.on_fact(routed("o-1", T0 + 1500), T0 + 1500)
    assert partials(out) == {"stuck-orders/unrouted": 0}
    assert ("stock", SP_NODE, StockDelta(T0 + 1500, "sku-a", 2, 0)) in out
    assert ("velocity", SP_NODE, (T0 + 1500, "sku-a", 2)) in out


def test_held_and_unroutable_orders_are_decided_not_stuck():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(created("o-1"), T0)
    hub.on_fact(DecisionIn(T0 + 10, "o-1", 1, "held", (), T0 + 5 * DAY), T0 + 10)
    assert partials(hub.on_timer(T0 + 2000)) == {}


def test_routed_but_not_picked_up_within_handling_time_is_stuck_at_its_node():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(created("o-1"), T0)
    hub.on_fact(routed("o-1", T0 + 10), T0 + 10)
    handling = NET.handling_ms(SP_NODE)
    assert partials(hub.on_timer(T0 + 10 + handling - 1)) == {}
    out = hub.on_timer(T0 + 10 + handling)
    assert partials(out) == {f"stuck-orders/node/{SP_NODE}": 1}
    out = hub.on_fact(TrackIn(T0 + handling + 50, "o-1", SP_NODE, "correios", "picked_up"),
                      T0 + handling + 50)
    assert partials(out) == {f"stuck-orders/node/{SP_NODE}": 0}
    # pickup consumes the reservation: reserved and on-hand both go down
    assert ("stock", SP_NODE, StockDelta(T0 + handling + 50, "sku-a", -2, -2)) in out


def test_outage_after_routing_puts_open_orders_at_risk_one_partial_per_lane_record():
    hub = OrderHub("h0", S, NET)
    for i in range(3):
        hub.on_fact(created(f"o-{i}"), T0)
        hub.on_fact(routed(f"o-{i}", T0 + 10), T0 + 10)
    hub.on_fact(created("o-sp", dest="SP"), T0)
    hub.on_fact(routed("o-sp", T0 + 10), T0 + 10)  # another destination: not affected
    outage = LaneRec(T0 + 100, "correios|*|*|RJ", "correios", "*", "*", "RJ", "outage", 0.0,
                     "flood", T0 + HOUR)
    out = hub.on_fact(outage, T0 + 100)
    assert partials(out) == {"delivery-risk/correios|*|*|RJ": 3}
    part = out[-1][2]
    assert part.evidence_at == T0 + 100 and part.entity["dest_region"] == "RJ"
    # a cancelled order is no longer at risk
    out = hub.on_fact(DecisionIn(T0 + 200, "o-0", 2, "cancelled", (), None), T0 + 200)
    assert partials(out) == {"delivery-risk/correios|*|*|RJ": 2}
    assert ("stock", SP_NODE, StockDelta(T0 + 200, "sku-a", -2, 0)) in out  # released
    # the announcement expires (valid_until): the risk is gone
    out = hub.on_timer(T0 + HOUR)
    assert partials(out) == {"delivery-risk/correios|*|*|RJ": 0}


def _ba_outage(ts: int) -> LaneRec:
    return LaneRec(ts, "loggi|*|*|BA", "loggi", "*", "*", "BA", "outage", 0.0, "flood",
                   ts + HOUR)


def test_an_address_change_counts_from_the_plan_that_answers_it():
    """The old plan ships to the old address: judged against the new region's lanes, it would
    open a delivery-risk incident for a shipment that never exists (seen in the detection
    evaluation: an order moved to BA while loggi's BA lanes were out, 3 s before its re-route)."""
    hub = OrderHub("h0", S, NET)
    hub.on_fact(_ba_outage(T0), T0)
    hub.on_fact(created("o-1", dest="RJ"), T0)
    hub.on_fact(routed("o-1", T0 + 10, carrier="loggi"), T0 + 10)  # loggi to RJ: not affected
    # when: the customer moves the order to BA; its re-route is still in the routing worker
    out = hub.on_fact(AddressIn(T0 + 20, "o-1", "BA", "e-addr"), T0 + 20)
    assert partials(out) == {}
    # then: the plan for the change is judged against BA (here on the out lane: at risk) ...
    moved = routed("o-1", T0 + 30, version=2, carrier="loggi")._replace(event_id="e-addr")
    out = hub.on_fact(moved, T0 + 30)
    assert partials(out) == {"delivery-risk/loggi|*|*|BA": 1}
    assert out[-1][2].evidence_at == T0 + 30
    # ... and a later plan that avoids the lane clears it
    away = routed("o-1", T0 + 40, version=3, carrier="jadlog")._replace(event_id="e-rr")
    assert partials(hub.on_fact(away, T0 + 40)) == {"delivery-risk/loggi|*|*|BA": 0}


def test_a_refused_address_change_leaves_the_plan_on_its_address():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(created("o-1", dest="RJ"), T0)
    hub.on_fact(routed("o-1", T0 + 10, carrier="loggi"), T0 + 10)
    hub.on_fact(AddressIn(T0 + 20, "o-1", "BA", "e-addr"), T0 + 20)  # dead-lettered by routing
    assert partials(hub.on_fact(_ba_outage(T0 + 100), T0 + 100)) == {}


def test_an_address_change_read_after_its_plan_applies_at_once():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(_ba_outage(T0), T0)
    hub.on_fact(created("o-1", dest="RJ"), T0)
    hub.on_fact(routed("o-1", T0 + 10, carrier="loggi"), T0 + 10)
    moved = routed("o-1", T0 + 30, version=2, carrier="loggi")._replace(event_id="e-addr")
    assert partials(hub.on_fact(moved, T0 + 30)) == {}  # still judged on RJ: BA not known yet
    out = hub.on_fact(AddressIn(T0 + 20, "o-1", "BA", "e-addr"), T0 + 40)
    assert partials(out) == {"delivery-risk/loggi|*|*|BA": 1}


def test_a_delay_puts_only_orders_whose_slack_it_exceeds_at_risk():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(created("tight"), T0)
    hub.on_fact(routed("tight", T0, est=T0 + 5 * DAY - 2 * HOUR), T0)  # 2 h of slack
    hub.on_fact(created("loose"), T0)
    hub.on_fact(routed("loose", T0, est=T0 + 2 * DAY), T0)  # 3 days of slack
    delay = LaneRec(T0 + 100, "correios|*|*|RJ", "correios", "*", "*", "RJ", "delayed", 10.0,
                    "strike", None)
    out = hub.on_fact(delay, T0 + 100)
    assert partials(out) == {"delivery-risk/correios|*|*|RJ": 1}
    assert out[-1][2].ids == ("tight",)
    normal = delay._replace(ts=T0 + 200, status="normal", delay_hours=0.0)
    assert partials(hub.on_fact(normal, T0 + 200)) == {"delivery-risk/correios|*|*|RJ": 0}


def test_an_order_routed_while_a_delay_is_in_force_is_judged_against_that_delay():
    hub = OrderHub("h0", S, NET)
    delay = LaneRec(T0, "correios|*|*|RJ", "correios", "*", "*", "RJ", "delayed", 10.0, "", None)
    hub.on_fact(delay, T0)
    hub.on_fact(created("o-1"), T0)
    out = hub.on_fact(routed("o-1", T0 + 10, est=T0 + 5 * DAY - HOUR), T0 + 10)
    assert partials(out) == {}  # its estimate already includes the delay


def test_deliveries_feed_transit_observations_and_close_the_order():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(created("o-1"), T0)
    hub.on_fact(routed("o-1", T0), T0)
    hub.on_fact(TrackIn(T0 + HOUR, "o-1", SP_NODE, "correios", "picked_up"), T0 + HOUR)
    expected = NET.transit_ms("SP", "RJ", "correios", "pac")
    assert expected
    out = hub.on_fact(TrackIn(T0 + HOUR + 3 * expected, "o-1", None, "correios", "delivered"),
                      T0 + HOUR + 3 * expected)
    lane = "correios|SP|RJ"
    assert ("transit", lane, TransitObs(T0 + HOUR + 3 * expected, True, False)) in out
    out = hub.on_fact(TrackIn(T0 + 10, "o-1", SP_NODE, "correios", "failed_attempt"), T0)
    assert out == [("transit", lane, TransitObs(T0 + 10, False, True))]
    hub.on_timer(T0 + HOUR + 3 * expected + CLOSED_GRACE_MS)
    assert hub.size() == 0 and hub.empty


def test_every_order_leaves_the_state_after_its_ttl_so_state_is_bounded():
    hub = OrderHub("h0", S, NET)
    for i in range(100):
        hub.on_fact(created(f"o-{i}"), T0)
        if i % 2:
            hub.on_fact(routed(f"o-{i}", T0 + 5), T0 + 5)
    hub.on_timer(T0 + 10 * HOUR)
    assert hub.size() == 100
    out = hub.on_timer(T0 + 5 * DAY + DAY)  # promise + order_ttl_ms
    assert hub.size() == 0 and hub.empty and hub.next_deadline() is None
    assert hub.by_lane == {} and hub.at_risk == {} and hub.risk == {} and hub.stuck == {}
    assert all(p.count == 0 for r, _, p in out if r == "partial")  # stuck sets emptied too


def test_replayed_decisions_and_orders_change_nothing():
    hub = OrderHub("h0", S, NET)
    hub.on_fact(created("o-1"), T0)
    first = hub.on_fact(routed("o-1", T0 + 5), T0 + 5)
    assert hub.on_fact(routed("o-1", T0 + 5), T0 + 6) == []
    assert hub.on_fact(created("o-1"), T0 + 7) == []
    assert any(r == "stock" for r, _, _ in first)


def test_partials_from_shards_merge_into_one_verdict():
    a, b = OrderHub("h0", S, NET), OrderHub("h1", S, NET)
    outage = LaneRec(T0, "correios|*|*|RJ", "correios", "*", "*", "RJ", "outage", 0.0, "", None)
    for hub, ids in ((a, ["o-1", "o-2"]), (b, ["o-3"])):
        for oid in ids:
            hub.on_fact(created(oid), T0)
            hub.on_fact(routed(oid, T0), T0)
    merged = PartialSet()
    verdicts = [merged.update(p) for hub in (a, b)
                for r, _, p in hub.on_fact(outage, T0 + 1) if r == "partial"]
    assert verdicts[-1].affected_count == 3 and verdicts[-1].active
    assert verdicts[-1].sample_ids == ("o-1", "o-2", "o-3")
    assert verdicts[-1].summary.startswith("3 open orders at risk")


def test_a_decision_read_before_its_order_is_judged_once_the_order_arrives():
    hub = OrderHub("h0", S, NET)
    outage = LaneRec(T0, "correios|*|*|RJ", "correios", "*", "*", "RJ", "outage", 0.0, "", None)
    hub.on_fact(outage, T0)
    assert partials(hub.on_fact(routed("o-1", T0 + 5), T0 + 5)) == {}  # destination unknown
    assert partials(hub.on_fact(created("o-1"), T0 + 6)) == {"delivery-risk/correios|*|*|RJ": 1}


def test_an_incident_of_shards_opens_once_with_every_shards_orders():
    import time as _time

    from operators.watch.detectors import IncidentDetector

    t0 = _time.time_ns() // 1_000_000  # live evidence (old evidence is a replay: not sent)
    shards = [OrderHub(f"h{i}", S, NET) for i in range(3)]
    outage = LaneRec(t0, "correios|*|*|RJ", "correios", "*", "*", "RJ", "outage", 0.0, "", None)
    for i, hub in enumerate(shards):
        for j in range(i + 1):
            hub.on_fact(created(f"o-{i}-{j}", t0), t0)
            hub.on_fact(routed(f"o-{i}-{j}", t0), t0)
    incidents = IncidentDetector("delivery-risk/correios|*|*|RJ", S)
    out = []
    for hub in shards:  # each shard's partial in its own batch, as across workers
        parts = [p for r, _, p in hub.on_fact(outage, t0 + 1) if r == "partial"]
        out += incidents.on_batch(parts, t0 + 1)
    assert out == [] and incidents.deadline() == t0 + 1
    out = incidents.on_timer(t0 + 1)
    assert [(a["revision"], a["affected_order_count"]) for a in out] == [(1, 6)]


def test_a_replay_rebuilds_incidents_without_paging_the_past_again():
    import time as _time

    from operators.watch.detectors import IncidentDetector
    from operators.watch.verdicts import Verdict

    wall = _time.time_ns() // 1_000_000
    old, key = wall - 3 * DAY, "lane-disruption/correios|*|*|RJ"
    incidents = IncidentDetector(key, S)
    v = Verdict(key, "lane-disruption", True, old, "critical", {"kind": "lane", "id": "x"}, "o")
    assert incidents.on_batch([v], old) == [("replayed", "lane-disruption")]  # not sent
    assert incidents.incident is not None and incidents.incident.first_seen == old
    live = Verdict(key, "lane-disruption", False, wall, "critical", {"kind": "lane", "id": "x"})
    out = incidents.on_batch([live], wall)  # the incident ends now: that is news
    assert [(a["status"], a["alert_id"]) for a in out] == [("resolve", f"{key}:{old}:r2")]


def test_tracking_read_before_its_decision_is_applied_once_the_decision_arrives():
    hub = OrderHub("h0", S, NET)
    expected = NET.transit_ms("SP", "RJ", "correios", "pac")
    picked = TrackIn(T0 + HOUR, "o-1", SP_NODE, "correios", "picked_up")
    done = TrackIn(T0 + HOUR + 3 * expected, "o-1", SP_NODE, "correios", "delivered")
    assert hub.on_fact(done, T0) == [] and hub.on_fact(picked, T0) == []  # nothing known yet
    hub.on_fact(created("o-1"), T0)
    out = hub.on_fact(routed("o-1", T0), T0)
    assert ("transit", "correios|SP|RJ", TransitObs(done.ts, True, False)) in out
    assert ("stock", SP_NODE, StockDelta(picked.ts, "sku-a", -2, -2)) in out


def test_a_forecast_puts_orders_at_risk_from_its_start_unless_routing_priced_it_in():
    hub = OrderHub("h0", S, NET)
    forecast = LaneRec(T0, "correios|*|*|RJ", "correios", "*", "*", "RJ", "delayed", 30.0, "",
                       None, T0 + HOUR)
    hub.on_fact(created("before"), T0 - 10)
    hub.on_fact(routed("before", T0 - 10, est=T0 + 5 * DAY - 2 * HOUR), T0 - 10)
    assert partials(hub.on_fact(forecast, T0)) == {}  # not started yet
    hub.on_fact(created("after"), T0 + 5)  # routed knowing the forecast: priced in
    hub.on_fact(routed("after", T0 + 5, est=T0 + 5 * DAY - 2 * HOUR), T0 + 5)
    out = hub.on_timer(T0 + HOUR)
    assert partials(out) == {"delivery-risk/correios|*|*|RJ": 1}
    assert next(p for r, _, p in out if r == "partial").ids == ("before",)
