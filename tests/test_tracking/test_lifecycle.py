"""operators/lifecycle.py: each tracked message becomes the right compact entry, deterministically,
and bad input is an outcome, never an exception. No infrastructure needed."""

from __future__ import annotations

import orjson
import pytest

from fulfil.config import Config
from operators.lifecycle import Entry, Source, Step, order_view, parse, timeline_order
from tests.test_tracking.helpers import T0, dead, decision, order_event, tracking

CFG = Config()
SRC = Source("fulfil.x", 0, 1, T0 - 1)


def _one(topic: str, value: bytes | dict) -> Entry:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    parsed = parse(topic, raw, SRC)
    assert parsed.outcome == "recorded"
    (entry,) = parsed.entries
    return entry


def test_should_record_a_created_order_as_received_and_validated():
    e = _one("orders", order_event("order.created", "o-1", T0, "e-1"))
    assert (e.order_id, e.at_ms, e.step, e.status, e.ref) == (
        "o-1", T0, Step.RECEIVED, "validated", "e:e-1")
    assert "SP" in e.note


@pytest.mark.parametrize(("kind", "extra", "step", "note"), [
    ("order.cancelled", {"reason": "customer"}, Step.CANCEL_REQUEST, "customer"),
    ("order.approved", {"by": "ana"}, Step.APPROVED, "by ana"),
    ("order.rejected", {"by": "ana", "reason": "fraud"}, Step.APPROVAL_REJECTED, "by ana: fraud"),
    ("order.reroute_requested", {"reason": "node-closure"}, Step.REROUTE_REQUEST, "node-closure"),
    ("order.merge_requested", {"with": ["o-2", "o-3"]}, Step.MERGE_REQUEST, "with o-2, o-3"),
    ("order.split_requested", {}, Step.SPLIT_REQUEST, ""),
])
def test_should_name_each_kind_of_request_on_an_order(kind, extra, step, note):
    e = _one("orders", order_event(kind, "o-1", T0, "e-9", **extra))
    assert (e.step, e.status, e.note, e.ref) == (step, None, note, "e:e-9")


@pytest.mark.parametrize(("version", "step"), [(1, Step.ROUTED), (2, Step.REROUTED)])
def test_should_tell_routed_from_rerouted_by_decision_version(version, step):
    parsed = parse("decisions", orjson.dumps(decision("o-1", version, "routed", T0)), SRC)
    (e,) = parsed.entries
    assert (e.step, e.version, e.status, e.nodes, e.carriers) == (
        step, version, "routed", ("N01",), ("correios/pac",))
    assert parsed.decision is not None
    assert parsed.decision.fields["decision_id"] == f"o-1:v{version}"
    assert parsed.decision.fields["shipments"][0]["lines"] == [
        {"line_id": "1", "sku": "sku-a", "qty": 1}]


def test_should_name_the_reason_of_an_unroutable_order_and_skip_its_dead_letter():
    e = _one("decisions", decision("o-2", 1, "unroutable", T0, reasons=["no-stock"]))
    assert (e.step, e.status, e.reasons) == (Step.UNROUTABLE, "unroutable", ("no-stock",))
    dl = dead(CFG, "orders", orjson.dumps(order_event("order.created", "o-2", T0, "e-2")),
              code="unroutable", at=T0, offset=3, key="o-2", step="route-orders")
    assert parse("dead-letters", dl, SRC).outcome == "skipped"  # its decision says it all


def test_should_record_a_rejected_creation_with_field_and_rule():
    bad = order_event("order.created", "o-3", T0, "e-3")
    bad["lines"][0]["qty"] = 0
    dl = dead(CFG, "orders", orjson.dumps(bad), code="schema", at=T0 + 5, offset=9, key="o-3",
              field="lines[0].qty", rule="minimum", message="lines[0].qty must be >= 1; got 0")
    e = _one("dead-letters", dl)
    assert (e.order_id, e.step, e.status, e.at_ms) == ("o-3", Step.REJECTED, "rejected", T0 + 5)
    assert e.reasons == ("schema", "lines[0].qty", "minimum")
    assert e.ref == "dl:fulfil.orders/0/9" and "must be >= 1" in e.note


def test_should_find_the_order_of_an_undecodable_order_event_by_its_key():
    dl = dead(CFG, "orders", b"{not json", code="decode", at=T0, offset=4, key="o-4")
    e = _one("dead-letters", dl)
    assert (e.order_id, e.step, e.status) == ("o-4", Step.REJECTED, None)


def test_should_not_take_a_carrier_events_key_for_an_order_id():
    dl = dead(CFG, "carrier-status", b"{not json", code="decode", at=T0, offset=4,
              key="o-5/N01", step="parse-carrier")
    assert parse("dead-letters", dl, SRC).outcome == "skipped"


def test_should_give_the_same_member_for_a_dead_letter_replayed_at_another_time():
    first = dead(CFG, "orders", b"{x", code="decode", at=T0, offset=4, key="o-4")
    again = dead(CFG, "orders", b"{x", code="decode", at=T0 + 60_000, offset=4, key="o-4")
    assert _one("dead-letters", first).member() == _one("dead-letters", again).member()


@pytest.mark.parametrize(("status", "step", "order_status"), [
    ("picked_up", Step.SHIPPED, "shipped"), ("in_transit", Step.IN_TRANSIT, None),
    ("delivered", Step.DELIVERED, "delivered"), ("exception", Step.SHIPMENT_EXCEPTION, None)])
def test_should_follow_shipments(status, step, order_status):
    e = _one("carrier-status", tracking("o-5", status, T0, "t-1"))
    assert (e.step, e.status, e.nodes, e.carriers) == (step, order_status, ("N01",),
                                                       ("correios/pac",))


def test_should_put_an_alert_on_every_order_it_names():
    alert = {"alert_id": "a-1", "type": "lane-disruption", "severity": "critical",
             "status": "trigger", "summary": "correios SP->RJ outage", "last_seen": T0,
             "affected_order_ids": ["o-1", "o-2"], "sample_order_ids": ["o-2", "o-3", 7]}
    parsed = parse("alerts", orjson.dumps(alert), SRC)
    assert [e.order_id for e in parsed.entries] == ["o-1", "o-2", "o-3"]
    assert {(e.step, e.reasons, e.at_ms) for e in parsed.entries} == {
        (Step.ALERT, ("lane-disruption", "critical", "trigger"), T0)}


@pytest.mark.parametrize(("topic", "raw", "outcome"), [
    ("decisions", b"{oops", "undecodable"), ("decisions", b"\xff\xfe", "undecodable"),
    ("decisions", b'{"order_id": "o-1"}', "invalid"), ("orders", None, "undecodable"),
    ("orders", b'{"type": "order.created"}', "invalid"), ("alerts", b"[1]", "undecodable"),
    ("alerts", b'{"type": "x"}', "skipped"), (None, b"{}", "skipped"),
    ("carrier-status", orjson.dumps({"type": "lane.status", "event_id": "c", "carrier": "x",
                                     "status": "outage", "occurred_at": T0}), "skipped"),
])  # fmt: skip
def test_should_turn_bad_or_foreign_input_into_an_outcome_not_an_exception(topic, raw, outcome):
    parsed = parse(topic, raw, SRC)
    assert (parsed.outcome, parsed.entries, parsed.decision) == (outcome, (), None)


def test_should_round_trip_entries_through_their_stored_form():
    e = _one("decisions", decision("o-1", 2, "routed", T0))
    assert Entry.from_member("o-1", T0, e.member()) == e
    assert Entry.from_member("o-1", T0, b"not json") is None
    assert Entry.from_member("o-1", T0, b'{"step": "no-such-step", "ref": "x"}') is None


def test_should_order_the_timeline_by_time_then_lifecycle_and_derive_status():
    created = _one("orders", order_event("order.created", "o-1", T0, "e-1"))
    routed = parse("decisions", orjson.dumps(decision("o-1", 1, "routed", T0)), SRC)
    cancel = _one("orders", order_event("order.cancelled", "o-1", T0 + 10, "e-c"))
    cancelled = parse("decisions", orjson.dumps(
        decision("o-1", 2, "cancelled", T0 + 20, event_type="order.cancelled")), SRC)
    entries = [cancelled.entries[0], cancel, routed.entries[0], created]  # arrival order: any
    assert [e.step for e in timeline_order(entries)] == [
        Step.RECEIVED, Step.ROUTED, Step.CANCEL_REQUEST, Step.CANCELLED]
    view = order_view("o-1", entries, [cancelled.decision, routed.decision])
    assert view["status"] == "cancelled"
    assert view["current_decision"]["decision_id"] == "o-1:v2"
    assert [e["step"] for e in view["events"]] == ["received", "routed", "cancel-requested",
                                                    "cancelled"]
    assert order_view("o-9", [], [])["status"] is None


def test_should_never_place_a_decision_before_the_event_that_caused_it():
    """The channel's clock runs 5 s ahead of the engine's: the order 'occurred' after it was
    routed. The timeline still reads received -> routed."""
    ahead = T0 + 5000
    created = _one("orders", order_event("order.created", "o-1", ahead, "e-1"))
    d = decision("o-1", 1, "routed", T0)
    d["timings"]["event_time"] = ahead
    routed = _one("decisions", d)
    assert routed.at_ms == ahead
    assert [e.step for e in timeline_order([routed, created])] == [Step.RECEIVED, Step.ROUTED]
