"""The tracking dataflow end to end: real broker, real Redis, the real flow in a thread.

The routing flow is not running here: the test publishes what it (and the carriers, and an
alerting flow) would have written, so every case is explicit — including duplicates as a replay
of the routing flow produces them, and garbage on topics only fulfil writes.
"""

from __future__ import annotations

import orjson
import pytest

from dataflows.connectors import ensure_topics
from dataflows.tracking import store_for
from fulfil.order_query import lookup
from state.redis_client import connect
from tests.test_dataflows.helpers import create_topics, make_config, publish
from tests.test_tracking.helpers import (
    T0,
    TrackingThread,
    dead,
    decision,
    events_seen,
    order_event,
    sample,
    tracking,
    wait_for,
)


@pytest.fixture
def cfg(bootstrap, redis_url, topic_prefix):
    c = make_config(bootstrap, redis_url, topic_prefix)
    create_topics(c)
    return c


def _publish_a_day(cfg) -> int:
    """o-1: created, routed, moved (re-routed), cancelled; o-2 unroutable; o-3 rejected; o-4
    undecodable; o-5 shipped and delivered; plus duplicates, garbage and foreign events."""
    n = publish(cfg, "orders", [
        order_event("order.created", "o-1", T0, "e-1"),
        order_event("order.address_changed", "o-1", T0 + 1000, "e-move"),
        order_event("order.cancelled", "o-1", T0 + 2000, "e-cancel", reason="customer"),
        order_event("order.created", "o-2", T0, "e-2"),
        order_event("order.created", "o-5", T0, "e-5"),
    ])
    v1 = decision("o-1", 1, "routed", T0 + 20)
    n += publish(cfg, "decisions", [
        v1, v1,  # a routing replay re-emits the same bytes at a new offset
        decision("o-1", 2, "routed", T0 + 1020, node="N07", event_id="e-move",
                 event_type="order.address_changed", reasons=["address-changed", "on-time"]),
        decision("o-1", 3, "cancelled", T0 + 2020, event_id="e-cancel",
                 event_type="order.cancelled", reasons=["cancelled", "customer"]),
        decision("o-2", 1, "unroutable", T0 + 30, reasons=["no-stock"]),
        decision("o-5", 1, "routed", T0 + 40),
    ])
    n += publish(cfg, "decisions", [b"{oops"], key="o-x")  # only fulfil writes here: a bug
    bad = order_event("order.created", "o-3", T0, "e-3")
    bad["lines"][0]["qty"] = 0
    rejected = [dead(cfg, "orders", orjson.dumps(bad), code="schema", at=T0 + at, offset=7,
                     key="o-3", field="lines[0].qty", rule="minimum",
                     message="lines[0].qty must be >= 1; got 0") for at in (50, 90_000)]
    n += publish(cfg, "dead-letters", [
        *rejected,  # the second: the same rejection re-emitted by a replay, later
        dead(cfg, "orders", b"{not json", code="decode", at=T0 + 60, offset=8, key="o-4"),
        dead(cfg, "orders", orjson.dumps(order_event("order.created", "o-2", T0, "e-2")),
             code="unroutable", at=T0 + 30, offset=3, key="o-2", step="route-orders"),
    ], key=cfg.topic("orders"))
    n += publish(cfg, "carrier-status", [
        tracking("o-5", "picked_up", T0 + 5000, "t-1"),
        tracking("o-5", "delivered", T0 + 9000, "t-2"),
        {"type": "lane.status", "event_id": "c-1", "carrier": "correios", "status": "outage",
         "occurred_at": T0},
    ])
    return n


def _steps(view) -> list[str]:
    return [e["step"] for e in view["events"]]


def test_should_build_each_orders_timeline_and_add_nothing_on_replay(cfg):
    ensure_topics(cfg.kafka_common(), {cfg.topic("alerts"): 1})  # optional topic: present here
    n = _publish_a_day(cfg)
    n += publish(cfg, "alerts", [orjson.dumps({
        "alert_id": "a-1", "type": "delivery-risk", "severity": "warning", "status": "trigger",
        "summary": "correios SP->RS delayed", "last_seen": T0 + 1500,
        "affected_order_ids": ["o-1"], "sample_order_ids": ["o-1", "o-5"]})], key="a-1")
    store = store_for(cfg, connect(cfg.redis_url))
    bad_before = sample("fulfil_tracking_events_total", topic="decisions", outcome="undecodable")
    seen = events_seen()
    with TrackingThread(cfg):
        wait_for(lambda: events_seen() - seen >= n, what="every message read")
    # then o-1's whole life, in event time, whatever order the topics were read in
    o1 = lookup(store, "o-1")
    assert _steps(o1) == ["received", "routed", "address-change-requested", "re-routed",
                          "alert", "cancel-requested", "cancelled"]
    assert [e["version"] for e in o1["events"]] == [None, 1, None, 2, None, None, 3]
    assert o1["events"][3]["nodes"] == ["N07"] and "address-changed" in o1["events"][3]["reasons"]
    assert o1["status"] == "cancelled"
    assert o1["current_decision"]["decision_id"] == "o-1:v3"
    assert _steps(lookup(store, "o-2")) == ["received", "unroutable"]  # its dead letter: skipped
    o3 = lookup(store, "o-3")  # one rejection, though dead-lettered twice
    assert (_steps(o3), o3["status"]) == (["rejected"], "rejected")
    assert o3["events"][0]["reasons"] == ["schema", "lines[0].qty", "minimum"]
    assert _steps(lookup(store, "o-4")) == ["rejected"]
    o5 = lookup(store, "o-5")
    assert (_steps(o5), o5["status"]) == (["received", "routed", "alert", "shipped",
                                           "delivered"], "delivered")
    # the garbage decision was counted, and did not stop the flow
    assert sample("fulfil_tracking_events_total", topic="decisions",
                  outcome="undecodable") == bad_before + 1
    before = {oid: lookup(store, oid) for oid in ("o-1", "o-2", "o-3", "o-4", "o-5")}
    # when the whole input is read again (a restart without a snapshot)
    added = sample("fulfil_tracking_entries_total")
    seen = events_seen()
    with TrackingThread(cfg):
        wait_for(lambda: events_seen() - seen >= n, what="every message read again")
    # then nothing was added and nothing changed
    assert sample("fulfil_tracking_entries_total") == added
    assert {oid: lookup(store, oid) for oid in before} == before


def test_should_cap_entries_per_order_and_expire_the_trace(bootstrap, redis_url, topic_prefix):
    cfg = make_config(bootstrap, redis_url, topic_prefix, tracking_max_entries=4,
                      tracking_ttl_days=2)
    create_topics(cfg)
    n = publish(cfg, "carrier-status", [tracking("o-9", "in_transit", T0 + i, f"t-{i}")
                                        for i in range(10)])
    n += publish(cfg, "decisions", [decision("o-9", 1, "routed", T0 - 100)])
    store = store_for(cfg, connect(cfg.redis_url))
    seen = events_seen()
    with TrackingThread(cfg):
        wait_for(lambda: events_seen() - seen >= n, what="every message read")
    view = lookup(store, "o-9")
    assert [e["at"] for e in view["events"]] == [T0 + i for i in range(6, 10)]  # newest 4
    assert view["current_decision"]["decision_id"] == "o-9:v1"  # kept apart from the cap
    client = connect(cfg.redis_url)
    for key in (store.timeline_key("o-9"), store.decisions_key("o-9")):
        assert 2 * 86400 - 60 < client.ttl(key) <= 2 * 86400
