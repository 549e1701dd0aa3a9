"""Duplicates from retries are harmless: replaying both links from the very beginning (every
record re-sent, every effect re-applied, as after a crash before any progress was stored)
changes nothing the centre or the edge holds."""

from __future__ import annotations

import time
from typing import Any

from operators.orders import reservation_id
from state.edge_sync import LinkProgress
from tests.test_dataflows.helpers import FlowThread, order, publish, stock
from tests.test_edge.helpers import (
    FLORIPA,
    SITE,
    SITE_NODES,
    Site,
    World,
    read_all,
    site_stock,
    wait_for,
)

SKUS = ("hot", "local", "spare")


def _sc(order_id: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    return order(order_id, lines, lat=FLORIPA["lat"], lng=FLORIPA["lng"], postal=FLORIPA["postal"])


def _picked_up(order_id: str, node: str) -> dict[str, Any]:
    return {"type": "shipment.tracking", "event_id": f"t-{order_id}", "shipment_id":
            f"{order_id}/{node}", "order_id": order_id, "carrier": "correios", "service": "pac",
            "node_id": node, "status": "picked_up", "occurred_at": int(time.time() * 1000)}


def _cancel(order_id: str) -> dict[str, Any]:
    return {"type": "order.cancelled", "event_id": f"x-{order_id}", "order_id": order_id,
            "occurred_at": int(time.time() * 1000)}


def _hashes(site: Any, side: str) -> dict[str, dict[bytes, bytes]]:
    """Every ledger hash of the site's nodes on one side, raw."""
    ledger = site.ledger(side)
    client = ledger._client
    keys = [k for n in SITE_NODES for k in (*ledger.node_keys(n), ledger.node_keys(n)[0]
                                             .rpartition(":")[0] + ":edge")]
    return {k: client.hgetall(k) for k in keys}


def _book(site: Any, order_ids: list[str]) -> dict[str, bytes]:
    from state.orderbook import OrderBook

    ledger = site.ledger("centre")
    return OrderBook(ledger, site.centre.redis_prefix).get_many(order_ids)


def _settled(site: Any, expected_decisions: int) -> bool:
    central, local = site.ledger("centre"), site.ledger("edge")
    if site_stock(central, SKUS) != site_stock(local, SKUS):
        return False
    out = read_all(site.centre, ["decisions", "alerts"])
    return len(out["decisions"]) >= expected_decisions and len(out["alerts"]) >= 1


def test_replaying_both_links_from_the_start_changes_nothing(world: World, site: Site):
    edge, centre = site.edge, site.centre
    orders = ["e-1", "e-2", "e-3", "e-far", "c-1", "c-2"]
    with FlowThread(centre), FlowThread(edge):
        site.start_links()
        # given a connected site that sold, cancelled, shipped, handed off and was claimed from
        publish(edge, "inventory", [stock("N20", "hot", 3), stock("N20", "local", 50),
                                    stock("N23", "spare", 2)])
        central, local = site.ledger("centre"), site.ledger("edge")
        wait_for(lambda: central.stock("N20", "hot")[0] == local.stock("N20", "hot")[0] == 3
                 and local.stock("N20", "local")[0] == 50, what="the site's stock")
        publish(centre, "inventory", [stock("N01", "far", 5)])
        world.cut()  # both sides sell the same 3 units of hot meanwhile
        publish(edge, "orders", [_sc("e-1", [("local", 2)]), _sc("e-2", [("local", 1)]),
                                 _sc("e-3", [("hot", 2)]), _sc("e-far", [("far", 1)])])
        publish(centre, "orders", [_sc("c-1", [("hot", 1)]), _sc("c-2", [("hot", 1)])])
        sold = {"edge": lambda: local.reservation("N20", reservation_id("e-3", 1)),
                "centre c-1": lambda: central.reservation("N20", reservation_id("c-1", 1)),
                "centre c-2": lambda: central.reservation("N20", reservation_id("c-2", 1))}
        try:
            wait_for(lambda: all(f() for f in sold.values()), what="both sides to sell")
        except AssertionError:
            seen = {k: f() for k, f in sold.items()}
            decided = [r.json() for r in read_all(centre, ["decisions"])["decisions"]]
            raise AssertionError(f"{seen}; central decisions: {decided}") from None
        world.restore()
        publish(edge, "orders", [_cancel("e-2")])
        publish(edge, "carrier-status", [_picked_up("e-1", "N20")])
        publish(centre, "inventory", [stock("N23", "spare", 4, version=2)])
        # 4 edge decisions + the edge's cancel of e-2 + handoff cancel of e-far are local; the
        # centre holds: e-1, e-2 (x2), e-3 promoted, e-far and c-1, c-2 decided centrally, and a
        # re-route of whichever c- order lost the last unit of hot to e-3
        wait_for(lambda: _settled(site, 8) and local.stock("N20", "local")[0] == 48
                 and local.stock("N23", "spare")[0] == 4, 60, "the first pass to settle")
        time.sleep(1.5)
        wait_for(lambda: _settled(site, 8), 30, "the first pass to settle")
        site.stop_links()
        before = {side: _hashes(site, side) for side in ("centre", "edge")}
        book = _book(site, orders)
        first = read_all(centre, ["decisions", "alerts", "edge.sul.orders"])
        assert len(first["alerts"]) == 1  # one of c-1/c-2 lost its claim to the edge's sale

        # when: every link forgets its progress and re-sends everything from the start
        for side, link in (("centre", "uplink"), ("edge", "downlink"), ("edge", "handoff")):
            cfg = centre if side == "centre" else edge
            LinkProgress(site.ledger(side)._client, cfg.redis_prefix, SITE, link).reset()
        site.start_links()
        wait_for(lambda: len(read_all(centre, ["edge.sul.orders"])["edge.sul.orders"])
                 >= 2 * len(first["edge.sul.orders"]), 60, "the uplink to re-send everything")
        time.sleep(3.0)  # the routers replay what the links re-sent
        site.stop_links()
        after = {side: _hashes(site, side) for side in ("centre", "edge")}
        second = read_all(centre, ["decisions", "alerts", "edge.sul.orders"])

    # then: the records arrived twice (and the handoff wrote its cancel of e-far again) ...
    assert len(second["edge.sul.orders"]) == 2 * len(first["edge.sul.orders"]) + 1
    assert len(second["decisions"]) > len(first["decisions"])
    # ... and changed nothing: same ledgers on both sides, same order book at the centre
    assert after == before
    assert _book(site, orders) == book
    # every decision id stands for one decision: its copies are byte for byte the same
    by_id: dict[str, set[bytes]] = {}
    for r in second["decisions"]:
        by_id.setdefault(r.json()["decision_id"], set()).add(r.value)
    assert set(by_id) == {r.json()["decision_id"] for r in first["decisions"]}
    assert all(len(v) == 1 for v in by_id.values())
    # the copies of edge records dedupe, by their source id (retries) and event id (the
    # handoff's second cancel, a replay for the edge's router), to the first pass's set
    def events(records: list[Any]) -> set[str]:
        return {r.json()["event_id"] for r in records}

    assert events(second["edge.sul.orders"]) == events(first["edge.sul.orders"])
    srcs = [r.headers["fulfil-src"] for r in second["edge.sul.orders"]]
    assert len(set(srcs)) == len(first["edge.sul.orders"]) + 1
    # and the oversell alert is the same alert (same id), not a new incident
    assert {r.json()["alert_id"] for r in second["alerts"]} == \
        {r.json()["alert_id"] for r in first["alerts"]}
