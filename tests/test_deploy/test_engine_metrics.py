"""A real engine's /metrics: valid for Prometheus (`promtool check metrics`), and it exposes every
metric the dashboard and the alert rules read, with honest lag and a live epoch clock.

Runs `fulfil run` as its own process against the session's real broker and Redis, exactly as the
demo and an SRE start it.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fulfil.demo import scrape, start_engine, stop_engine
from fulfil.infra import Server, Stack, free_port
from operators.network import load_default
from tests.test_dataflows.helpers import create_topics, make_config, order, publish, stock
from tests.test_deploy.helpers import (
    dashboard_exprs,
    metric_tokens,
    rule_exprs,
    run_promtool,
    sample_names,
)

NET = load_default()


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.mark.slow
def test_a_running_engine_exposes_valid_metrics_for_the_dashboard_and_rules(
    broker: Server, redis_server: Server, redis_url: str, topic_prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FULFIL_GC_FREEZE_AFTER_BATCHES", "1")  # this little traffic is warm-up
    cfg = make_config(f"127.0.0.1:{broker.port}", redis_url, topic_prefix, redis_prefix="fulfil")
    create_topics(cfg)
    nodes = [n.id for n in NET.nodes if n.region == "SP"][:3]
    publish(cfg, "inventory", [stock(n, "sku-1", 1000) for n in nodes])
    publish(cfg, "orders", [order(f"o-{i}", [("sku-1", 1)]) for i in range(30)])
    publish(cfg, "orders", [b"{not json"], key="bad")  # one dead letter
    port = free_port()
    procs = start_engine(Stack(broker, redis_server, tmp_path), topic_prefix, processes=1,
                         log_dir=tmp_path, metrics_port=port)
    try:
        deadline = time.monotonic() + 120
        while scrape([port], "fulfil_decisions_total") < 30:
            assert procs[0].poll() is None, (tmp_path / "engine-0.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "engine-0.log").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2.5)  # past a lag refresh (1 s) and an epoch (1 s) after the last batch
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        stop_engine(procs)

    # Prometheus's own linter accepts the exposition
    result = run_promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr

    samples = _samples(text)
    # every metric the dashboard and the rules read is one the running engine defines (the
    # edge link process's fulfil_edge_* series: tests/test_edge/test_metrics.py) ...
    used = {t for e in [*dashboard_exprs(), *rule_exprs()] for t in metric_tokens(e)
            if t.startswith("fulfil_") and not t.startswith("fulfil_edge_")}
    assert used - sample_names(text_string_to_metric_families(text)) == set()
    # ... and those of the routing flow have samples after this traffic
    routing = {"fulfil_events_in_total", "fulfil_decisions_total", "fulfil_dead_letters_total",
               "fulfil_event_to_decision_seconds_bucket", "fulfil_route_batch_seconds_bucket",
               "fulfil_inventory_events_total", "fulfil_consumer_lag_messages",
               "fulfil_source_snapshot_timestamp_seconds", "fulfil_sink_flush_seconds_bucket",
               "fulfil_build_info", "fulfil_replayed_decisions_total",
               "fulfil_reservation_races_lost_total", "fulfil_lane_updates_total"}
    assert routing <= used
    assert routing - samples.keys() == set()
    # lag: one series per input partition, all read by now
    lag = {(labels["topic"], labels["partition"]): v
           for labels, v in samples["fulfil_consumer_lag_messages"]}
    assert {(cfg.topic("orders"), str(p)) for p in range(8)} <= lag.keys()
    assert all(v == 0 for v in lag.values()), lag
    # the epoch clock is live; the sink flushed before committing; build info names the network
    stamps = [v for _, v in samples["fulfil_source_snapshot_timestamp_seconds"]]
    assert stamps and time.time() - max(stamps) < 30
    assert samples["fulfil_sink_flush_seconds_count"][0][1] >= 1
    [(info, one)] = samples["fulfil_build_info"]
    assert one == 1 and info["network_version"] == NET.version
    # the start-up heap left the garbage collector's walks after the first routed batch
    [(_, frozen)] = samples["fulfil_heap_frozen_objects"]
    assert frozen > 10_000
    dead = {labels["code"]: v for labels, v in samples["fulfil_dead_letters_total"]}
    assert dead.get("decode") == 1
