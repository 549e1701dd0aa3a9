"""Holds across the link: an order a rule holds at the edge waits in the centre's approval queue,
and the verdict an approver publishes centrally takes effect at the edge, exactly once, even
when it was published while the link was down."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fulfil import cli
from state.edge_sync import LinkProgress, LinkStatus
from tests.test_dataflows.helpers import FlowThread, order, publish, stock
from tests.test_edge.helpers import FLORIPA, SITE, Site, World, read_all, site_stock, wait_for

RULES = """version: hold-big
rules:
  - id: big
    when: {order.value: {gt: 5000}}
    then: {hold: {group: fraud, reason: big order}}
"""


def _big(order_id: str, sku: str = "a") -> dict[str, Any]:
    return order(order_id, [(sku, 1)], lat=FLORIPA["lat"], lng=FLORIPA["lng"],
                 postal=FLORIPA["postal"], value={"amount": 9000.0, "currency": "BRL"})


def _verdict(kind: str, order_id: str, event_id: str) -> dict[str, Any]:
    return {"type": f"order.{kind}", "event_id": event_id, "order_id": order_id,
            "occurred_at": int(time.time() * 1000), "by": "ana"}


def _edge_decisions(site: Site) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in read_all(site.edge, ["decisions"])["decisions"]:
        out.setdefault(r.key, []).append(r.json())
    return out


def _rules_in_force(site: Site) -> None:
    """Probe orders until one is held: the rules published centrally came down the link and
    the edge's router applied them."""
    probes = iter(range(100))

    def held() -> bool:
        oid = f"probe-{next(probes)}"
        publish(site.edge, "orders", [_big(oid, "probe")])
        got = wait_for(lambda: _edge_decisions(site).get(oid), 30, f"{oid} decided")
        return got[0]["status"] == "held"

    wait_for(held, 60, "the edge to hold big orders")


def _cli(*argv: str) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(list(argv))
    assert done.value.code == 0


def test_a_hold_at_the_edge_is_approved_centrally_through_an_outage_exactly_once(
        world: World, site: Site, tmp_path: Path):
    edge, centre = site.edge, site.centre
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with FlowThread(centre), FlowThread(edge):
        site.start_links()
        # given: rules published at the centre (they reach the edge over the downlink) and
        # stock at the site
        _cli("rules", "publish", str(rules), "--by", "ops", "--kafka", centre.kafka_bootstrap,
             "--topic-prefix", centre.topic_prefix)
        publish(edge, "inventory", [stock("N20", "a", 5), stock("N20", "probe", 500)])
        central, local = site.ledger("centre"), site.ledger("edge")
        wait_for(lambda: central.stock("N20", "a")[0] == 5, what="the site's stock centrally")
        _rules_in_force(site)
        # ... three big orders held at the edge, whose requests wait in the centre's queue
        publish(edge, "orders", [_big("h-1"), _big("h-2"), _big("h-3")])
        held = ("h-1", "h-2", "h-3")

        def queued() -> dict[str, Any] | None:
            got = {r.key: r for r in read_all(centre, ["approvals"])["approvals"]}
            return got if set(held) <= set(got) else None

        requests = wait_for(queued, 30, "the approval requests at the centre")
        assert {requests[o].headers["fulfil-origin"] for o in held} == {f"edge:{SITE}"}
        assert {requests[o].json()["group"] for o in held} == {"fraud"}
        assert {d[0]["status"] for o, d in _edge_decisions(site).items() if o in held} == \
            {"held"}

        # when: the link is cut, and an approver decides at the centre meanwhile (one verdict
        # sent twice by a retrying client)
        world.cut()
        _cli("approvals", "approve", "h-1", "--by", "ana", "--kafka", centre.kafka_bootstrap,
             "--topic-prefix", centre.topic_prefix)
        publish(centre, "orders", [_verdict("rejected", "h-2", "rej-h-2"),
                                   _verdict("rejected", "h-2", "rej-h-2")])
        time.sleep(1.0)
        restored_ms = int(time.time() * 1000)
        world.restore()

        # then: the verdicts take effect at the edge once the link is back, once each
        def settled() -> dict[str, list[dict[str, Any]]] | None:
            d = _edge_decisions(site)
            done = len(d.get("h-1", [])) >= 2 and len(d.get("h-2", [])) >= 2
            return d if done and central.reservation("N20", "h-1") else None

        decided = wait_for(settled, 60, "the verdicts to reach the edge")
        wait_for(lambda: site_stock(central, ["a"]) == site_stock(local, ["a"]), 30,
                 "both ledgers to agree")
        time.sleep(1.0)
        before = read_all(edge, ["decisions", "dead-letters"])
        # and: a re-sent downlink (progress lost) forwards no verdict again
        site.stop_links()
        LinkProgress(local._client, edge.redis_prefix, SITE, "downlink").reset()
        status = LinkStatus(local._client, edge.redis_prefix, SITE)
        seen = status.read()["downlink"].get("approvals.duplicate", 0)
        site.start_links("downlink")
        wait_for(lambda: status.read()["downlink"].get("approvals.duplicate", 0) >= seen + 2,
                 30, "the downlink to re-read the verdicts")
        time.sleep(1.0)
        site.stop_links()
        after = read_all(edge, ["decisions", "dead-letters"])

    latest = {o: max(d, key=lambda x: x["version"]) for o, d in decided.items()}
    assert latest["h-1"]["status"] == "routed" and latest["h-1"]["version"] == 2
    assert latest["h-1"]["timings"]["decided_at"] >= restored_ms  # not before the link was back
    assert latest["h-2"]["status"] == "cancelled" and latest["h-2"]["version"] == 2
    assert latest["h-3"]["status"] == "held"  # no verdict, still waiting
    # exactly once in effect: one decision id per version, every copy byte for byte the same
    ids = Counter(r.json()["decision_id"] for r in after["decisions"] if r.key in held)
    assert sorted(ids) == ["h-1:v1", "h-1:v2", "h-2:v1", "h-2:v2", "h-3:v1"]
    by_id: dict[str, set[bytes]] = {}
    for r in after["decisions"]:
        by_id.setdefault(r.json()["decision_id"], set()).add(r.value)
    assert all(len(v) == 1 for v in by_id.values())
    # the re-sent downlink added nothing at the edge
    assert len(after["decisions"]) == len(before["decisions"])
    assert len(after["dead-letters"]) == len(before["dead-letters"])
    # the approved order holds its unit on both sides; the rejected one holds nothing
    assert local.stock("N20", "a")[:2] == central.stock("N20", "a")[:2] == (5, 1)
    # the centre's decisions hold the edge's verdicts (promoted by the uplink)
    promoted = {r.json()["decision_id"] for r in read_all(centre, ["decisions"])["decisions"]
                if r.headers.get("fulfil-origin") == f"edge:{SITE}"}
    assert {"h-1:v2", "h-2:v2"} <= promoted
