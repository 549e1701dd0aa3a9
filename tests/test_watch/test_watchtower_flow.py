"""The watchtower flow end to end: real broker, real flow (thread), alerts read back from Kafka.

Each detector is shown to trigger once per incident, to update without a second opening
trigger, and to resolve when its condition clears. Decisions and dead letters are produced the
way the routing flow writes them, so these tests are about detection, not routing. Waits have
generous timeouts and assert what happened, never how fast.
"""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from operators.network import load_default
from tests.test_watch.helpers import (
    AlertReader,
    WatchThread,
    create_topics,
    decision,
    fast_settings,
    lane,
    make_config,
    now_ms,
    order,
    publish,
    snapshot,
    wait_for,
)

NET = load_default()
SP_NODE = next(n.id for n in NET.nodes if n.region == "SP")
NO_STUCK = {"unrouted_after_ms": 3_600_000}


@pytest.fixture
def cfg(bootstrap, topic_prefix):
    c = make_config(bootstrap, topic_prefix)
    create_topics(c)
    return c


@pytest.fixture
def reader(cfg):
    r = AlertReader(cfg)
    yield r
    r.close()


def openings(alerts: list[dict], key: str) -> list[dict]:
    return [a for a in alerts if a["dedup_key"] == key and a["revision"] == 1]


def hub_orders(flow: WatchThread) -> int:
    return flow.state.totals().get("order-hub", (0, 0))[1]


def alerts_total(type_: str, status: str) -> float:
    return REGISTRY.get_sample_value("fulfil_alerts_total",
                                     {"type": type_, "status": status}) or 0.0


@pytest.mark.parametrize("workers", [1, 2])
def test_lane_outage_pages_once_lists_orders_at_risk_updates_and_resolves(cfg, reader, workers):
    # given six open orders to RJ, routed via correios from a São Paulo node
    t = now_ms()
    ids = [f"w{workers}-o{i}" for i in range(6)]
    triggers_before = alerts_total("lane-disruption", "trigger")
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK), workers=workers) as flow:
        publish(cfg, "orders", [order(o, t) for o in ids])
        publish(cfg, "decisions", [decision(o, t + 5, node=SP_NODE) for o in ids])
        wait_for(lambda: hub_orders(flow) >= 6, what="orders and decisions joined")
        # when the carrier announces an outage to RJ
        publish(cfg, "carrier-status", [lane("correios", "outage", now_ms(), dest="RJ",
                                             reason="flood")])
        alerts = reader.wait(lambda a: openings(a, "lane-disruption/correios|*|*|RJ")
                             and openings(a, "delivery-risk/correios|*|*|RJ"))
        # then it pages at once, and one alert lists every order whose promise is at risk
        lane_alert = openings(alerts, "lane-disruption/correios|*|*|RJ")[0]
        assert lane_alert["severity"] == "critical" and lane_alert["status"] == "trigger"
        assert lane_alert["entity"] == {"kind": "lane", "id": "correios|*|*|RJ",
                                        "carrier": "correios", "dest_region": "RJ"}
        risk = openings(alerts, "delivery-risk/correios|*|*|RJ")[0]
        assert risk["affected_order_count"] == 6 and sorted(risk["sample_order_ids"]) == ids
        assert sorted(risk["affected_order_ids"]) == ids
        # when four more orders are caught on the lane: an update, not a new page
        more = [f"w{workers}-p{i}" for i in range(4)]
        publish(cfg, "orders", [order(o, now_ms()) for o in more])
        publish(cfg, "decisions", [decision(o, now_ms(), node=SP_NODE) for o in more])
        alerts = reader.wait(lambda a: any(x["dedup_key"] == risk["dedup_key"]
                                           and x["affected_order_count"] == 10 for x in a))
        update = next(x for x in alerts if x["affected_order_count"] == 10)
        assert update["status"] == "trigger" and update["revision"] > 1
        assert update["first_seen"] == risk["first_seen"]
        # the same announcement again changes nothing
        publish(cfg, "carrier-status", [lane("correios", "outage", now_ms(), dest="RJ",
                                             reason="flood", event_id="again")])
        # when the lane is back to normal: both incidents resolve
        publish(cfg, "carrier-status", [lane("correios", "normal", now_ms() + 1, dest="RJ")])
        alerts = reader.wait(lambda a: {x["dedup_key"] for x in a if x["status"] == "resolve"}
                             >= {lane_alert["dedup_key"], risk["dedup_key"]})
    for key in (lane_alert["dedup_key"], risk["dedup_key"]):
        assert len(openings(alerts, key)) == 1  # one page per incident, whatever happened
        revisions = [a["revision"] for a in alerts if a["dedup_key"] == key]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert [a["revision"] for a in alerts if a["dedup_key"] == lane_alert["dedup_key"]] == [1, 2]
    assert alerts_total("lane-disruption", "trigger") == triggers_before + 1


def test_an_address_change_is_judged_on_the_plan_that_answers_it(cfg, reader):
    """Two orders to RJ via loggi; loggi's BA lanes go out; both customers move to BA. The old
    plans never ship to BA: only the re-route that keeps loggi puts its order at risk."""
    t = now_ms()
    moved, caught = "addr-moved", "addr-caught"
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)) as flow:
        publish(cfg, "orders", [order(o, t) for o in (moved, caught)])
        publish(cfg, "decisions", [decision(o, t + 5, node=SP_NODE, carrier="loggi")
                                   for o in (moved, caught)])
        wait_for(lambda: hub_orders(flow) >= 2, what="orders and decisions joined")
        publish(cfg, "carrier-status", [lane("loggi", "outage", now_ms(), dest="BA")])
        reader.wait(lambda a: openings(a, "lane-disruption/loggi|*|*|BA"))
        bahia = {"postal_code": "40010", "region": "BA", "country": "BR"}
        publish(cfg, "orders", [{"type": "order.address_changed", "event_id": f"addr-{o}",
                                 "order_id": o, "occurred_at": now_ms(), "destination": bahia}
                                for o in (moved, caught)])
        time.sleep(2)  # the watchtower reads the changes before their re-routes (as it does live)
        at = now_ms()
        v2 = [decision(moved, at, version=2, node=SP_NODE, carrier="jadlog"),
              decision(caught, at, version=2, node=SP_NODE, carrier="loggi")]
        for d in v2:
            d["event_id"], d["event_type"] = f"addr-{d['order_id']}", "order.address_changed"
        publish(cfg, "decisions", v2)
        alerts = reader.wait(lambda a: openings(a, "delivery-risk/loggi|*|*|BA"))
    risk = [a for a in alerts if a["dedup_key"] == "delivery-risk/loggi|*|*|BA"]
    assert risk[0]["affected_order_ids"] == [caught]  # never the old plans
    assert all(moved not in a["affected_order_ids"] for a in risk)
    assert risk[0]["evidence_at"] >= at  # the re-route is the evidence, not the address change


def test_stock_out_ahead_triggers_while_demand_continues_and_resolves_on_restock(cfg, reader):
    t = now_ms()
    key = f"stock-out-ahead/{SP_NODE}|sku-x"
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)):
        publish(cfg, "inventory", [snapshot(SP_NODE, "sku-x", 100, 1, t)])
        # demand: 8 orders of 10 units reserved at the node within a second
        publish(cfg, "decisions", [decision(f"s{i}", t + 100 * i, node=SP_NODE,
                                            lines=[("sku-x", 10)]) for i in range(8)])
        alerts = reader.wait(lambda a: openings(a, key))
        first = openings(alerts, key)[0]
        assert first["severity"] == "warning" and first["details"]["available"] == 20
        assert first["entity"] == {"kind": "node-sku", "id": f"{SP_NODE}|sku-x",
                                   "node_id": SP_NODE, "sku": "sku-x"}
        # the warehouse counts zero: still the same incident, now an error
        publish(cfg, "inventory", [snapshot(SP_NODE, "sku-x", 0, 2, now_ms())])
        alerts = reader.wait(lambda a: any(x["dedup_key"] == key and x["severity"] == "error"
                                           for x in a))
        # restocked: resolved
        publish(cfg, "inventory", [snapshot(SP_NODE, "sku-x", 100_000, 3, now_ms())])
        alerts = reader.wait(lambda a: any(x["dedup_key"] == key and x["status"] == "resolve"
                                           for x in a))
    assert len(openings(alerts, key)) == 1
    assert [a["status"] for a in alerts if a["dedup_key"] == key] == \
        ["trigger", "trigger", "resolve"]


def test_demand_surge_on_a_channel_pages_once_and_resolves(cfg, reader):
    # one order stream, its event times spread over the past 14 s: 40/s, a 3x burst, 40/s
    base = now_ms() - 14_000
    base -= base % 1000
    events = []
    for second in range(12):
        n = 120 if second == 6 else 40
        events += [order(f"d{second}-{i}", base + second * 1000 + i * (1000 // n),
                         channel="live", dest={"postal_code": "01310", "region": "SP"})
                   for i in range(n)]
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)):
        publish(cfg, "orders", events)
        alerts = reader.wait(lambda a: any(x["dedup_key"] == "demand-surge/live"
                                           and x["status"] == "resolve" for x in a))
        # and when the channel then goes silent, that is a collapse
        alerts = reader.wait(lambda a: openings(a, "demand-collapse/live"))
    surge = openings(alerts, "demand-surge/live")
    assert len(surge) == 1 and surge[0]["evidence_at"] == base + 7000  # the burst's window end
    assert surge[0]["details"]["count"] == 120 and "*" in surge[0]["details"]["scope"]
    assert surge[0]["entity"] == {"kind": "channel", "id": "live", "channel": "live"}


def test_received_but_not_routed_orders_are_one_incident_until_routed(cfg, reader):
    t = now_ms()
    ids = ["u-1", "u-2", "u-3"]
    with WatchThread(cfg, fast_settings()):
        publish(cfg, "orders", [order(o, t) for o in ids])
        alerts = reader.wait(lambda a: any(x["dedup_key"] == "stuck-orders/unrouted"
                                           and x["affected_order_count"] == 3 for x in a))
        publish(cfg, "decisions", [decision(o, now_ms()) for o in ids])
        alerts = reader.wait(lambda a: any(x["dedup_key"] == "stuck-orders/unrouted"
                                           and x["status"] == "resolve" for x in a))
    assert len(openings(alerts, "stuck-orders/unrouted")) == 1
    assert set(max(alerts, key=lambda a: a["affected_order_count"])["sample_order_ids"]) == \
        set(ids)


def test_abnormal_orders_are_one_alert_per_pattern_not_per_order(cfg, reader):
    t = now_ms()
    dup = [order(f"a{i}", t + i, customer=f"cust-{i}") for i in range(3)]
    again = [{**o, "order_id": f"{o['order_id']}-again", "event_id": f"{o['event_id']}-2",
              "channel": "marketplace", "occurred_at": t + 1000 + i} for i, o in enumerate(dup)]
    bad = [order(f"b{i}", t + i, dest={"postal_code": "01310", "region": "BA"})
           for i in range(3)]
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)):
        publish(cfg, "orders", dup + again + bad)
        alerts = reader.wait(lambda a: openings(a, "abnormal-orders/duplicate")
                             and openings(a, "abnormal-orders/address"))
        alerts = reader.wait(lambda a: {x["dedup_key"] for x in a if x["status"] == "resolve"}
                             >= {"abnormal-orders/duplicate", "abnormal-orders/address"})
    assert len(openings(alerts, "abnormal-orders/duplicate")) == 1
    flagged = {i for a in alerts if a["dedup_key"] == "abnormal-orders/duplicate"
               for i in a.get("affected_order_ids", [])}
    assert flagged <= {o["order_id"] for o in again} and len(flagged) >= 2
    assert {i for a in alerts if a["dedup_key"] == "abnormal-orders/address"
            for i in a.get("affected_order_ids", [])} <= {o["order_id"] for o in bad}


def test_lane_status_delay_long_enough_trips_and_its_end_resolves(cfg, reader):
    t = now_ms()
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)):
        publish(cfg, "carrier-status", [
            lane("jadlog", "delayed", t, dest="MG", delay_hours=2),  # short: no page
            lane("jadlog", "delayed", t + 1, dest="SC", delay_hours=30,
                 valid_until=t + 2000)])  # long, announced for 2 s
        alerts = reader.wait(lambda a: any(x["dedup_key"] == "lane-disruption/jadlog|*|*|SC"
                                           and x["status"] == "resolve" for x in a))
    assert [a["dedup_key"] for a in alerts if a["type"] == "lane-disruption"] == \
        ["lane-disruption/jadlog|*|*|SC"] * 2
    assert alerts[0]["severity"] == "error" and alerts[1]["last_seen"] == t + 2000


def test_bad_input_is_counted_never_fatal_and_can_be_dead_lettered(cfg, reader):
    from tests.test_dataflows.helpers import read_outputs

    settings = fast_settings(stuck=NO_STUCK, dead_letter_bad_input=True)
    bad_before = REGISTRY.get_sample_value("fulfil_watch_events_total",
                                           {"topic": "orders", "outcome": "undecodable"}) or 0
    with WatchThread(cfg, settings):
        publish(cfg, "orders", [b"{not json", b"\xff\xfe", b'{"type": "order.created"}'],
                key="bad")
        publish(cfg, "decisions", [b"[]"], key="bad")  # fulfil's own topic: counted only
        t = now_ms()
        publish(cfg, "carrier-status", [lane("correios", "outage", t, dest="AM")])
        reader.wait(lambda a: openings(a, "lane-disruption/correios|*|*|AM"))  # still running
        out = read_outputs(cfg, lambda o: len(o.dead) >= 3)
    assert sorted(d["error"]["code"] for d in out.dead) == ["decode", "decode", "schema"]
    assert {d["step"] for d in out.dead} == {"watch-orders"}
    assert all(d["source"]["topic"] == cfg.topic("orders") for d in out.dead)
    after = REGISTRY.get_sample_value("fulfil_watch_events_total",
                                      {"topic": "orders", "outcome": "undecodable"})
    assert after == bad_before + 2


def test_dead_letter_rate_of_a_source_topic_trips_and_clears(cfg, reader):
    from tests.test_watch.helpers import dead_letter_for

    t = now_ms()
    junk = [b"{broken %d" % i for i in range(20)]
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)):
        publish(cfg, "orders", [order(f"q{i}", t) for i in range(30)])
        publish(cfg, "orders", junk, key="junk")
        # the routing flow's dead letters for them (written here as it writes them)
        publish(cfg, "dead-letters", [dead_letter_for(cfg, "orders", j, now_ms(), i)
                                      for i, j in enumerate(junk)], key=cfg.topic("orders"))
        alerts = reader.wait(lambda a: openings(a, "data-quality/orders"))
        alerts = reader.wait(lambda a: any(x["dedup_key"] == "data-quality/orders"
                                           and x["status"] == "resolve" for x in a))
    first = openings(alerts, "data-quality/orders")[0]
    assert first["details"]["dead_letters"] >= 5 and first["details"]["rate"] >= 0.1
    assert first["entity"] == {"kind": "topic", "id": "orders", "topic": "orders"}


def test_per_key_state_is_discarded_once_it_expires(cfg):
    """Bounded state: every order, sku, fingerprint and norm leaves the flow's state again."""
    settings = fast_settings(
        stuck={"unrouted_after_ms": 3_600_000, "order_ttl_ms": 1000},
        stock={"idle_ttl_ms": 1500, "sweep_ms": 300},
        abnormal={"duplicate_window_ms": 1000, "norm_ttl_ms": 1000},
        demand={"idle_ttl_ms": 1500})
    t = now_ms()
    ids = [f"b{i}" for i in range(20)]
    steps = ("order-hub", "stock-out", "abnormal-history")
    with WatchThread(cfg, settings) as flow:
        publish(cfg, "inventory", [snapshot(SP_NODE, f"sku-{i}", 50, 1, t) for i in range(10)])
        publish(cfg, "orders", [order(o, t, promise_days=0) for o in ids])
        publish(cfg, "decisions", [decision(o, t + 1, node=SP_NODE, promised=t) for o in ids])
        # state builds up ...
        wait_for(lambda: all(flow.state.totals().get(s, (0, 0))[1] > 0 for s in steps),
                 what="state held by every step")
        held = flow.state.totals()
        assert held["order-hub"][1] >= 20 and held["stock-out"][1] >= 10
        # ... and is discarded once the data expires: no key left in any step
        wait_for(lambda: all(keys == 0 for keys, _ in flow.state.totals().values()),
                 what="every keyed state discarded", describe=flow.state.totals)
    assert sum(entries for _, entries in flow.state.totals().values()) == 0


def test_late_deliveries_on_a_lane_trip_its_transit_window_and_clear(cfg, reader):
    from tests.test_watch.helpers import tracking

    # given 12 shipments SP -> RJ, picked up five days ago and delivered now: far slower than
    # the lane's expected transit (a replayed history, read from the start of the topics)
    t = now_ms()
    start = t - 5 * 86_400_000
    ids = [f"tr{i}" for i in range(12)]
    with WatchThread(cfg, fast_settings(stuck=NO_STUCK)):
        publish(cfg, "orders", [order(o, start) for o in ids])
        publish(cfg, "decisions", [decision(o, start + 1000, node=SP_NODE) for o in ids])
        publish(cfg, "carrier-status",
                [tracking(o, "picked_up", start + 3_600_000, node=SP_NODE) for o in ids]
                + [tracking(o, "delivered", t + i, node=SP_NODE) for i, o in enumerate(ids)])
        key = "lane-disruption/correios|SP|RJ/transit"
        alerts = reader.wait(lambda a: any(x["dedup_key"] == key and x["status"] == "resolve"
                                           for x in a))
    lane_alerts = [a for a in alerts if a["dedup_key"] == key]
    assert [a["status"] for a in lane_alerts] == ["trigger", "resolve"]
    trip = lane_alerts[0]
    assert trip["details"]["late"] == 12 and trip["details"]["late_share"] == 1.0
    assert trip["entity"] == {"kind": "lane", "id": "correios|SP|RJ", "carrier": "correios",
                              "origin_region": "SP", "dest_region": "RJ"}
    # nothing was paged about the replayed past: no order was stuck, none at risk
    assert {a["type"] for a in alerts} == {"lane-disruption"}
