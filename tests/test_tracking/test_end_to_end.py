"""Routing and tracking together on the same topics, as in production: an order's timeline is
built from what the routing flow really wrote. The tracking flow runs as `fulfil track` (two
worker threads, JSON logs) in its own process; the routing flow in a thread of the test process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from operators.network import load_default
from state.ledger import Ledger
from state.redis_client import connect
from tests.test_dataflows.helpers import FlowThread, create_topics, make_config, order, publish
from tests.test_tracking.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
SP_NODE = next(n.id for n in load_default().nodes if n.region == "SP")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, order_id: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/orders/{order_id}",
                                    timeout=5) as resp:
            return orjson.loads(resp.read())
    except (urllib.error.URLError, ConnectionError):  # 404 (an HTTPError) or not up yet
        return None


@pytest.mark.slow
def test_should_show_received_routed_cancelled_for_an_order_the_engine_handled(
        bootstrap, redis_url, topic_prefix, tmp_path):
    cfg = make_config(bootstrap, redis_url, topic_prefix)
    create_topics(cfg)
    publish(cfg, "inventory", [{"type": "inventory.snapshot", "event_id": "i-1",
                                "node_id": SP_NODE, "sku": "sku-a", "version": 1, "on_hand": 5,
                                "occurred_at": int(time.time() * 1000)}])
    port = _free_port()
    log_path = tmp_path / "track.log"
    env = {**os.environ, "FULFIL_REDIS_PREFIX": cfg.redis_prefix, "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log_file:
        track = subprocess.Popen(
            [sys.executable, "-m", "fulfil.cli", "track", "--kafka", bootstrap, "--redis",
             redis_url, "--topic-prefix", topic_prefix, "--http-port", str(port),
             "--log-format", "json", "--workers", "2", "--source-slots", "2"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        with FlowThread(cfg):
            ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
            wait_for(lambda: ledger.stock(SP_NODE, "sku-a")[0] == 5, what="stock applied")
            o = order("o-1", [("sku-a", 2)])
            publish(cfg, "orders", [o])
            wait_for(lambda: (v := _get(port, "o-1")) and v["status"] == "routed",
                     timeout=60, what="o-1 routed in its timeline")
            publish(cfg, "orders", [{"type": "order.cancelled", "event_id": "e-cancel",
                                     "order_id": "o-1",
                                     "occurred_at": int(time.time() * 1000)}])
            view = wait_for(lambda: (v := _get(port, "o-1")) and v["status"] == "cancelled" and v,
                            timeout=60, what="o-1 cancelled in its timeline")
        assert track.poll() is None, log_path.read_text()
    finally:
        track.send_signal(signal.SIGTERM)  # as an orchestrator stops it
        try:
            code = track.wait(timeout=30)
        except subprocess.TimeoutExpired:
            track.kill()
            track.wait()
            raise
    assert code == 0, log_path.read_text()
    steps = [e["step"] for e in view["events"]]
    assert steps == ["received", "routed", "cancel-requested", "cancelled"]
    routed = view["events"][1]
    assert routed["nodes"] == [SP_NODE] and routed["version"] == 1
    assert view["current_decision"]["decision_id"] == "o-1:v2"
    assert view["current_decision"]["status"] == "cancelled"
    # every line the tracking process logged is one JSON object; the first names its config
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    records = [orjson.loads(ln) for ln in lines if ln.startswith("{")]
    assert records and records[0]["msg"] == "fulfil track: starting"
    assert records[0]["config"]["topic_prefix"] == topic_prefix
    assert any("GET /orders/<id>" in r["msg"] for r in records)
    assert records[-1]["msg"] == "fulfil track: stopped"
    assert len(records) == len(lines), lines  # nothing but JSON lines
