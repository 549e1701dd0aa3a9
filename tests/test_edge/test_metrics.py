"""What an SRE's Prometheus sees of a site's links: up/down, the backlog and its age while the
link is cut, what crossed once it is back, and the link state pruned past its horizon. The
exposition passes `promtool check metrics` and holds every series the alert rules and the
dashboard read."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from state.edge_sync import EdgeSync
from tests.test_dataflows.helpers import FlowThread, order, publish, stock
from tests.test_deploy.helpers import dashboard_exprs, metric_tokens, rule_exprs, run_promtool
from tests.test_edge.helpers import FLORIPA, SITE, Site, World, wait_for


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"site": SITE, **labels}) or 0.0


def _sc(order_id: str) -> dict[str, Any]:
    return order(order_id, [("a", 1)], lat=FLORIPA["lat"], lng=FLORIPA["lng"],
                 postal=FLORIPA["postal"])


def test_link_metrics_follow_a_cut_and_a_restore(world: World, site: Site):
    up = {"link": "uplink"}
    forwarded = {**up, "topic": "edge.sul.orders"}
    site.start_links("uplink", "downlink")
    wait_for(lambda: _value("fulfil_edge_link_up", **up) == 1, what="the uplink up")
    sent_before = _value("fulfil_edge_events_forwarded_total", **forwarded)
    # when: the link is cut and orders wait at the edge
    world.cut()
    cut_s = time.time()
    publish(site.edge, "orders", [_sc(f"m-{i}") for i in range(5)])
    wait_for(lambda: _value("fulfil_edge_link_up", **up) == 0, what="the uplink down")
    wait_for(lambda: _value("fulfil_edge_backlog_events", **up) >= 5, what="the backlog")
    wait_for(lambda: _value("fulfil_edge_oldest_unsent_age_seconds", **up) > 0.5,
             what="the backlog to age")
    assert _value("fulfil_edge_link_last_ok_timestamp_seconds", **up) <= cut_s + 1
    assert _value("fulfil_edge_events_forwarded_total", **forwarded) == sent_before
    # then: back up, everything crossed, nothing waits
    world.restore()
    wait_for(lambda: _value("fulfil_edge_link_up", **up) == 1, what="the uplink up again")
    wait_for(lambda: _value("fulfil_edge_events_forwarded_total", **forwarded)
             == sent_before + 5, what="the orders to cross")
    wait_for(lambda: _value("fulfil_edge_backlog_events", **up) == 0
             and _value("fulfil_edge_oldest_unsent_age_seconds", **up) == 0,
             what="the backlog to drain")
    assert _value("fulfil_edge_link_last_ok_timestamp_seconds", **up) > cut_s
    assert _value("fulfil_edge_link_up", link="downlink") == 1

    # the exposition is valid and holds what the rules and the dashboard read
    text = generate_latest(REGISTRY).decode()
    result = run_promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    exposed = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    used = {t for e in [*rule_exprs(), *dashboard_exprs()] for t in metric_tokens(e)
            if t.startswith("fulfil_edge_")}
    assert used, "no edge series in the rules or the dashboard"
    assert used - exposed == set()


def test_the_links_prune_the_link_state_of_closed_orders(world: World):
    """Given a site whose link state is kept for no time at all, when an edge sale is cancelled
    (the centre's copy releases it: its link state turns terminal), then the uplink prunes it;
    a sale that still holds stock keeps its state."""
    site = world.site(state_retention_s=0.0, prune_every_s=0.0)
    try:
        with FlowThread(site.centre), FlowThread(site.edge):
            site.start_links("uplink")
            publish(site.edge, "inventory", [stock("N20", "a", 10)])
            # both sides: the uplink forwards the stock whether or not the edge's own flow has
            # applied it yet, and an order routed at the edge before that is unroutable there
            central_ledger, local = site.ledger("centre"), site.ledger("edge")
            wait_for(lambda: central_ledger.stock("N20", "a")[0] == 10
                     and local.stock("N20", "a")[0] == 10,
                     what="the site's stock at the edge and at the centre")
            publish(site.edge, "orders", [_sc("keep"), _sc("gone")])
            central = EdgeSync(site.ledger("centre"))
            wait_for(lambda: central.state("N20", "gone") and central.state("N20", "keep"),
                     what="both sales at the centre")
            publish(site.edge, "orders", [{"type": "order.cancelled", "event_id": "x-gone",
                                           "order_id": "gone",
                                           "occurred_at": int(time.time() * 1000)}])
            wait_for(lambda: central_ledger.stock("N20", "a")[1] == 1,
                     what="the cancel at the centre")
            wait_for(lambda: central.state("N20", "gone") is None, what="the prune")
            assert central.state("N20", "keep") == "1\to"
            wait_for(lambda: _value("fulfil_edge_link_state_entries", side="centre") == 1,
                     what="the state size reported")
            assert _value("fulfil_edge_link_state_pruned_total", side="centre") >= 1
    finally:
        site.stop_links()
