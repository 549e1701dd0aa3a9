"""What crosses each edge link, decided without Kafka or Redis (`operators.edge`)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from operators.deadletters import dead_letter
from operators.edge.messages import (
    CENTRE,
    ORIGIN,
    SOURCE,
    EdgeEffect,
    LinkMsg,
    decision_effects,
    handoff_cancel,
    oversell_alert,
    reroute_event,
)
from operators.edge.routes import (
    Site,
    downlink,
    downlink_batch,
    handoff_cancel_for,
    is_handoff_decision,
    needs_replan,
    uplink,
    verdict_outcome,
)
from operators.edge.site import site_network
from operators.network import NetworkError, load_default
from schemas.validation import decode_and_validate

SITE = Site("sul", frozenset({"N20", "N23"}), edge_prefix="e.", centre_prefix="c.")
T = 1_795_556_252_000


def _decision(oid: str, version: int, status: str = "routed", nodes: tuple[str, ...] = ("N20",),
              event_type: str = "order.created", event_id: str | None = None,
              reasons: list[str] | None = None, at: int = T) -> dict[str, Any]:
    shipments = [{"node_id": n, "carrier": "correios", "service": "pac",
                  "lines": [{"line_id": "1", "sku": "a", "qty": 2},
                            {"line_id": "2", "sku": "a", "qty": 1}]}
                 for n in nodes] if status == "routed" else []
    return {"decision_id": f"{oid}:v{version}", "order_id": oid, "version": version,
            "status": status, "event_id": event_id or f"e-{oid}-{version}",
            "event_type": event_type, "shipments": shipments,
            "reasons": reasons or (["no-stock"] if status == "unroutable" else []),
            "timings": {"event_time": at, "received_at": at, "decided_at": at}}


def _msg(topic: str, value: Any, offset: int = 0, headers: tuple = (), key: bytes = b"k"
         ) -> LinkMsg:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return LinkMsg(topic, 0, offset, key, raw, headers, T)


def _order(oid: str) -> dict[str, Any]:
    return {"type": "order.created", "event_id": f"e-{oid}", "order_id": oid, "occurred_at": T,
            "channel": "web", "promised_by": T + 86_400_000,
            "destination": {"postal_code": "88010"},
            "lines": [{"line_id": "1", "sku": "far", "qty": 1}]}


def _dead(payload: bytes, code: str, topic: str = "e.orders") -> dict[str, Any]:
    return orjson.loads(dead_letter(topic=topic, partition=3, offset=9, key=b"o-9",
                                    payload=payload, step="route-orders", code=code,
                                    message="m", at_ms=T))


# -- the site network --------------------------------------------------------------------------


def test_site_network_keeps_only_the_sites_nodes_and_everything_else():
    central = load_default()
    net = site_network(central, ["N23", "N20", "N20"], "sul")
    assert [n.id for n in net.nodes] == ["N20", "N23"]  # central order, once each
    assert net.version == f"{central.version}+site.sul"
    assert net.regions == central.regions and len(net.services) == len(central.services)
    assert net.locate({"postal_code": "01310"}) == central.locate({"postal_code": "01310"})


@pytest.mark.parametrize("nodes,site,match", [
    ([], "sul", "no nodes"), (["N99"], "sul", "N99"), (["N20"], "Sul!", "site id"),
])
def test_site_network_refuses_what_cannot_be_a_site(nodes, site, match):
    with pytest.raises(NetworkError, match=match):
        site_network(load_default(), nodes, site)


# -- uplink ------------------------------------------------------------------------------------


def test_every_edge_record_is_copied_once_with_its_origin_and_source_id():
    out = uplink(_msg("orders", _order("o-1"), offset=41), SITE, T)
    [copy] = out.sends
    assert copy.topic == "edge.sul.orders" and copy.value == orjson.dumps(_order("o-1"))
    assert dict(copy.headers) == {ORIGIN: b"edge:sul", SOURCE: b"edge:sul|orders#0@41"}
    assert not out.effects and not out.dead


def test_an_edge_decision_is_promoted_with_its_reservation_effects():
    out = uplink(_msg("decisions", _decision("o-1", 1, nodes=("N20",))), SITE, T)
    assert [s.topic for s in out.sends] == ["edge.sul.decisions", "decisions"]
    assert out.effects == [EdgeEffect("N20", "o-1", 1, (("a", 3),), "20261124")]


def test_a_later_version_releases_the_site_nodes_it_no_longer_uses():
    moved = decision_effects(_decision("o-1", 2, nodes=("N23",)), SITE.nodes)
    assert [(e.node_id, e.lines) for e in moved] == [("N23", (("a", 3),)), ("N20", ())]
    cancelled = decision_effects(_decision("o-1", 3, status="cancelled"), SITE.nodes)
    assert sorted((e.node_id, e.lines) for e in cancelled) == [("N20", ()), ("N23", ())]
    # a first decision that holds nothing at the site has no effect at all
    assert decision_effects(_decision("o-2", 1, nodes=("N01",)), SITE.nodes) == []


def test_the_decisions_of_a_handoff_stay_at_the_edge():
    unroutable = _decision("o-1", 1, status="unroutable")
    closed = _decision("o-1", 2, status="cancelled", event_id="handoff:o-1",
                       event_type="order.cancelled")
    later = _decision("o-2", 2, status="unroutable", event_type="order.address_changed")
    assert is_handoff_decision(unroutable) and is_handoff_decision(closed)
    assert not is_handoff_decision(later)  # the edge's own order, unroutable after a change
    for d in (unroutable, closed):
        assert [s.topic for s in uplink(_msg("decisions", d), SITE, T).sends] == \
            ["edge.sul.decisions"]


def test_an_order_the_edge_could_not_place_goes_to_the_centres_orders_verbatim():
    raw = orjson.dumps(_order("o-9"))
    for code in ("unroutable", "unknown-order"):
        out = uplink(_msg("dead-letters", _dead(raw, code)), SITE, T)
        assert [(s.topic, s.key, s.value) for s in out.sends[1:]] == [("orders", b"o-9", raw)]
    # another source, or another code, is an ordinary dead letter for the centre
    other = uplink(_msg("dead-letters", _dead(raw, "schema")), SITE, T)
    assert [s.topic for s in other.sends] == ["edge.sul.dead-letters", "dead-letters"]
    binary = _dead(b"\xff" + raw, "unroutable")
    assert binary["payload_encoding"] == "base64"
    sent = uplink(_msg("dead-letters", binary), SITE, T).sends[1]
    assert sent.value == base64.b64decode(binary["payload"])


def test_the_handoff_closes_only_created_orders_it_could_not_route():
    raw = orjson.dumps(_order("o-9"))
    cancel = handoff_cancel_for(orjson.dumps(_dead(raw, "unroutable")), SITE)
    assert cancel == handoff_cancel("o-9", "sul", T)
    decode_and_validate("order_event", orjson.dumps(cancel))
    assert handoff_cancel_for(orjson.dumps(_dead(raw, "unknown-order")), SITE) is None
    assert handoff_cancel_for(orjson.dumps(_dead(raw, "unroutable", "c.orders")), SITE) is None
    assert handoff_cancel_for(b"not json", SITE) is None


def test_inventory_of_another_node_is_set_aside_not_sent():
    ev = {"type": "inventory.snapshot", "event_id": "i-1", "node_id": "N01", "sku": "a",
          "version": 1, "on_hand": 5, "occurred_at": T}
    out = uplink(_msg("inventory", ev), SITE, T)
    assert [s.topic for s in out.sends] == ["edge.sul.inventory"]
    [dead] = out.dead
    record = orjson.loads(dead.value)
    assert record["error"]["rule"] == "edge-ownership" and record["source"]["topic"] == \
        "e.inventory"
    own = uplink(_msg("inventory", {**ev, "node_id": "N23"}), SITE, T)
    assert [s.topic for s in own.sends] == ["edge.sul.inventory", "inventory"]


def test_records_the_downlink_brought_never_go_back_up():
    ev = {"type": "inventory.snapshot", "event_id": "i-1", "node_id": "N20", "sku": "a",
          "version": 1, "on_hand": 5, "occurred_at": T}
    echoed = _msg("inventory", ev, headers=((ORIGIN, CENTRE.encode()),))
    assert uplink(echoed, SITE, T).sends == []


def test_bad_input_becomes_a_dead_letter_with_its_reason_never_an_exception():
    out = uplink(_msg("decisions", b'{"decision_id": '), SITE, T)
    [dead] = out.dead
    record = orjson.loads(dead.value)
    assert record["error"]["code"] == "decode" and record["step"] == "edge-uplink"
    decode_and_validate("dead_letter", dead.value)
    schema = downlink(_msg("decisions", {"order_id": "o-1"}), SITE, T)
    assert orjson.loads(schema.dead[0].value)["error"]["code"] == "schema"


def test_picked_up_at_a_site_node_ships_the_reservation_at_the_centre():
    ev = {"type": "shipment.tracking", "event_id": "t-1", "shipment_id": "o-1/N20",
          "order_id": "o-1", "carrier": "correios", "node_id": "N20", "status": "picked_up",
          "occurred_at": T}
    out = uplink(_msg("carrier-status", ev), SITE, T)
    assert [s.topic for s in out.sends] == ["edge.sul.carrier-status", "carrier-status"]
    assert out.effects == [EdgeEffect("N20", "o-1", op="ship")]


# -- downlink ----------------------------------------------------------------------------------


def test_central_claims_on_site_nodes_come_down_in_the_order_the_centre_decided_them():
    late = _msg("decisions", _decision("c-2", 1, at=T + 5), offset=0)
    early = _msg("decisions", _decision("c-1", 1, at=T + 1), offset=1)
    elsewhere = _msg("decisions", _decision("c-3", 1, nodes=("N01",)), offset=2)
    out = downlink_batch([late, early, elsewhere], SITE, T)
    assert [e.order_id for e in out.effects] == ["c-1", "c-2"]
    assert out.claims[("N20", "c-1")]["decision_id"] == "c-1:v1"


def test_decisions_born_at_an_edge_are_not_claims():
    promoted = _msg("decisions", _decision("e-1", 1), headers=((ORIGIN, b"edge:sul"),))
    assert downlink(promoted, SITE, T).effects == []


def test_inventory_and_config_come_down_marked_as_the_centres():
    ev = {"type": "inventory.snapshot", "event_id": "i-1", "node_id": "N20", "sku": "a",
          "version": 4, "on_hand": 5, "occurred_at": T}
    [sent] = downlink(_msg("inventory", ev), SITE, T).sends
    assert dict(sent.headers)[ORIGIN] == b"centre" and sent.topic == "inventory"
    assert downlink(_msg("inventory", {**ev, "node_id": "N01"}), SITE, T).sends == []
    [rules] = downlink(_msg("config", {"name": "rules"}), SITE, T).sends
    assert rules.topic == "config"


def test_a_rejected_claim_is_rerouted_in_two_deterministic_steps():
    claim = _decision("c-1", 1)
    first = reroute_event(claim, {"postal_code": "88010"}, "sul", "N20", "a")
    assert first["event_id"] == "edge-rejected:sul:c-1:v1"
    assert first == reroute_event(claim, {"postal_code": "88010"}, "sul", "N20", "a")
    decode_and_validate("order_event", orjson.dumps(first))
    lost = _decision("c-1", 2, status="unroutable", reasons=["lost-races"],
                     event_id=first["event_id"], event_type="order.address_changed")
    assert needs_replan(lost, SITE)
    assert not needs_replan({**lost, "reasons": ["no-stock"]}, SITE)
    assert not needs_replan({**lost, "event_id": "edge-replan:sul:c-1:v2"}, SITE)
    assert downlink(_msg("decisions", lost), SITE, T).replans == [lost]


def test_the_oversell_alert_honours_the_alert_contract():
    alert = oversell_alert("sul", "N20", "a", _decision("c-1", 1), 1, T + 9)
    decode_and_validate("alert", orjson.dumps(alert))
    assert alert["type"] == "edge-oversell"
    assert alert["alert_id"] == f"{alert['dedup_key']}:{T}:r1"  # stable across re-sends


# -- holds across the link -----------------------------------------------------------------


def _request(oid: str) -> dict[str, Any]:
    return {"order_id": oid, "decision_id": f"{oid}:v1", "group": "fraud", "reason": "big",
            "rule": "big", "rules_version": "v1@abc", "held_at": T}


def _verdict(kind: str, oid: str, event_id: str = "v-1") -> dict[str, Any]:
    return {"type": f"order.{kind}", "event_id": event_id, "order_id": oid, "occurred_at": T,
            "by": "ana"}


def test_an_edge_approval_request_joins_the_centres_queue_verbatim():
    out = uplink(_msg("approvals", _request("h-1"), key=b"h-1"), SITE, T)
    [copy, request] = out.sends
    assert copy.topic == "edge.sul.approvals"
    assert (request.topic, request.key, orjson.loads(request.value)) == \
        ("approvals", b"h-1", _request("h-1"))
    assert dict(request.headers)[ORIGIN] == b"edge:sul"
    broken = uplink(_msg("approvals", {"order_id": "h-2"}), SITE, T)
    assert [s.topic for s in broken.sends] == ["edge.sul.approvals"] and len(broken.dead) == 1


def test_only_central_verdicts_come_down_as_candidates():
    approved = downlink(_msg("orders", _verdict("approved", "h-1"), key=b"h-1"), SITE, T)
    [(event, send)] = approved.approvals
    assert event["order_id"] == "h-1" and (send.topic, send.key) == ("orders", b"h-1")
    assert dict(send.headers)[ORIGIN] == CENTRE.encode() and not approved.sends
    assert downlink(_msg("orders", _verdict("rejected", "h-2")), SITE, T).approvals
    # other order events, invalid ones and verdicts born at an edge are the centre's business
    for msg in (_msg("orders", _order("o-1")), _msg("orders", b"{broken"),
                _msg("orders", _verdict("approved", "h-1"), headers=((ORIGIN, b"edge:sul"),))):
        out = downlink(msg, SITE, T)
        assert not (out.approvals or out.sends or out.dead)


@pytest.mark.parametrize(("known", "outcome"), [
    (None, "central"),
    (("v-1", "routed"), "duplicate"),
    (("v-1", "cancelled"), "duplicate"),
    (("e-h-1", "cancelled"), "closed"),
    (("e-h-1", "held"), "forward"),
    (("e-h-1", "routed"), "forward"),  # the edge's router refuses it, visibly (invalid-state)
])
def test_a_verdict_is_forwarded_only_for_an_open_edge_order_not_yet_decided(known, outcome):
    assert verdict_outcome(_verdict("approved", "h-1"), known) == outcome
